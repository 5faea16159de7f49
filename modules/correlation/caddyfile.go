package correlation

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("request_id", parseCaddyfile)
	// First, so that every later handler, log line and error sees the ID.
	httpcaddyfile.RegisterDirectiveOrder("request_id", httpcaddyfile.Before, "tracing")
	// Where Caddy's `tracing` goes, whose options it takes (span,
	// span_attributes).
	httpcaddyfile.RegisterHandlerDirective("trace_context", parseTraceContext)
	httpcaddyfile.RegisterDirectiveOrder("trace_context", httpcaddyfile.After, "tracing")
}

func parseTraceContext(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m TraceContext
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return &m, err
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m RequestID
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return &m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	request_id [<header>] {
//	    pattern <regexp>
//	}
func (m *RequestID) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		m.Header = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "pattern":
			if !d.NextArg() {
				return d.ArgErr()
			}
			m.Pattern = d.Val()
		default:
			return d.Errf("request_id: unknown subdirective %q", d.Val())
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*RequestID)(nil)
