package handoff

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the listener wrapper from Caddyfile tokens, in
// the servers option's listener_wrappers block, before tls. Syntax:
//
//	handoff
func (lw *ConnectionsWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return noArgs(d)
}

// UnmarshalCaddyfile sets up the listener wrapper from Caddyfile tokens, in
// the servers option's listener_wrappers block, last. Syntax:
//
//	handoff_requests
func (lw *RequestsWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return noArgs(d)
}

func noArgs(d *caddyfile.Dispenser) error {
	d.Next()
	name := d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("%s: unknown subdirective %q", name, d.Val())
	}
	return nil
}

var (
	_ caddyfile.Unmarshaler = (*ConnectionsWrapper)(nil)
	_ caddyfile.Unmarshaler = (*RequestsWrapper)(nil)
)
