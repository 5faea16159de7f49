package resilience

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/lexiscore/gateway/internal/testkit"
)

// Every upstream fails its health checks while the API works: requests are
// still sent (panic routing) and counted, and the breakers still apply.
func TestPanicRoutingWhenEveryUpstreamIsUnhealthy(t *testing.T) {
	var apiFails atomic.Bool
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch {
		case r.URL.Path == "/healthz":
			always(http.StatusServiceUnavailable)(w, r, n)
		case apiFails.Load():
			always(http.StatusInternalServerError)(w, r, n)
		default:
			_, _ = w.Write([]byte("ok"))
		}
	})
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	handle_errors {
		problem
	}
	resilience panic_route
	reverse_proxy %s {
		health_uri /healthz
		health_interval 20ms
		health_fails 1
		lb_policy resilient
		transport resilient {
			breaker {
				failure_ratio 0.5
				min_requests 5
				window 10s
				open_delay 1m
			}
		}
	}
}`, be.addr()))
	up := be.addr()
	panicked := growth(panicRouting.With(map[string]string{"route": "panic_route"}))
	testkit.Eventually(t, "a request routed in panic", func() bool {
		if resp, body := send(t, http.MethodGet, in.URL("/api"), "api", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("with the only upstream unhealthy and its API fine: %d %q, want 200", resp.StatusCode, body)
		}
		return panicked() > 0
	})

	apiFails.Store(true)
	testkit.Eventually(t, "the breaker to open", func() bool {
		send(t, http.MethodGet, in.URL("/api"), "failing", nil)
		return breakerState(t, up) == "open"
	})
	resp, body := send(t, http.MethodGet, in.URL("/api"), "while-open", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || problemType(t, resp, body) != "circuit-open" {
		t.Fatalf("in panic with the breaker open: %d %q, want 503 circuit-open", resp.StatusCode, body)
	}
	if n := be.requestsFor("while-open"); n != 0 {
		t.Fatalf("in panic the open breaker let the request through %d times", n)
	}
}
