package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/lexiscore/gateway/internal/testkit/redistest"
)

// TestRateLimitIsGlobalAcrossGateways runs two gateways with the shipped
// Caddyfile in front of one backend, sharing one Redis: a user's limit is
// one budget whichever gateway a request reaches, and one user's use does
// not touch another's.
func TestRateLimitIsGlobalAcrossGateways(t *testing.T) {
	rd := redistest.Start(t)
	be := StartBackend(t, bins, nil)
	secret := randomSecret()
	env := map[string]string{
		"GATEWAY_JWT_SECRET":     secret,
		"REDIS_URL":              rd.URL(),
		"GATEWAY_RATE_BURST":     "1000/s", // only the sustained policy is under test
		"GATEWAY_RATE_SUSTAINED": "100/m",
		// On a loaded test machine a Redis call may take longer than the
		// production 50ms; failing closed makes any store failure a 503
		// that the exact counts below would catch, never a silent pass.
		"GATEWAY_RATE_STORE_TIMEOUT":  "2s",
		"GATEWAY_RATE_ON_STORE_ERROR": "fail_closed",
	}
	gws := []*Gateway{
		StartGateway(t, bins, []string{be.Addr}, env),
		StartGateway(t, bins, []string{be.Addr}, env),
	}
	bearer := func(sub, tier string) http.Header {
		return SignedBearer(t, secret, Claims{Subject: sub, Tier: tier})
	}

	t.Run("one budget per user across both gateways", func(t *testing.T) {
		alice := bearer("alice", "free")
		const total, workers = 200, 8
		var mu sync.Mutex
		statuses := map[int]int{}
		allowedBy := map[int]int{}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < total; i += workers {
					g := i % len(gws)
					status, header, body := rlRequest(t, gws[g], http.MethodGet, "/v1/users/alice/scores", alice)
					switch status {
					case http.StatusOK:
						if got, want := header.Get("RateLimit-Policy"), `"burst";q=1000;w=1, "sustained";q=100;w=60`; got != want {
							t.Errorf("RateLimit-Policy %q, want %q", got, want)
						}
					case http.StatusTooManyRequests:
						rlCheckRefusal(t, header, body)
					}
					mu.Lock()
					statuses[status]++
					if status == http.StatusOK {
						allowedBy[g]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if statuses[http.StatusOK] != 100 || statuses[http.StatusTooManyRequests] != 100 || len(statuses) != 2 {
			t.Fatalf("statuses %v for 200 requests against 100/m: want exactly 100 × 200 and 100 × 429", statuses)
		}
		if allowedBy[0] == 0 || allowedBy[1] == 0 {
			t.Fatalf("allowed per gateway %v: both gateways should have served alice", allowedBy)
		}
	})

	t.Run("another user is untouched", func(t *testing.T) {
		bob := bearer("bob", "free")
		for i, gw := range gws {
			status, header, _ := rlRequest(t, gw, http.MethodGet, "/v1/users/bob/scores", bob)
			// Bob's count goes on across gateways; alice's never entered it.
			if want := fmt.Sprintf(`"sustained";r=%d;`, 99-i); status != http.StatusOK || !strings.Contains(header.Get("RateLimit"), want) {
				t.Fatalf("bob on gateway %d: %d, RateLimit %q; want 200 and %s", i, status, header.Get("RateLimit"), want)
			}
			if header.Get("X-RateLimit-Remaining") != strconv.Itoa(99-i) {
				t.Fatalf("X-RateLimit-Remaining %q", header.Get("X-RateLimit-Remaining"))
			}
		}
	})

	t.Run("audio scoring has its own smaller budget", func(t *testing.T) {
		_, header, _ := rlRequest(t, gws[0], http.MethodPost, "/v1/scores", bearer("dave", "free"))
		if got, want := header.Get("RateLimit-Policy"), `"score_burst";q=2;w=1, "score_sustained";q=30;w=60`; got != want {
			t.Fatalf("POST /v1/scores RateLimit-Policy %q, want %q", got, want)
		}
		_, header, _ = rlRequest(t, gws[0], http.MethodPost, "/v1/scores", bearer("erin", "pro"))
		if got, want := header.Get("RateLimit-Policy"), `"score_burst";q=10;w=1, "score_sustained";q=300;w=60`; got != want {
			t.Fatalf("pro POST /v1/scores RateLimit-Policy %q, want %q", got, want)
		}
	})

	t.Run("health is not limited", func(t *testing.T) {
		for range 5 {
			status, header, _ := rlRequest(t, gws[0], http.MethodGet, "/healthz", nil)
			if status != http.StatusOK || header.Get("RateLimit") != "" {
				t.Fatalf("/healthz: %d, RateLimit %q", status, header.Get("RateLimit"))
			}
		}
	})

	t.Run("decisions are counted", func(t *testing.T) {
		sum := func(labels string) float64 {
			var n float64
			for _, gw := range gws {
				n += rlMetric(t, gw.Metrics(t), "gateway_ratelimit_decisions_total", labels)
			}
			return n
		}
		if got := sum(`decision="allowed",policy="sustained"`); got != 102 {
			t.Errorf("allowed sustained decisions %v across both gateways, want 102 (alice 100, bob 2)", got)
		}
		if got := sum(`decision="denied",policy="sustained"`); got != 100 {
			t.Errorf("denied sustained decisions %v across both gateways, want 100", got)
		}
	})
}

func rlRequest(t *testing.T, gw *Gateway, method, path string, h http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, gw.BaseURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := gw.Client.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return 0, nil, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// rlCheckRefusal checks a 429: problem+json naming the policy, Retry-After
// in seconds matching the document, the limit headers saying none is left.
func rlCheckRefusal(t *testing.T, h http.Header, body []byte) {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil || h.Get("Content-Type") != "application/problem+json" {
		t.Errorf("429 body %q (%s): %v", body, h.Get("Content-Type"), err)
		return
	}
	wait, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || wait < 1 || wait > 60 || doc["retry_after"] != float64(wait) {
		t.Errorf("Retry-After %q, problem retry_after %v", h.Get("Retry-After"), doc["retry_after"])
	}
	if !strings.HasSuffix(fmt.Sprint(doc["type"]), "#rate-limited") || doc["policy"] != "sustained" || doc["request_id"] != h.Get("X-Request-ID") {
		t.Errorf("429 problem %v", doc)
	}
	if h.Get("X-RateLimit-Remaining") != "0" || !strings.Contains(h.Get("RateLimit"), `"sustained";r=0;`) {
		t.Errorf("429 limit headers: RateLimit %q, X-RateLimit-Remaining %q", h.Get("RateLimit"), h.Get("X-RateLimit-Remaining"))
	}
	if h.Get("Strict-Transport-Security") == "" {
		t.Errorf("429 without the security headers")
	}
}

// rlMetric returns the value of name{labels} (name alone when labels is
// empty) in a Prometheus text scrape, 0 when absent.
func rlMetric(t *testing.T, scrape, name, labels string) float64 {
	t.Helper()
	prefix := name + " "
	if labels != "" {
		prefix = name + "{" + labels + "} "
	}
	sc := bufio.NewScanner(strings.NewReader(scrape))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			if err != nil {
				t.Fatalf("metric %s%s: %v", name, labels, err)
			}
			return f
		}
	}
	return 0
}
