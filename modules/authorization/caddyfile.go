package authorization

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("authorize", parseCaddyfile)
	// After rate_limit (itself after forward_auth), so that probing other
	// users' ids spends the prober's rate limit, and after authenticate,
	// whose placeholders it reads.
	httpcaddyfile.RegisterDirectiveOrder("authorize", httpcaddyfile.Before, "request_header")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var a Authorize
	err := a.UnmarshalCaddyfile(h.Dispenser)
	return &a, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	authorize [<matcher>] {
//	    policy <name> <path-template> {
//	        allow {<param>} == <value>
//	        allow scope <scope>...
//	        deny_status 403|404
//	    }
//	}
//
// A path template is /literal/{param}/... with an optional final /*; the
// value a parameter is compared with is usually a placeholder of the
// caller's identity, e.g. `allow {user} == {http.auth.user.id}`.
func (a *Authorize) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		if d.Val() != "policy" {
			return d.Errf("authorize: unknown subdirective %q", d.Val())
		}
		var p Policy
		if !d.Args(&p.Name, &p.Path) || d.NextArg() {
			return d.Errf("authorize: policy needs <name> <path-template>")
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			if err := p.unmarshalOption(d); err != nil {
				return err
			}
		}
		a.Policies = append(a.Policies, p)
	}
	if len(a.Policies) == 0 {
		return d.Err("authorize: needs at least one policy")
	}
	return nil
}

func (p *Policy) unmarshalOption(d *caddyfile.Dispenser) error {
	switch d.Val() {
	case "allow":
		args := d.RemainingArgs()
		switch {
		case len(args) >= 2 && args[0] == "scope":
			p.Allow = append(p.Allow, Grant{Scopes: args[1:]})
		case len(args) == 3 && args[1] == "==" && len(args[0]) > 2 && args[0][0] == '{' && args[0][len(args[0])-1] == '}':
			p.Allow = append(p.Allow, Grant{Param: args[0][1 : len(args[0])-1], Equals: args[2]})
		default:
			return d.Errf("authorize: policy %s: allow takes {<param>} == <value> or scope <scope>...", p.Name)
		}
	case "deny_status":
		var s string
		if !d.AllArgs(&s) {
			return d.ArgErr()
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return d.Errf("authorize: policy %s: deny_status %q is not a status code", p.Name, s)
		}
		p.DenyStatus = n
	default:
		return d.Errf("authorize: policy %s: unknown subdirective %q", p.Name, d.Val())
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Authorize)(nil)
