package resilience

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit"
)

func TestBulkheadCapsInFlightAndRefusesWithRetryAfter(t *testing.T) {
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path == "/" {
			return // caddytest's readiness probe
		}
		<-release
	})
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	handle_errors {
		problem
	}
	resilience uploads {
		bulkhead 3 100ms
		retry_after 7s
	}
	reverse_proxy %s {
		transport resilient
	}
}`, be.addr()))

	const clients = 10
	rejected := growth(concurrencyRejections.With(map[string]string{"route": "uploads", "reason": "bulkhead"}))
	statuses := make(chan *http.Response, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			resp, body := send(t, http.MethodPost, in.URL("/upload"), fmt.Sprint("u", i), nil)
			if resp.StatusCode == http.StatusServiceUnavailable && problemType(t, resp, body) != "overloaded" {
				t.Errorf("refusal is %q, want overloaded", body)
			}
			statuses <- resp
		})
	}
	testkit.Eventually(t, "three uploads at the backend", func() bool { return be.currentInFlight() == 3 })
	for _, name := range []string{"gateway_concurrency_in_flight", "gateway_concurrency_limit"} {
		if got, _ := testkit.Series(t, concurrencyCollector{}, name, map[string]string{"route": "uploads"}); got != 3 {
			t.Errorf("%s = %v, want 3", name, got)
		}
	}
	testkit.Eventually(t, "the others refused", func() bool { return len(statuses) == clients-3 })
	close(release)
	wg.Wait()
	close(statuses)

	var ok, refused int
	for resp := range statuses {
		switch resp.StatusCode {
		case http.StatusOK:
			ok++
		case http.StatusServiceUnavailable:
			refused++
			if ra := resp.Header.Get("Retry-After"); ra != "7" {
				t.Errorf("refusal Retry-After %q, want 7", ra)
			}
		default:
			t.Errorf("unexpected status %d", resp.StatusCode)
		}
	}
	if _, maxInFlight, _ := be.stats(); ok != 3 || refused != clients-3 || maxInFlight != 3 {
		t.Fatalf("%d ok, %d refused, backend max in flight %d; want 3, %d, 3", ok, refused, maxInFlight, clients-3)
	}
	if n := rejected(); n != clients-3 {
		t.Errorf("gateway_concurrency_rejections_total{reason=bulkhead} = %v, want %d", n, clients-3)
	}
}

func TestBulkheadQueuesBriefly(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		time.Sleep(50 * time.Millisecond) // a slow upload, so that others queue
	})
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	resilience queued {
		bulkhead 1 5s
	}
	reverse_proxy %s {
		transport resilient
	}
}`, be.addr()))
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if resp, _ := send(t, http.MethodPost, in.URL("/upload"), fmt.Sprint("q", i), nil); resp.StatusCode != http.StatusOK {
				t.Errorf("queued upload %d: %d, want 200 after waiting its turn", i, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if _, maxInFlight, _ := be.stats(); maxInFlight != 1 {
		t.Fatalf("backend max in flight %d, want 1", maxInFlight)
	}
}

func TestAdaptiveLimitReportsItsLimit(t *testing.T) {
	be := newBackend(t, nil)
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	resilience adaptive {
		adaptive_limit {
			min 2
			max 50
			initial 10
			max_wait 1s
		}
	}
	reverse_proxy %s {
		transport resilient
	}
}`, be.addr()))
	for i := range 20 {
		if resp, _ := send(t, http.MethodGet, in.URL("/x"), fmt.Sprint("a", i), nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if limit, _ := testkit.Series(t, concurrencyCollector{}, "gateway_concurrency_limit", map[string]string{"route": "adaptive"}); limit < 2 || limit > 50 {
		t.Fatalf("gateway_concurrency_limit{route=adaptive} = %v, want within [2, 50]", limit)
	}
}

func TestRetryBudgetStopsARetryStorm(t *testing.T) {
	const clients = 20
	// All first attempts fail together, and retries are slow, so that many
	// would be in flight at once.
	var arrived sync.WaitGroup
	arrived.Add(clients)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch {
		case r.URL.Path == "/":
			return
		case n == 0:
			arrived.Done()
			arrived.Wait()
		default:
			time.Sleep(200 * time.Millisecond)
		}
		always(http.StatusServiceUnavailable)(w, r, n)
	})
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	resilience storm {
		retry 5 {
			backoff 5ms 10ms
			budget 0.2 1
		}
	}
	reverse_proxy %s {
		# A breaker that stays closed, or it would stop the storm itself.
		transport resilient {
			breaker {
				min_requests 1000
			}
		}
	}
}`, be.addr()))
	exhausted := growth(retryBudgetExhausted.With(map[string]string{"route": "storm"}))
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() { send(t, http.MethodGet, in.URL("/x"), fmt.Sprint("s", i), nil) })
	}
	wg.Wait()
	var sent int
	for i := range clients {
		sent += be.requestsFor(fmt.Sprint("s", i))
	}
	if sent >= clients*5 {
		t.Fatalf("the backend got %d attempts for %d requests: the budget did not limit retries", sent, clients)
	}
	if exhausted() == 0 {
		t.Fatal("gateway_retry_budget_exhausted_total did not grow")
	}
}
