package resilience

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/lexiscore/gateway/internal/telemetry"
)

func init() {
	caddy.RegisterModule(Selection{})
}

// Selection is a load-balancing policy that steers around trouble: among
// the available upstreams it prefers, in order, those whose circuit breaker
// is not open and that have not already failed this request; then those
// whose breaker is not open; then any. Its fallback policy picks within the
// preferred group. So failover after an open breaker or a failed attempt
// goes to another upstream whenever there is one, instead of drawing the
// same one again.
//
// When no upstream is available because every one failed its health checks,
// it routes in panic (Envoy's healthy-panic threshold): it picks among all
// of them, in the same order of preference, rather than refuse every
// request. A health check can fail for reasons that spare the API (a busy
// gateway's own probe timing out, a health endpoint that breaks alone), and
// an upstream that is really down is refused fast by its breaker anyway.
// Each such choice counts in gateway_upstream_panic_routing_total. Upstreams
// at their max_requests stay out, as Caddy leaves them out.
type Selection struct {
	// FallbackRaw chooses within the preferred group. Default: random. In
	// panic the choice is random: Caddy's policies pick only among healthy
	// upstreams.
	FallbackRaw json.RawMessage `json:"fallback,omitempty" caddy:"namespace=http.reverse_proxy.selection_policies inline_key=policy"`

	fallback reverseproxy.Selector
}

// CaddyModule returns the Caddy module information.
func (Selection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.resilient",
		New: func() caddy.Module { return new(Selection) },
	}
}

// Provision loads the fallback policy, registers the metrics, and makes
// its proxy's upstreams known to upstreams_ready.
func (s *Selection) Provision(ctx caddy.Context) error {
	if err := telemetry.Register(ctx.GetMetricsRegistry(), collectors()...); err != nil {
		return fmt.Errorf("lb_policy resilient: registering metrics: %w", err)
	}
	if s.FallbackRaw == nil {
		s.FallbackRaw = caddyconfig.JSONModuleObject(reverseproxy.RandomSelection{}, "policy", "random", nil)
	}
	mod, err := ctx.LoadModule(s, "FallbackRaw")
	if err != nil {
		return fmt.Errorf("lb_policy resilient: loading fallback policy: %w", err)
	}
	sel, ok := mod.(reverseproxy.Selector)
	if !ok {
		return fmt.Errorf("lb_policy resilient: fallback %T is not a selection policy", mod)
	}
	s.fallback = sel
	resilientProxies.register(ctx)
	return nil
}

// Select returns an available upstream; when none is, one of those that
// failed their health checks (panic routing); nil when every upstream is
// full or the pool is empty.
func (s *Selection) Select(pool reverseproxy.UpstreamPool, r *http.Request, w http.ResponseWriter) *reverseproxy.Upstream {
	info := infoFrom(r.Context())
	if registry.open.Load() == 0 && !info.anyFailed() {
		if u := s.fallback.Select(pool, r, w); u != nil {
			return u
		}
	}
	if group := preferred(pool, info, (*reverseproxy.Upstream).Available); group != nil {
		return s.fallback.Select(group, r, w)
	}
	group := preferred(pool, info, func(u *reverseproxy.Upstream) bool { return !u.Full() })
	if group == nil {
		return nil
	}
	panicRouting.WithLabelValues(info.route()).Inc()
	return group[rand.IntN(len(group))]
}

// preferred returns the best non-empty group among the upstreams that pass
// include: those whose breaker is not open and that have not failed this
// request, else those whose breaker is not open, else all; nil if none
// passes.
func preferred(pool reverseproxy.UpstreamPool, info *attemptInfo, include func(*reverseproxy.Upstream) bool) reverseproxy.UpstreamPool {
	var best, unblocked, all reverseproxy.UpstreamPool
	for _, u := range pool {
		if !include(u) {
			continue
		}
		all = append(all, u)
		if registry.blocking(u.Dial) {
			continue
		}
		unblocked = append(unblocked, u)
		if !info.avoid(u.Dial) {
			best = append(best, u)
		}
	}
	for _, group := range []reverseproxy.UpstreamPool{best, unblocked, all} {
		if len(group) > 0 {
			return group
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Selection)(nil)
	_ reverseproxy.Selector = (*Selection)(nil)
)
