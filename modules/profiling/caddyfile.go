package profiling

import (
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/lexiscore/gateway/internal/caddyargs"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("profiling", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("profile_labels", parseLabels)
	// First, so that the label covers all the route's work.
	httpcaddyfile.RegisterDirectiveOrder("profile_labels", httpcaddyfile.Before, "tracing")
}

func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	var a App
	if err := a.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "profiling", Value: caddyconfig.JSON(a, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from the global option. Syntax:
//
//	profiling {
//	    server_address      [<url>]
//	    application_name    <name>
//	    tags                [<key>=<value>...]
//	    tenant_id           [<id>]
//	    basic_auth_user     [<user>]
//	    basic_auth_password [<password>]
//	    upload_rate         <duration>
//	    profile_types       <type>...
//	}
//
// A subdirective without its value (an environment variable that expands
// to nothing) leaves the setting empty: server_address without a URL turns
// profiling off. Placeholders such as {env.VAR} are replaced at load time.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "server_address":
			a.ServerAddress, err = optionalArg(d)
		case "application_name":
			if !d.NextArg() {
				return d.ArgErr()
			}
			a.ApplicationName = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "tags":
			for d.NextArg() {
				k, v, ok := strings.Cut(d.Val(), "=")
				if !ok || k == "" {
					return d.Errf("profiling: tag %q: want key=value", d.Val())
				}
				if _, dup := a.Tags[k]; dup {
					return d.Errf("profiling: tag %q given twice", k)
				}
				if a.Tags == nil {
					a.Tags = map[string]string{}
				}
				a.Tags[k] = v
			}
		case "tenant_id":
			a.TenantID, err = optionalArg(d)
		case "basic_auth_user":
			a.BasicAuthUser, err = optionalArg(d)
		case "basic_auth_password":
			a.BasicAuthPassword, err = optionalArg(d)
		case "upload_rate":
			if err = caddyargs.Duration(d, &a.UploadRate); err == nil && d.NextArg() {
				err = d.ArgErr()
			}
		case "profile_types":
			a.ProfileTypes = d.RemainingArgs()
			if len(a.ProfileTypes) == 0 {
				return d.ArgErr()
			}
		default:
			return d.Errf("profiling: unknown subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// optionalArg returns the subdirective's single argument, or "" when it has
// none.
func optionalArg(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", nil
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}

func parseLabels(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var l Labels
	err := l.UnmarshalCaddyfile(h.Dispenser)
	return &l, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	profile_labels [<matcher>] <route>
func (h *Labels) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if !d.NextArg() {
		return d.ArgErr()
	}
	h.Route = d.Val()
	if d.NextArg() || d.NextBlock(0) {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Labels)(nil)
)
