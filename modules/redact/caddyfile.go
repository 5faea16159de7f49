package redact

import "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

// UnmarshalCaddyfile sets up the filter from Caddyfile tokens. Syntax:
//
//	<field> query_secrets [<name fragment>...] {
//	    replacement <value>    # default REDACTED
//	}
//
// The fragments are added to DefaultNames.
func (f *QuerySecrets) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	f.Names = append(f.Names, d.RemainingArgs()...)
	for d.NextBlock(0) {
		switch d.Val() {
		case "replacement":
			if !d.AllArgs(&f.Replacement) {
				return d.ArgErr()
			}
		default:
			return d.Errf("query_secrets: unknown subdirective %q", d.Val())
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*QuerySecrets)(nil)
