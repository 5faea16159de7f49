package identity

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/lexiscore/gateway/internal/caddyargs"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("authenticate", parseCaddyfile)
	// Before basic_auth: after the request is rewritten (so matchers see the
	// final URI) and ahead of everything that spends work on the request.
	// rate_limit must come later, and can only be ordered relative to a
	// standard directive: e.g. `after basic_auth` or `before request_header`.
	httpcaddyfile.RegisterDirectiveOrder("authenticate", httpcaddyfile.Before, "basic_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var a Authenticate
	err := a.UnmarshalCaddyfile(h.Dispenser)
	return &a, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	authenticate [<matcher>] {
//	    allow_anonymous
//	    forward_credentials [on|off]
//	    realm <realm>
//	    jwt {
//	        secret_env <VAR>
//	        key <kid> hmac|public_key env|file <VAR-or-path> [<alg>...]
//	        jwks_url <url>
//	        jwks_refresh_interval <duration>
//	        jwks_min_refresh_interval <duration>
//	        jwks_timeout <duration>
//	        issuer <iss>
//	        audience <aud>
//	        leeway <duration>
//	        max_lifetime <duration>
//	        max_token_size <size>
//	        tier_claim <claim>
//	        tenant_claim <claim>
//	        cache_ttl <duration>|off
//	        cache_size <n>
//	    }
//	    api_key {
//	        header <name>
//	        file <path>
//	        reload_interval <duration>
//	    }
//	}
//
// An empty value ("") for issuer, audience, jwks_url or file turns that
// setting off, so `issuer "{$GATEWAY_JWT_ISSUER}"` checks the issuer only
// when the variable is set. `cache_ttl off` (or 0) turns the cache of
// verified tokens off.
func (a *Authenticate) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "allow_anonymous":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.AllowAnonymous = true
		case "forward_credentials":
			on := "on"
			d.Args(&on)
			if d.NextArg() || (on != "on" && on != "off") {
				return d.Errf("authenticate: forward_credentials takes on or off, not %q", d.Val())
			}
			a.ForwardCredentials = on == "on"
		case "realm":
			if !d.AllArgs(&a.Realm) {
				return d.ArgErr()
			}
		case providerJWT, providerAPIKey:
			name := d.Val()
			if _, dup := a.ProvidersRaw[name]; dup {
				return d.Errf("authenticate: %s given twice", name)
			}
			var p caddyfile.Unmarshaler = new(JWT)
			if name == providerAPIKey {
				p = new(APIKey)
			}
			if err := p.UnmarshalCaddyfile(d.NewFromNextSegment()); err != nil {
				return err
			}
			if a.ProvidersRaw == nil {
				a.ProvidersRaw = caddy.ModuleMap{}
			}
			a.ProvidersRaw[name] = caddyconfig.JSON(p, nil)
		default:
			return d.Errf("authenticate: unknown subdirective %q", d.Val())
		}
	}
	if len(a.ProvidersRaw) == 0 {
		return d.Err("authenticate: needs a jwt or api_key block")
	}
	return nil
}

// UnmarshalCaddyfile reads the body of a jwt block (syntax: see
// Authenticate.UnmarshalCaddyfile).
func (j *JWT) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		var err error
		switch opt {
		case "secret_env":
			err = oneArg(d, &j.SecretEnv)
		case "jwks_url":
			err = oneArg(d, &j.JWKSURL)
		case "issuer":
			err = oneArg(d, &j.Issuer)
		case "audience":
			err = oneArg(d, &j.Audience)
		case "tier_claim":
			err = oneArg(d, &j.TierClaim)
		case "tenant_claim":
			err = oneArg(d, &j.TenantClaim)
		case "jwks_refresh_interval":
			err = caddyargs.Duration(d, &j.JWKSRefreshInterval)
		case "jwks_min_refresh_interval":
			err = caddyargs.Duration(d, &j.JWKSMinRefreshInterval)
		case "jwks_timeout":
			err = caddyargs.Duration(d, &j.JWKSTimeout)
		case "leeway":
			err = caddyargs.Duration(d, &j.Leeway)
		case "max_lifetime":
			err = caddyargs.Duration(d, &j.MaxLifetime)
		case "max_token_size":
			var s string
			if err = oneArg(d, &s); err == nil {
				n, perr := humanize.ParseBytes(s)
				if perr != nil || n > 1<<30 {
					return d.Errf("jwt: max_token_size %q is not a size in bytes", s)
				}
				j.MaxTokenSize = int(n)
			}
		case "cache_ttl":
			var s string
			if err = oneArg(d, &s); err == nil {
				j.CacheTTL = new(caddy.Duration)
				if s != "off" {
					err = caddyargs.DurationArg(d, opt, j.CacheTTL)
				}
			}
		case "cache_size":
			err = caddyargs.IntAtLeast(d, 1, &j.CacheSize)
		case "key":
			args := d.RemainingArgs()
			if len(args) < 4 {
				return d.Errf("jwt: key needs <kid> hmac|public_key env|file <name-or-path> [<alg>...]")
			}
			kc := KeyConfig{ID: args[0], Type: args[1], Algorithms: args[4:]}
			switch args[2] {
			case "env":
				kc.Env = args[3]
			case "file":
				kc.File = args[3]
			default:
				return d.Errf("jwt: key %s: source %q is neither env nor file", args[0], args[2])
			}
			j.Keys = append(j.Keys, kc)
		default:
			return d.Errf("jwt: unknown subdirective %q", opt)
		}
		if err != nil {
			return err
		}
		// caddyargs reads the one argument an option takes and leaves the
		// rest of the line: any more is an error.
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

// UnmarshalCaddyfile reads the body of an api_key block (syntax: see
// Authenticate.UnmarshalCaddyfile).
func (a *APIKey) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "header":
			err = oneArg(d, &a.Header)
		case "file":
			err = oneArg(d, &a.File)
		case "reload_interval":
			err = caddyargs.Duration(d, &a.ReloadInterval)
		default:
			return d.Errf("api_key: unknown subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

// oneArg reads exactly one argument, which may be "" (setting off).
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.AllArgs(dst) {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Authenticate)(nil)
	_ caddyfile.Unmarshaler = (*JWT)(nil)
	_ caddyfile.Unmarshaler = (*APIKey)(nil)
)
