package tlsexpiry

import (
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("tls_expiry_metrics", parseGlobalOption)
}

// parseGlobalOption reads the global option. Syntax:
//
//	tls_expiry_metrics <name>...
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	d.Next()
	a := App{Names: d.RemainingArgs()}
	if len(a.Names) == 0 {
		return nil, d.ArgErr()
	}
	return httpcaddyfile.App{Name: "tls_expiry_metrics", Value: caddyconfig.JSON(a, nil)}, nil
}
