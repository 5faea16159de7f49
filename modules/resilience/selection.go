package resilience

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
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
type Selection struct {
	// FallbackRaw chooses within the preferred group. Default: random.
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

// Provision loads the fallback policy.
func (s *Selection) Provision(ctx caddy.Context) error {
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
	return nil
}

// Select returns an available upstream, or nil when none is.
func (s *Selection) Select(pool reverseproxy.UpstreamPool, r *http.Request, w http.ResponseWriter) *reverseproxy.Upstream {
	info := infoFrom(r.Context())
	if registry.open.Load() == 0 && !info.anyFailed() {
		return s.fallback.Select(pool, r, w)
	}
	var best, unblocked, available reverseproxy.UpstreamPool
	for _, u := range pool {
		if !u.Available() {
			continue
		}
		available = append(available, u)
		if registry.blocking(u.Dial) {
			continue
		}
		unblocked = append(unblocked, u)
		if !info.avoid(u.Dial) {
			best = append(best, u)
		}
	}
	for _, group := range []reverseproxy.UpstreamPool{best, unblocked, available} {
		if len(group) > 0 {
			return s.fallback.Select(group, r, w)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Selection)(nil)
	_ reverseproxy.Selector = (*Selection)(nil)
)
