package profiling

import (
	"context"
	"fmt"
	"net/http"
	"regexp"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/grafana/pyroscope-go"
)

// routeRE bounds route names: they become label values in every CPU
// profile, so they come from the configuration and stay short.
var routeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Labels tags the CPU samples of everything after it in the handler chain
// (authentication, rate limiting, proxying…) with route=<Route>, so that
// Pyroscope can show a flame graph per route. While profiling is off it
// passes requests straight through.
type Labels struct {
	// Route is the value of the route label: a fixed name from the
	// configuration, never taken from the request, so the number of label
	// values is bounded by the configuration. 1 to 64 letters, digits, '_',
	// '.' or '-'.
	Route string `json:"route,omitempty"`

	profiles *manager
}

// CaddyModule returns the Caddy module information.
func (Labels) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.profile_labels",
		New: func() caddy.Module { return new(Labels) },
	}
}

// Provision attaches the handler to the process's profiler.
func (h *Labels) Provision(caddy.Context) error {
	h.profiles = profiles
	return nil
}

// Validate checks the route name.
func (h *Labels) Validate() error {
	if !routeRE.MatchString(h.Route) {
		return fmt.Errorf("profile_labels: route %q: want 1 to 64 letters, digits, '_', '.' or '-'", h.Route)
	}
	return nil
}

// ServeHTTP runs the rest of the chain with the route label set on the
// goroutine, and on the goroutines it starts.
func (h *Labels) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !h.profiles.running() {
		return next.ServeHTTP(w, r)
	}
	var err error
	pyroscope.TagWrapper(r.Context(), pyroscope.Labels("route", h.Route), func(ctx context.Context) {
		err = next.ServeHTTP(w, r.WithContext(ctx))
	})
	return err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Labels)(nil)
	_ caddy.Validator             = (*Labels)(nil)
	_ caddyhttp.MiddlewareHandler = (*Labels)(nil)
)
