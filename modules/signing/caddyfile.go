package signing

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/lexiscore/gateway/internal/caddyargs"
)

// UnmarshalCaddyfile sets up the transport from Caddyfile tokens. Syntax:
//
//	transport signed {
//		key_id       <id>
//		secret_file  [<path>]
//		secret_env   <VARIABLE>
//		memory_limit <size>
//		max_body     <size>
//		spool_dir    <dir>
//		transport    <name> { ... }
//	}
//
// Only one of secret_file and secret_env's variable may hold a value;
// secret_file without a path (an unset environment variable such as
// {$GATEWAY_SIGNING_SECRET_FILE}) leaves it unset, so one Caddyfile serves
// both ways of passing the secret.
// The nested transport defaults to Caddy's http transport.
func (t *Transport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the transport's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "key_id", "secret_env", "spool_dir":
			if !d.NextArg() {
				return d.ArgErr()
			}
			v := d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			switch opt {
			case "key_id":
				t.KeyID = v
			case "secret_env":
				t.SecretEnv = v
			default:
				t.SpoolDir = v
			}
		case "secret_file":
			if d.NextArg() {
				t.SecretFile = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "memory_limit":
			if err := caddyargs.Size(d, &t.MemoryLimit); err != nil {
				return err
			}
		case "max_body":
			if err := caddyargs.Size(d, &t.MaxBody); err != nil {
				return err
			}
		case "transport":
			if t.TransportRaw != nil {
				return d.Err("transport signed: only one nested transport is allowed")
			}
			if err := t.UnmarshalInner(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized transport signed option %q", opt)
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Transport)(nil)
