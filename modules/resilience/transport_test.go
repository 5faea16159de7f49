package resilience

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/lexiscore/gateway/internal/proxytransport"
	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
)

// fastBreaker opens after 5 attempts of which half failed, and probes after
// 300ms.
const fastBreaker = `breaker {
				failure_ratio 0.5
				min_requests 5
				window 10s
				open_delay 300ms
				half_open_probes 2
			}`

func TestBreakerOpensFailsFastThenRecovers(t *testing.T) {
	var healthy atomic.Bool
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if !healthy.Load() {
			always(http.StatusInternalServerError)(w, r, n)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	in := start(t, site(be.addr(), "", fastBreaker, "breaker"))
	up := be.addr()
	testkit.Eventually(t, "the breaker to open", func() bool {
		send(t, http.MethodGet, in.URL("/x"), "fail", nil)
		return breakerState(t, up) == "open"
	})
	sent, _, _ := be.stats()

	start := time.Now()
	resp, body := send(t, http.MethodGet, in.URL("/x"), "fast", nil)
	if elapsed := time.Since(start); elapsed > 100*time.Millisecond {
		t.Errorf("open breaker answered after %v, want a fast failure", elapsed)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || problemType(t, resp, body) != "circuit-open" {
		t.Fatalf("open breaker: %d %q, want 503 circuit-open", resp.StatusCode, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1 (the rest of the 300ms open delay, rounded up)", ra)
	}
	if now, _, _ := be.stats(); now != sent {
		t.Fatalf("the open breaker let %d requests through", now-sent)
	}

	healthy.Store(true)
	testkit.Eventually(t, "half-open after the open delay", func() bool { return breakerState(t, up) == "half-open" })
	for i := range 2 {
		if resp, _ := send(t, http.MethodGet, in.URL("/x"), fmt.Sprint("probe", i), nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("probe %d: %d", i, resp.StatusCode)
		}
	}
	if s := breakerState(t, up); s != "closed" {
		t.Fatalf("after two good probes the breaker is %q, want closed", s)
	}
	for _, tr := range [][2]string{{"closed", "open"}, {"open", "half-open"}, {"half-open", "closed"}} {
		if n := testkit.Value(breakerTransitions.With(map[string]string{"upstream": up, "from": tr[0], "to": tr[1]})); n != 1 {
			t.Errorf("transitions %s→%s: %v, want 1", tr[0], tr[1], n)
		}
	}
	if n := testkit.Value(upstreamRequests.With(map[string]string{"upstream": up, "code_class": "open"})); n < 1 {
		t.Errorf("gateway_upstream_requests_total{code_class=open} = %v, want the refused attempt counted", n)
	}
}

func TestFailoverToHealthyUpstreamWithoutClientErrors(t *testing.T) {
	good := newBackend(t, nil)
	failing := newBackend(t, always(http.StatusServiceUnavailable))
	for _, tc := range []struct {
		name, bad string
	}{
		{"connection refused", caddytest.ClosedAddr(t)},
		{"503s", failing.addr()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := start(t, site(tc.bad+" "+good.addr(), "", fastBreaker, "failover"))
			for i := range 40 {
				method := http.MethodGet
				if i%2 == 1 && tc.name == "connection refused" {
					// A request that never reached an upstream may be
					// resent whatever its method.
					method = http.MethodPost
				}
				if resp, body := send(t, method, in.URL("/x"), fmt.Sprint(tc.name, i), nil); resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d (%s): %d %q", i, method, resp.StatusCode, body)
				}
			}
		})
	}
}

func TestOnlyOneLayerRetries(t *testing.T) {
	// Every attempt dies mid-request: the connection is closed before any
	// answer, a transport error that reverse_proxy would retry for GETs by
	// itself without lb_retry_match.
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	be503 := newBackend(t, always(http.StatusServiceUnavailable))
	for _, b := range []*backend{be, be503} {
		in := start(t, site(b.addr(), "", "", "one_layer"))
		for i := range 5 {
			id := fmt.Sprint("req", i)
			send(t, http.MethodGet, in.URL("/x"), id, nil)
			if n := b.requestsFor(id); n != 3 {
				t.Fatalf("request %d reached the backend %d times, want exactly max_attempts (3)", i, n)
			}
		}
	}
}

// An API that fails while its health endpoint is fine: the open breaker
// must neither refuse the health checks (two refused checks would mark the
// only upstream down) nor count them.
func TestHealthChecksBypassTheBreaker(t *testing.T) {
	var health atomic.Int64
	var apiUp atomic.Bool
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path == "/healthz" {
			health.Add(1)
			_, _ = w.Write([]byte("ok"))
			return
		}
		if !apiUp.Load() {
			always(http.StatusServiceUnavailable)(w, r, n)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	// The open delay is long enough for many health checks to fall within
	// it even on a busy machine, so that a breaker refusing them would mark
	// the upstream down (health_fails 2).
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	handle_errors {
		problem
	}
	resilience health
	reverse_proxy %s {
		health_uri /healthz
		health_interval 20ms
		health_timeout 10s
		health_fails 2
		lb_policy resilient
		transport resilient {
			breaker {
				failure_ratio 0.5
				min_requests 5
				window 10s
				open_delay 3s
				half_open_probes 1
			}
		}
	}
}`, be.addr()))
	up := be.addr()
	ok := growth(upstreamRequests.With(map[string]string{"upstream": up, "code_class": "2xx"}))
	testkit.Eventually(t, "the breaker to open", func() bool {
		send(t, http.MethodGet, in.URL("/api"), "api", nil)
		return breakerState(t, up) == "open"
	})
	seen := health.Load()
	testkit.Eventually(t, "health checks while the breaker is open", func() bool { return health.Load() >= seen+5 })
	if s := breakerState(t, up); s != "open" {
		t.Fatalf("the health checks reached the upstream only once its breaker was %q: the open breaker refused them", s)
	}
	// Still in the pool: refused by its breaker, not "no upstream".
	resp, body := send(t, http.MethodGet, in.URL("/api"), "while-open", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || problemType(t, resp, body) != "circuit-open" {
		t.Fatalf("while the breaker is open: %d %q, want 503 circuit-open", resp.StatusCode, body)
	}
	if n := ok(); n != 0 {
		t.Fatalf("gateway_upstream_requests_total{2xx} grew by %v: health checks were counted", n)
	}

	apiUp.Store(true)
	testkit.Eventually(t, "the breaker to let a probe through", func() bool { return breakerState(t, up) != "open" })
	if resp, body := send(t, http.MethodGet, in.URL("/api"), "probe", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("first request after the open delay: %d %q, want 200 (the upstream must not have been marked down)", resp.StatusCode, body)
	}
}

func TestBreakerStateSurvivesReload(t *testing.T) {
	be := newBackend(t, always(http.StatusInternalServerError))
	cfg := site(be.addr(), "", fastBreaker, "reload")
	in := start(t, strings.Replace(cfg, "open_delay 300ms", "open_delay 1m", 1))
	up := be.addr()
	testkit.Eventually(t, "the breaker to open", func() bool {
		send(t, http.MethodGet, in.URL("/x"), "fail", nil)
		return breakerState(t, up) == "open"
	})
	in.Load(t, strings.Replace(cfg, "open_delay 300ms", "open_delay 1m", 1))
	if s := breakerState(t, up); s != "open" {
		t.Fatalf("after a reload the breaker is %q, want still open", s)
	}
	sent, _, _ := be.stats()
	resp, _ := send(t, http.MethodGet, in.URL("/x"), "after-reload", nil)
	if now, _, _ := be.stats(); resp.StatusCode != http.StatusServiceUnavailable || now != sent {
		t.Fatalf("after a reload: %d with %d requests sent, want a fast 503", resp.StatusCode, now-sent)
	}
}

// consumingTransport reads the whole request body before passing the
// request on, as request signing does: a try that then fails to dial has
// used up the body.
type consumingTransport struct {
	proxytransport.Wrapper
}

func (consumingTransport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.test_consuming",
		New: func() caddy.Module { return new(consumingTransport) },
	}
}

func (c *consumingTransport) Provision(ctx caddy.Context) error { return c.ProvisionInner(ctx) }

func (c *consumingTransport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

func (c *consumingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body.Close()
		r2 := *req
		r2.Body = io.NopCloser(bytes.NewReader(body))
		req = &r2
	}
	return c.Inner.RoundTrip(req)
}

func init() { caddy.RegisterModule(consumingTransport{}) }

func TestFailoverResendsTheWholeBody(t *testing.T) {
	good := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write(body)
	})
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	resilience upload {
		retry 2
	}
	reverse_proxy %s %s {
		lb_policy resilient {
			fallback first
		}
		lb_retries 1
		transport resilient {
			transport test_consuming
		}
	}
}`, caddytest.ClosedAddr(t), good.addr()))
	// The "first" policy tries the closed address first; the transport
	// inside has read the body by the time the dial fails.
	req, _ := http.NewRequest(http.MethodPost, in.URL("/upload"), strings.NewReader("the whole body"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(got) != "the whole body" {
		t.Fatalf("after failover: %d %q, want the whole body echoed", resp.StatusCode, got)
	}
}
