package signing

import (
	"math"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
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
// secret_file wins over secret_env when both are set; secret_file without a
// path (an unset environment variable such as {$GATEWAY_SIGNING_SECRET_FILE})
// leaves it unset, so one Caddyfile serves both ways of passing the secret.
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
		case "memory_limit", "max_body":
			if !d.NextArg() {
				return d.ArgErr()
			}
			size, err := humanize.ParseBytes(d.Val())
			if err != nil || size == 0 || size > math.MaxInt64 {
				return d.Errf("%s %q: want a positive size such as 1MiB", opt, d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			if opt == "memory_limit" {
				t.MemoryLimit = int64(size)
			} else {
				t.MaxBody = int64(size)
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
