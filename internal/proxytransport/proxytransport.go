// Package proxytransport lets a reverse_proxy transport module wrap another
// one (by default Caddy's "http" transport), so that gateway concerns that
// must see every upstream attempt — circuit breaking, request signing — stack
// around Caddy's own transport without re-implementing it. The optional
// transport interfaces reverse_proxy looks for (TLS, h2c, buffers, health
// check scheme, header ops) are forwarded to the wrapped transport.
package proxytransport

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

const namespace = "http.reverse_proxy.transport"

// Wrapper is embedded in a transport module that wraps another transport.
type Wrapper struct {
	// TransportRaw is the wrapped transport. Default: Caddy's "http"
	// transport with its defaults.
	TransportRaw json.RawMessage `json:"transport,omitempty" caddy:"namespace=http.reverse_proxy.transport inline_key=protocol"`

	// Inner is the wrapped transport, loaded by ProvisionInner.
	Inner http.RoundTripper `json:"-"`

	// adapted is the wrapped transport while a Caddyfile is being adapted,
	// so that reverse_proxy can enable TLS or h2c on it before it is encoded.
	adapted     http.RoundTripper
	adaptedName string
}

// ProvisionInner loads the wrapped transport.
func (w *Wrapper) ProvisionInner(ctx caddy.Context) error {
	raw := w.TransportRaw
	if raw == nil {
		mod, err := ctx.LoadModuleByID(namespace+".http", json.RawMessage("{}"))
		if err != nil {
			return fmt.Errorf("loading default http transport: %w", err)
		}
		w.Inner = mod.(http.RoundTripper)
		return nil
	}
	mod, err := ctx.LoadModule(w, "TransportRaw")
	if err != nil {
		return fmt.Errorf("loading wrapped transport: %w", err)
	}
	rt, ok := mod.(http.RoundTripper)
	if !ok {
		return fmt.Errorf("wrapped transport %T is not a RoundTripper", mod)
	}
	w.Inner = rt
	return nil
}

// UnmarshalInner parses a nested "transport <name> { ... }" block; the
// dispenser must be on the "transport" token.
func (w *Wrapper) UnmarshalInner(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	name := d.Val()
	mod, err := caddyfile.UnmarshalModule(d, namespace+"."+name)
	if err != nil {
		return err
	}
	rt, ok := mod.(http.RoundTripper)
	if !ok {
		return d.Errf("transport %s is not a RoundTripper", name)
	}
	w.adapted, w.adaptedName = rt, name
	w.encode()
	return nil
}

func (w *Wrapper) encode() {
	w.TransportRaw = caddyconfig.JSONModuleObject(w.adapted, "protocol", w.adaptedName, nil)
}

// adaptTime returns the wrapped transport during adaptation, creating
// Caddy's http transport when none was named.
func (w *Wrapper) adaptTime() http.RoundTripper {
	if w.adapted == nil {
		w.adapted, w.adaptedName = new(reverseproxy.HTTPTransport), "http"
	}
	return w.adapted
}

func (w *Wrapper) current() http.RoundTripper {
	if w.Inner != nil {
		return w.Inner
	}
	return w.adapted
}

// TLSEnabled forwards to the wrapped transport.
func (w *Wrapper) TLSEnabled() bool {
	t, ok := w.current().(reverseproxy.TLSTransport)
	return ok && t.TLSEnabled()
}

// EnableTLS forwards to the wrapped transport (Caddyfile adaptation).
func (w *Wrapper) EnableTLS(base *reverseproxy.TLSConfig) error {
	t, ok := w.adaptTime().(reverseproxy.TLSTransport)
	if !ok {
		return fmt.Errorf("wrapped transport %s does not support TLS", w.adaptedName)
	}
	if err := t.EnableTLS(base); err != nil {
		return err
	}
	w.encode()
	return nil
}

// EnableH2C forwards to the wrapped transport (Caddyfile adaptation).
func (w *Wrapper) EnableH2C() error {
	t, ok := w.adaptTime().(reverseproxy.H2CTransport)
	if !ok {
		return fmt.Errorf("wrapped transport %s does not support h2c", w.adaptedName)
	}
	if err := t.EnableH2C(); err != nil {
		return err
	}
	w.encode()
	return nil
}

// DefaultBufferSizes forwards to the wrapped transport.
func (w *Wrapper) DefaultBufferSizes() (int64, int64) {
	if t, ok := w.current().(reverseproxy.BufferedTransport); ok {
		return t.DefaultBufferSizes()
	}
	return 0, 0
}

// OverrideHealthCheckScheme forwards to the wrapped transport.
func (w *Wrapper) OverrideHealthCheckScheme(base *url.URL, port string) {
	if t, ok := w.current().(reverseproxy.HealthCheckSchemeOverriderTransport); ok {
		t.OverrideHealthCheckScheme(base, port)
	}
}

// ProxyProtocolEnabled forwards to the wrapped transport.
func (w *Wrapper) ProxyProtocolEnabled() bool {
	t, ok := w.current().(reverseproxy.ProxyProtocolTransport)
	return ok && t.ProxyProtocolEnabled()
}

// RequestHeaderOps forwards to the wrapped transport.
func (w *Wrapper) RequestHeaderOps() *headers.HeaderOps {
	if t, ok := w.current().(reverseproxy.RequestHeaderOpsTransport); ok {
		return t.RequestHeaderOps()
	}
	return nil
}

// RequiresContentLength forwards to the wrapped transport.
func (w *Wrapper) RequiresContentLength() bool {
	t, ok := w.current().(reverseproxy.ContentLengthRequiredTransport)
	return ok && t.RequiresContentLength()
}

// Interface guards: a module embedding *Wrapper satisfies these.
var (
	_ reverseproxy.TLSTransport                        = (*Wrapper)(nil)
	_ reverseproxy.H2CTransport                        = (*Wrapper)(nil)
	_ reverseproxy.BufferedTransport                   = (*Wrapper)(nil)
	_ reverseproxy.HealthCheckSchemeOverriderTransport = (*Wrapper)(nil)
	_ reverseproxy.ProxyProtocolTransport              = (*Wrapper)(nil)
	_ reverseproxy.RequestHeaderOpsTransport           = (*Wrapper)(nil)
	_ reverseproxy.ContentLengthRequiredTransport      = (*Wrapper)(nil)
)
