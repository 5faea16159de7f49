package handoff

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/lexiscore/gateway/internal/caddyargs"
)

// UnmarshalCaddyfile sets up the listener wrapper from Caddyfile tokens, in
// the servers option's listener_wrappers block, before tls. Syntax:
//
//	handoff
func (lw *ConnectionsWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return caddyargs.NoArgs(d)
}

// UnmarshalCaddyfile sets up the listener wrapper from Caddyfile tokens, in
// the servers option's listener_wrappers block, last. Syntax:
//
//	handoff_requests
func (lw *RequestsWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return caddyargs.NoArgs(d)
}

var (
	_ caddyfile.Unmarshaler = (*ConnectionsWrapper)(nil)
	_ caddyfile.Unmarshaler = (*RequestsWrapper)(nil)
)
