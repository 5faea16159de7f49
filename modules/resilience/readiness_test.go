package resilience

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/lexiscore/gateway/internal/testkit"
)

// TestUpstreamsReadyFollowsTheProxysHealthChecks: /readyz reads the health
// the /v1 proxy's own checks found, with no second proxy probing.
func TestUpstreamsReadyFollowsTheProxysHealthChecks(t *testing.T) {
	var down atomic.Bool
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path == "/healthz" && down.Load() {
			always(http.StatusServiceUnavailable)(w, r, n)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	handle_errors {
		problem
	}
	handle /readyz {
		upstreams_ready
	}
	handle {
		reverse_proxy %s {
			health_uri /healthz
			health_interval 20ms
			health_timeout 10s
			health_fails 1
			lb_policy resilient
		}
	}
}`, be.addr()))
	status := func(want int, typ string) func() error {
		return func() error {
			resp, body := send(t, http.MethodGet, in.URL("/readyz"), "probe", nil)
			if resp.StatusCode != want {
				return fmt.Errorf("/readyz: %d %s, want %d", resp.StatusCode, body, want)
			}
			if typ != "" && problemType(t, resp, body) != typ {
				return fmt.Errorf("/readyz: problem %q, want %q", body, typ)
			}
			return nil
		}
	}
	testkit.Eventually(t, "ready", status(http.StatusOK, ""))
	down.Store(true)
	testkit.Eventually(t, "not ready once the health checks fail", status(http.StatusServiceUnavailable, "service-unavailable"))
	down.Store(false)
	testkit.Eventually(t, "ready again", status(http.StatusOK, ""))
}

// TestUpstreamsReadyWithoutProxy: with no resilient proxy in the
// configuration, nothing can be served and the instance is not ready.
func TestUpstreamsReadyWithoutProxy(t *testing.T) {
	in := start(t, `
http://127.0.0.1:{http_port} {
	handle_errors {
		problem
	}
	upstreams_ready
}`)
	resp, body := send(t, http.MethodGet, in.URL("/readyz"), "probe", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || problemType(t, resp, body) != "service-unavailable" {
		t.Fatalf("/readyz: %d %s, want 503 service-unavailable", resp.StatusCode, body)
	}
}
