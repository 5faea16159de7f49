package slowclient

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/lexiscore/gateway/internal/caddyargs"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("slow_client", parseCaddyfile)
	// Early, so that it wraps the body before any handler reads it.
	httpcaddyfile.RegisterDirectiveOrder("slow_client", httpcaddyfile.Before, "tracing")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m Handler
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return &m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	slow_client
func (m *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return caddyargs.NoArgs(d)
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
