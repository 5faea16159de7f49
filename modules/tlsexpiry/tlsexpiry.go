// Package tlsexpiry exposes when the certificates the gateway serves expire,
// so that an alert can page before clients see an expired certificate: Caddy
// renews certificates itself but exposes no metric of their validity.
package tlsexpiry

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
)

func init() {
	caddy.RegisterModule(App{})
}

// App reports gateway_tls_certificate_expiry_timestamp_seconds{name} for each
// configured name, from the certificates in Caddy's certificate cache.
type App struct {
	// Names are the host names whose certificates are watched; each is one
	// label value, so the set is bounded by configuration.
	Names []string `json:"names,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tls_expiry_metrics",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision registers the collector in this config load's registry.
func (a *App) Provision(ctx caddy.Context) error {
	if err := ctx.GetMetricsRegistry().Register(&collector{names: a.Names, certs: caddytls.AllMatchingCertificates}); err != nil {
		return fmt.Errorf("tls_expiry_metrics: registering collector: %w", err)
	}
	return nil
}

// Validate requires at least one name.
func (a *App) Validate() error {
	if len(a.Names) == 0 {
		return fmt.Errorf("tls_expiry_metrics: no host names to watch")
	}
	return nil
}

// Start implements caddy.App; the collector works on scrape.
func (*App) Start() error { return nil }

// Stop implements caddy.App.
func (*App) Stop() error { return nil }

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Validator   = (*App)(nil)
)
