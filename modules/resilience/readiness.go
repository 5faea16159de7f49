package resilience

import (
	"net/http"
	"slices"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/lexiscore/gateway/modules/problem"
)

func init() {
	caddy.RegisterModule(Readiness{})
}

// Readiness answers a readiness probe from the health of the upstreams the
// gateway routes to: 200 while at least one upstream of a reverse_proxy
// with `lb_policy resilient` (in the same configuration) is healthy — not
// marked down by that proxy's active or passive health checks — and 503
// service-unavailable otherwise, also before any such proxy is configured.
//
// It reads the proxies' own state instead of probing the upstreams from a
// second reverse_proxy: that one would run health checks of its own and
// write Caddy's caddy_reverse_proxy_upstreams_healthy gauge with its own
// view, and the gauge has no handler label, so the series would flip
// between the two writers. Unlike the routes, readiness has no panic
// routing: with every upstream down the instance says it is not ready.
type Readiness struct {
	done <-chan struct{}
}

// CaddyModule returns the Caddy module information.
func (Readiness) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.upstreams_ready",
		New: func() caddy.Module { return new(Readiness) },
	}
}

// Provision remembers which configuration the handler belongs to.
func (r *Readiness) Provision(ctx caddy.Context) error {
	r.done = ctx.Done()
	return nil
}

// ServeHTTP answers the probe; it never calls next.
func (r *Readiness) ServeHTTP(w http.ResponseWriter, _ *http.Request, _ caddyhttp.Handler) error {
	if !resilientProxies.anyHealthy(r.done) {
		return problem.New(http.StatusServiceUnavailable, "service-unavailable", "No upstream of the scoring service passes its health checks.", nil)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write([]byte(`{"status":"ready"}`))
	return err
}

// proxyIndex holds the reverse proxies that use lb_policy resilient, per
// loaded configuration (the channel closed when it is unloaded), so that a
// readiness probe served by one configuration never reads another one's
// proxies, which may still be provisioning during a reload.
type proxyIndex struct {
	mu       sync.Mutex
	byConfig map[<-chan struct{}][]*reverseproxy.Handler
}

var resilientProxies = &proxyIndex{byConfig: map[<-chan struct{}][]*reverseproxy.Handler{}}

// register adds the reverse proxy among ctx's ancestors, if any, until the
// configuration is unloaded.
func (p *proxyIndex) register(ctx caddy.Context) {
	mods := ctx.Modules()
	for i := len(mods) - 1; i >= 0; i-- {
		h, ok := mods[i].(*reverseproxy.Handler)
		if !ok {
			continue
		}
		done := ctx.Done()
		p.mu.Lock()
		p.byConfig[done] = append(p.byConfig[done], h)
		p.mu.Unlock()
		ctx.OnCancel(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.byConfig[done] = slices.DeleteFunc(p.byConfig[done], func(x *reverseproxy.Handler) bool { return x == h })
			if len(p.byConfig[done]) == 0 {
				delete(p.byConfig, done)
			}
		})
		return
	}
}

// anyHealthy reports whether any upstream of the configuration's proxies is
// healthy.
func (p *proxyIndex) anyHealthy(done <-chan struct{}) bool {
	p.mu.Lock()
	proxies := slices.Clone(p.byConfig[done])
	p.mu.Unlock()
	for _, h := range proxies {
		for _, u := range h.Upstreams {
			if u.Healthy() {
				return true
			}
		}
	}
	return false
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Readiness)(nil)
	_ caddyhttp.MiddlewareHandler = (*Readiness)(nil)
)
