package framing

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/lexiscore/gateway/internal/caddyargs"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("framing", parseCaddyfile)
	// Before any handler spends work on the request; after request_id
	// (registered before tracing first), so the problem carries the ID.
	httpcaddyfile.RegisterDirectiveOrder("framing", httpcaddyfile.Before, "tracing")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m Handler
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return &m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	framing
func (m *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return caddyargs.NoArgs(d)
}

// UnmarshalCaddyfile sets up the listener wrapper from Caddyfile tokens, in
// the servers option's listener_wrappers block. Syntax:
//
//	framing {
//		head_timeout <duration>
//	}
func (lw *ListenerWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		if d.Val() != "head_timeout" {
			return d.Errf("framing: unknown subdirective %q", d.Val())
		}
		var v caddy.Duration
		if err := caddyargs.Duration(d, &v); err != nil {
			return err
		}
		if v < 0 {
			return d.Errf("head_timeout %q: want zero or a positive duration", d.Val())
		}
		lw.HeadTimeout = &v
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*ListenerWrapper)(nil)
)
