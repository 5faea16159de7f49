package resilience

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit"
)

// proxySite is a test site with a reads route (GET, HEAD) and a writes
// route (everything else) in front of reverse_proxy with the resilient
// transport and selection policy, configured for failover only, as in the
// production Caddyfile. %[1]s: upstreams; %[2]s: extra options of the reads
// route; %[3]s: the breaker block.
const proxySite = `
http://127.0.0.1:{http_port} {
	handle_errors {
		problem
	}
	@reads method GET HEAD
	resilience @reads %[4]s {
		timeout 3s
		retry 3 {
			backoff 10ms 40ms
		}
		%[2]s
	}
	@writes not method GET HEAD
	resilience @writes %[4]s_writes {
		timeout 3s
		retry 3 {
			backoff 10ms 40ms
		}
	}
	reverse_proxy %[1]s {
		lb_policy resilient
		lb_retries 2
		lb_retry_match {
			expression false
		}
		transport resilient {
			%[3]s
		}
	}
}
`

func site(upstreams, readOptions, breaker, route string) string {
	return fmt.Sprintf(proxySite, upstreams, readOptions, breaker, route)
}

func TestRetriesOnlyWhenReplayIsSafe(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Method == http.MethodGet && n == 2 {
			_, _ = w.Write([]byte("ok"))
			return
		}
		always(http.StatusServiceUnavailable)(w, r, n)
	})
	in := start(t, site(be.addr(), "", "", "retries"))

	retried := growth(retries.With(map[string]string{"route": "retries", "reason": "status"}))
	resp, body := send(t, http.MethodGet, in.URL("/x"), "get-recovers", nil)
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("GET: %d %q, want 200 ok after two retries", resp.StatusCode, body)
	}
	if n := be.requestsFor("get-recovers"); n != 3 {
		t.Fatalf("GET reached the backend %d times, want 3", n)
	}

	resp, _ = send(t, http.MethodPost, in.URL("/x"), "post-no-key", nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("POST without Idempotency-Key: %d, want the upstream's 503", resp.StatusCode)
	}
	if n := be.requestsFor("post-no-key"); n != 1 {
		t.Fatalf("POST without Idempotency-Key was sent %d times, want 1", n)
	}

	resp, _ = send(t, http.MethodPost, in.URL("/x"), "post-key", http.Header{"Idempotency-Key": {"k-1"}})
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("POST with Idempotency-Key: %d, want 503 after the last attempt", resp.StatusCode)
	}
	if n := be.requestsFor("post-key"); n != 3 {
		t.Fatalf("POST with Idempotency-Key was sent %d times, want 3", n)
	}
	if got := retried(); got != 2 {
		t.Errorf("gateway_retries_total{route=retries,reason=status} grew by %v, want 2", got)
	}
}

func TestRetryAfterIsHonouredAndCapped(t *testing.T) {
	var firstAt, secondAt time.Time
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch id := r.Header.Get("X-Test-ID"); {
		case id == "short" && n == 0:
			firstAt = time.Now()
			always(http.StatusServiceUnavailable, "Retry-After", "1")(w, r, n)
		case id == "short":
			secondAt = time.Now()
			_, _ = w.Write([]byte("ok"))
		case id == "date" && n == 0:
			always(http.StatusServiceUnavailable, "Retry-After", time.Now().Add(time.Second).UTC().Format(http.TimeFormat))(w, r, n)
		case id == "long":
			always(http.StatusServiceUnavailable, "Retry-After", "30")(w, r, n)
		default:
			_, _ = w.Write([]byte("ok"))
		}
	})
	in := start(t, site(be.addr(), "", "", "retry_after"))

	resp, _ := send(t, http.MethodGet, in.URL("/x"), "short", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("Retry-After 1: %d, want 200 on the retry", resp.StatusCode)
	}
	if gap := secondAt.Sub(firstAt); gap < time.Second {
		t.Fatalf("retried %v after Retry-After: 1", gap)
	}
	if resp, _ := send(t, http.MethodGet, in.URL("/x"), "date", nil); resp.StatusCode != http.StatusOK || be.requestsFor("date") != 2 {
		t.Fatalf("Retry-After as HTTP-date: %d after %d attempts, want 200 after 2", resp.StatusCode, be.requestsFor("date"))
	}

	start := time.Now()
	resp, _ = send(t, http.MethodGet, in.URL("/x"), "long", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "30" {
		t.Fatalf("Retry-After 30 (above the cap): %d, Retry-After %q; want the upstream's 503 with Retry-After 30",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := be.requestsFor("long"); n != 1 || time.Since(start) > time.Second {
		t.Fatalf("Retry-After above the cap: %d attempts in %v, want 1 at once", n, time.Since(start))
	}
}

func TestTimeoutAnswers504AndCancelsUpstream(t *testing.T) {
	be := newBackend(t, blockUntilCanceled)
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	handle_errors {
		problem
	}
	resilience slow {
		timeout 300ms
	}
	reverse_proxy %s {
		transport resilient
	}
}`, be.addr()))

	start := time.Now()
	resp, body := send(t, http.MethodGet, in.URL("/x"), "slow", nil)
	elapsed := time.Since(start)
	if resp.StatusCode != http.StatusGatewayTimeout || problemType(t, resp, body) != "upstream-timeout" {
		t.Fatalf("status %d body %q, want 504 upstream-timeout", resp.StatusCode, body)
	}
	if elapsed < 300*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("answered after %v, want just after the 300ms timeout", elapsed)
	}
	testkit.Eventually(t, "the backend to see the request canceled", func() bool {
		_, _, canceled := be.stats()
		return canceled >= 1
	})
}

// Attempts of a second, not tens of milliseconds: a busy machine can take
// longer than that to dial, and an attempt canceled while dialing never
// reaches the backend that counts them.
func TestAttemptTimeoutRetriesThenAnswers504InTime(t *testing.T) {
	be := newBackend(t, blockUntilCanceled)
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	handle_errors {
		problem
	}
	resilience attempts {
		timeout 5s
		attempt_timeout 1s
		retry 3 {
			backoff 10ms 20ms
		}
	}
	reverse_proxy %s {
		transport resilient
	}
}`, be.addr()))

	start := time.Now()
	resp, body := send(t, http.MethodGet, in.URL("/x"), "attempts", nil)
	elapsed := time.Since(start)
	if resp.StatusCode != http.StatusGatewayTimeout || problemType(t, resp, body) != "upstream-timeout" {
		t.Fatalf("status %d body %q, want 504 upstream-timeout", resp.StatusCode, body)
	}
	if n := be.requestsFor("attempts"); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
	if elapsed > 5*time.Second+time.Second {
		t.Fatalf("answered after %v, want within the 5s timeout", elapsed)
	}
	testkit.Eventually(t, "all three attempts canceled upstream", func() bool {
		_, _, canceled := be.stats()
		return canceled >= 3
	})
}
