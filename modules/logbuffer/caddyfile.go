package logbuffer

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/lexiscore/gateway/internal/caddyargs"
)

// UnmarshalCaddyfile sets up the writer from Caddyfile tokens. Syntax:
//
//	output buffered {
//		flush_interval <duration>
//		flush_size     <size>
//		max_buffer     <size>
//		to             <writer> [<args...>] [{ ... }]
//	}
//
// to names the destination the way `output` does (stdout, stderr, file
// <path> { ... }, net <addr>); the default is stderr.
func (b *Buffered) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the writer's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "flush_interval":
			if err := caddyargs.Duration(d, &b.FlushInterval); err != nil {
				return err
			}
		case "flush_size":
			if err := caddyargs.Size(d, &b.FlushSize); err != nil {
				return err
			}
		case "max_buffer":
			if err := caddyargs.Size(d, &b.MaxBuffer); err != nil {
				return err
			}
		case "to":
			if b.WriterRaw != nil {
				return d.Err("output buffered: only one destination (to) is allowed")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			mod, err := caddy.GetModule("caddy.logging.writers." + name)
			if err != nil {
				return d.Errf("output buffered: to %s: %v", name, err)
			}
			inst := mod.New()
			// stdout, stderr and discard take no arguments and parse none.
			if unm, ok := inst.(caddyfile.Unmarshaler); ok {
				if err := unm.UnmarshalCaddyfile(d.NewFromNextSegment()); err != nil {
					return err
				}
			} else if d.NextArg() {
				return d.ArgErr()
			}
			wo, ok := inst.(caddy.WriterOpener)
			if !ok {
				return d.Errf("output buffered: %s is not a log writer", name)
			}
			b.WriterRaw = caddyconfig.JSONModuleObject(wo, "output", name, nil)
		default:
			return d.Errf("unrecognized output buffered option %q", opt)
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Buffered)(nil)
