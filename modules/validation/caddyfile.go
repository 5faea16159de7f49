package validation

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/lexiscore/gateway/internal/caddyargs"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("openapi_validate", parseValidate)
	// Validation runs after authenticate and rate_limit (both ordered well
	// before) and before resilience and reverse_proxy, so that retries and
	// fallbacks only ever see valid requests. Plugins may only be ordered
	// relative to standard directives, and resilience orders itself "before
	// reverse_proxy"; "after metrics" (the last standard directive ahead of
	// reverse_proxy, a handler no API route uses) lands ahead of it whatever
	// order the plugins initialize in.
	httpcaddyfile.RegisterDirectiveOrder("openapi_validate", httpcaddyfile.After, "metrics")
	httpcaddyfile.RegisterHandlerDirective("openapi_spec", parseSpec)
	httpcaddyfile.RegisterDirectiveOrder("openapi_spec", httpcaddyfile.Before, "respond")
}

func parseValidate(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var v Handler
	err := v.UnmarshalCaddyfile(h.Dispenser)
	return &v, err
}

func parseSpec(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var s SpecHandler
	err := s.UnmarshalCaddyfile(h.Dispenser)
	return &s, err
}

// UnmarshalCaddyfile sets up the validator from Caddyfile tokens. Syntax:
//
//	openapi_validate [<spec_file>] {
//		max_body   <size>
//		max_upload <size>
//		route <operationId> {
//			max_body   <size>
//			max_upload <size>
//		}
//	}
//
// Without <spec_file> (or when it comes from an unset environment variable)
// the embedded scoring API document is used. Sizes are like 1MiB or 26MB.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		h.SpecFile = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "max_body", "max_upload":
			if err := parseLimit(d, &h.Limits); err != nil {
				return err
			}
		case "route":
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			if h.Routes == nil {
				h.Routes = make(map[string]Limits)
			}
			if _, dup := h.Routes[name]; dup {
				return d.Errf("route %s given twice", name)
			}
			var l Limits
			for inner := d.Nesting(); d.NextBlock(inner); {
				switch d.Val() {
				case "max_body", "max_upload":
					if err := parseLimit(d, &l); err != nil {
						return err
					}
				default:
					return d.Errf("unrecognized route option %q", d.Val())
				}
			}
			h.Routes[name] = l
		default:
			return d.Errf("unrecognized openapi_validate option %q", d.Val())
		}
	}
	return nil
}

// parseLimit reads "max_body <size>" or "max_upload <size>" into l.
func parseLimit(d *caddyfile.Dispenser, l *Limits) error {
	if d.Val() == "max_body" {
		return caddyargs.Size(d, &l.MaxBody)
	}
	return caddyargs.Size(d, &l.MaxUpload)
}

// UnmarshalCaddyfile sets up the document handler. Syntax:
//
//	openapi_spec [<spec_file>]
func (s *SpecHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		s.SpecFile = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*SpecHandler)(nil)
)
