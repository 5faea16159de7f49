package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lexiscore/gateway/internal/testkit"
)

// The end-to-end proof of docs/resilience.md: the real gateway with the
// shipped Caddyfile in front of the real scoring backend, whose fault
// injection plays the failing backend.

// resilienceEnv is the gateway environment of these tests: extra on top of
// rate limits high enough to stay out of the way (they are not under test).
func resilienceEnv(extra map[string]string) map[string]string {
	env := map[string]string{
		"GATEWAY_RATE_BURST":           "100000/s",
		"GATEWAY_RATE_SUSTAINED":       "6000000/m",
		"GATEWAY_RATE_SCORE_BURST":     "100000/s",
		"GATEWAY_RATE_SCORE_SUSTAINED": "6000000/m",
	}
	maps.Copy(env, extra)
	return env
}

// scoreBody is a valid scoring request (a tiny WAV header as the audio).
const scoreBody = `{"audio_base64":"UklGRiQAAABXQVZF","language":"en-US"}`

type callResult struct {
	status  int
	header  http.Header
	body    []byte
	elapsed time.Duration
	err     error
}

// call sends one request; it reports errors instead of failing, so that it
// can run in goroutines.
func call(c *http.Client, method, url, body string, header http.Header) callResult {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return callResult{err: err}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return callResult{err: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return callResult{status: resp.StatusCode, header: resp.Header, body: b, elapsed: time.Since(start), err: err}
}

// with returns h plus an X-Request-ID (and other pairs).
func with(h http.Header, kv ...string) http.Header {
	out := h.Clone()
	for i := 0; i+1 < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}

func createScores(t *testing.T, gw *Gateway, auth http.Header, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		r := call(gw.Client, http.MethodPost, gw.BaseURL+"/v1/scores", scoreBody, auth)
		if r.err != nil || r.status != http.StatusCreated {
			t.Fatalf("creating a score: %d %s %v", r.status, r.body, r.err)
		}
		var s struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(r.body, &s); err != nil || s.ID == "" {
			t.Fatalf("score %s: %v", r.body, err)
		}
		ids[i] = s.ID
	}
	return ids
}

// resetBackend forgets the backend's request log and counters.
func resetBackend(t *testing.T, be *Backend) {
	t.Helper()
	for _, path := range []string{"/requests", "/stats"} {
		req, _ := http.NewRequest(http.MethodDelete, "http://"+be.AdminAddr+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("DELETE %s: %v", path, err)
		}
		resp.Body.Close()
	}
}

// attemptsByID counts the requests the backend received per X-Request-ID.
func attemptsByID(t *testing.T, be *Backend) map[string]int {
	t.Helper()
	var seen []struct {
		Headers http.Header `json:"headers"`
	}
	be.Admin(t, "/requests", &seen)
	out := map[string]int{}
	for _, r := range seen {
		out[r.Headers.Get("X-Request-ID")]++
	}
	return out
}

type backendStats struct {
	RequestsTotal  int64            `json:"requests_total"`
	ByRoute        map[string]int64 `json:"by_route"`
	InFlight       int64            `json:"in_flight"`
	MaxInFlight    int64            `json:"max_in_flight"`
	CancelledTotal int64            `json:"cancelled_total"`
}

func statsOf(t *testing.T, be *Backend) backendStats {
	t.Helper()
	var s backendStats
	be.Admin(t, "/stats", &s)
	return s
}

// metrics parses one scrape of the gateway's /metrics.
func metrics(t *testing.T, gw *Gateway) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(gw.Metrics(t)))
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return fams
}

// breakerState is the state gateway_circuit_breaker_state reports for upstream.
func breakerState(t *testing.T, gw *Gateway, upstream string) string {
	t.Helper()
	fams := metrics(t, gw)
	for _, s := range []string{"closed", "open", "half-open"} {
		if _, v := sumSeries(fams, "gateway_circuit_breaker_state", map[string]string{"upstream": upstream, "state": s}); v == 1 {
			return s
		}
	}
	return ""
}

// problemOf checks a problem+json answer and returns its type slug.
func problemOf(t *testing.T, r callResult) string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d with Content-Type %q, want problem+json: %s", r.status, ct, r.body)
	}
	var doc map[string]any
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("problem %s: %v", r.body, err)
	}
	if doc["request_id"] != r.header.Get("X-Request-ID") {
		t.Errorf("problem request_id %v, header %q", doc["request_id"], r.header.Get("X-Request-ID"))
	}
	typ, _ := doc["type"].(string)
	return typ[strings.LastIndex(typ, "#")+1:]
}

// retryAfterOK checks a 503's Retry-After: whole seconds within [1, max].
func retryAfterOK(t *testing.T, r callResult, maxSecs int) {
	t.Helper()
	n, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || n < 1 || n > maxSecs {
		t.Errorf("Retry-After %q, want 1..%d seconds", r.header.Get("Retry-After"), maxSecs)
	}
}

// TestResilienceHalfFailingBackend: the backend answers 503 to half the
// calls. Reads still succeed (retried, or served stale once retries run
// out), each client request reaches the backend at most max_attempts (3)
// times, and a POST without an Idempotency-Key is never replayed.
func TestResilienceHalfFailingBackend(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, resilienceEnv(nil))
	auth := gw.Bearer(t, "half", "free")
	ids := createScores(t, gw, auth, 10)
	for _, id := range ids {
		if r := call(gw.Client, http.MethodGet, gw.BaseURL+"/v1/scores/"+id, "", auth); r.status != http.StatusOK {
			t.Fatalf("warming the cache: %d %s", r.status, r.body)
		}
	}
	be.SetFaults(t, map[string]any{"error_rate": 0.5, "error_status": 503})

	// The backend keeps its last 200 requests: batches of 50 client
	// requests (at most 150 attempts) fit.
	const batches, perBatch, workers = 4, 50, 2
	var ok, stale, attempts int
	for b := range batches {
		resetBackend(t, be)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < perBatch; i += workers {
					id := fmt.Sprintf("half-%d-%d", b, i)
					r := call(gw.Client, http.MethodGet, gw.BaseURL+"/v1/scores/"+ids[i%len(ids)], "", with(auth, "X-Request-ID", id))
					mu.Lock()
					if r.status == http.StatusOK {
						ok++
						if strings.Contains(r.header.Get("Warning"), "110") {
							stale++
						}
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for id, n := range attemptsByID(t, be) {
			if n > 3 {
				t.Errorf("request %s reached the backend %d times, more than max_attempts (3)", id, n)
			}
			attempts += n
		}
	}
	total := batches * perBatch
	t.Logf("%d/%d reads succeeded (%d served stale) with %d backend attempts", ok, total, stale, attempts)
	if float64(ok) < 0.99*float64(total) {
		t.Errorf("%d of %d reads succeeded, want at least 99%%", ok, total)
	}
	if attempts > 3*total {
		t.Errorf("%d attempts for %d requests", attempts, total)
	}
	if _, v := sumSeries(metrics(t, gw), "gateway_retries_total", map[string]string{"route": "read_scores", "reason": "status"}); v == 0 {
		t.Error("gateway_retries_total{route=read_scores,reason=status} did not count the retries")
	}

	t.Run("POST without Idempotency-Key is not replayed", func(t *testing.T) {
		resetBackend(t, be)
		statuses := map[int]int{}
		for i := range 20 {
			r := call(gw.Client, http.MethodPost, gw.BaseURL+"/v1/scores", scoreBody, with(auth, "X-Request-ID", fmt.Sprint("post-", i)))
			statuses[r.status]++
		}
		for id, n := range attemptsByID(t, be) {
			if n > 1 {
				t.Errorf("POST %s was sent %d times", id, n)
			}
		}
		if statuses[http.StatusServiceUnavailable] == 0 || statuses[http.StatusCreated] == 0 {
			t.Errorf("statuses %v: want the backend's 503s passed on, not replayed, besides 201s", statuses)
		}
	})

	t.Run("POST with Idempotency-Key is replayed", func(t *testing.T) {
		resetBackend(t, be)
		statuses := map[string]int{}
		for i := range 20 {
			id := fmt.Sprint("keyed-", i)
			r := call(gw.Client, http.MethodPost, gw.BaseURL+"/v1/scores", scoreBody,
				with(auth, "X-Request-ID", id, "Idempotency-Key", fmt.Sprint("key-", i)))
			statuses[id] = r.status
		}
		attempts := attemptsByID(t, be)
		for id, status := range statuses {
			switch n := attempts[id]; {
			case status == http.StatusServiceUnavailable && n != 2:
				t.Errorf("keyed POST %s failed after %d attempts, want the route's max_attempts (2)", id, n)
			case status == http.StatusCreated && (n < 1 || n > 2):
				t.Errorf("keyed POST %s created after %d attempts", id, n)
			case status != http.StatusCreated && status != http.StatusServiceUnavailable:
				t.Errorf("keyed POST %s: %d", id, status)
			}
		}
	})
}

// TestResilienceBackendHardDown: the backend refuses connections. The
// breaker opens within its window, clients get fast 503s with Retry-After
// (stale data for cached reads), and after the backend returns the breaker
// half-opens, then closes; the state gauge shows each step.
func TestResilienceBackendHardDown(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, resilienceEnv(map[string]string{
		// Active health checks would take the upstream out of rotation on
		// their own; slowed to the start-up check, the breaker is alone.
		"GATEWAY_HEALTH_INTERVAL":      "1h",
		"GATEWAY_BREAKER_MIN_REQUESTS": "10",
		"GATEWAY_BREAKER_OPEN_DELAY":   "3s",
	}))
	auth := gw.Bearer(t, "down", "free")
	id := createScores(t, gw, auth, 1)[0]
	if r := call(gw.Client, http.MethodGet, gw.BaseURL+"/v1/scores/"+id, "", auth); r.status != http.StatusOK {
		t.Fatalf("warming the cache: %d", r.status)
	}
	steps := []string{breakerState(t, gw, be.Addr)}

	be.SetFaults(t, map[string]any{"outage": true})
	down := time.Now()
	testkit.Eventually(t, "the breaker to open", func() error {
		call(gw.Client, http.MethodGet, gw.BaseURL+"/v1/users/down/scores", "", auth)
		if s := breakerState(t, gw, be.Addr); s != "open" {
			return fmt.Errorf("breaker %q", s)
		}
		return nil
	})
	steps = append(steps, "open")
	if took := time.Since(down); took > 10*time.Second {
		t.Errorf("the breaker opened %v after the outage, beyond its 10s window", took)
	} else {
		t.Logf("the breaker opened %v after the outage", took)
	}

	var lat []time.Duration
	for i := range 100 {
		r := call(gw.Client, http.MethodGet, gw.BaseURL+fmt.Sprintf("/v1/users/down/scores?limit=%d", i%100+1), "", auth)
		if r.status != http.StatusServiceUnavailable || problemOf(t, r) != "circuit-open" {
			t.Fatalf("request %d while open: %d %s", i, r.status, r.body)
		}
		retryAfterOK(t, r, 3)
		lat = append(lat, r.elapsed)
	}
	slices.Sort(lat)
	// Fast means no wait for an upstream: well under the 2s attempt
	// timeout a dead upstream would cost, with room for a busy machine.
	// The figure itself is logged, not asserted.
	if p99 := lat[98]; p99 > time.Second {
		t.Errorf("fast-fail p99 %v, want under 1s (no wait for an upstream)", p99)
	} else {
		t.Logf("fast-fail latency p50 %v p99 %v", lat[49], p99)
	}
	r := call(gw.Client, http.MethodPost, gw.BaseURL+"/v1/scores", scoreBody, auth)
	if r.status != http.StatusServiceUnavailable || r.elapsed > time.Second {
		t.Errorf("POST while open: %d after %v, want a fast 503", r.status, r.elapsed)
	}
	r = call(gw.Client, http.MethodGet, gw.BaseURL+"/v1/scores/"+id, "", auth)
	if r.status != http.StatusOK || r.header.Get("Warning") != `110 - "Response is Stale"` || r.header.Get("Age") == "" {
		t.Errorf("cached read while open: %d, Warning %q, Age %q; want the stale copy", r.status, r.header.Get("Warning"), r.header.Get("Age"))
	}

	be.SetFaults(t, map[string]any{"outage": false})
	testkit.Eventually(t, "half-open after the open delay", func() error {
		if s := breakerState(t, gw, be.Addr); s != "half-open" {
			return fmt.Errorf("breaker %q", s)
		}
		return nil
	})
	steps = append(steps, "half-open")
	testkit.Eventually(t, "the probes to close the breaker", func() error {
		// The caller's own scores: another user's would be refused (403)
		// before reaching the upstream, and probe nothing.
		call(gw.Client, http.MethodGet, gw.BaseURL+"/v1/users/down/scores", "", auth)
		if s := breakerState(t, gw, be.Addr); s != "closed" {
			return fmt.Errorf("breaker %q", s)
		}
		return nil
	})
	steps = append(steps, "closed")
	if want := []string{"closed", "open", "half-open", "closed"}; !slices.Equal(steps, want) {
		t.Errorf("gauge steps %v, want %v", steps, want)
	}
	fams := metrics(t, gw)
	for _, tr := range [][2]string{{"closed", "open"}, {"open", "half-open"}, {"half-open", "closed"}} {
		if _, v := sumSeries(fams, "gateway_circuit_breaker_transitions_total", map[string]string{"upstream": be.Addr, "from": tr[0], "to": tr[1]}); v < 1 {
			t.Errorf("no %s→%s transition counted", tr[0], tr[1])
		}
	}
	if !strings.Contains(gw.Output(), `"msg":"circuit breaker opened"`) {
		t.Error("no log line for the breaker opening")
	}
}

// TestResilienceOneOfTwoUpstreamsFailing: traffic moves to the healthy
// upstream without a single client-visible error.
func TestResilienceOneOfTwoUpstreamsFailing(t *testing.T) {
	bad := StartBackend(t, bins, nil)
	good := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{bad.Addr, good.Addr}, resilienceEnv(nil))
	auth := gw.Bearer(t, "two", "free")

	// keyed POSTs carry an Idempotency-Key: a POST that reached the
	// failing upstream is replayed only with one.
	check := func(t *testing.T, method string, keyed bool) {
		t.Helper()
		for i := range 40 {
			var r callResult
			want := http.StatusOK
			if method == http.MethodPost {
				want = http.StatusCreated
				header := auth
				if keyed {
					header = with(auth, "Idempotency-Key", fmt.Sprint("k", i))
				}
				r = call(gw.Client, method, gw.BaseURL+"/v1/scores", scoreBody, header)
			} else {
				r = call(gw.Client, method, gw.BaseURL+fmt.Sprintf("/v1/users/two/scores?limit=%d", i+1), "", auth)
			}
			if r.err != nil || r.status != want {
				t.Fatalf("%s %d: %d %s %v", method, i, r.status, r.body, r.err)
			}
		}
	}
	t.Run("connection refused", func(t *testing.T) {
		bad.SetFaults(t, map[string]any{"outage": true})
		check(t, http.MethodGet, false)
		check(t, http.MethodPost, false)
	})
	t.Run("every answer a 503", func(t *testing.T) {
		bad.SetFaults(t, map[string]any{"error_rate": 1, "error_status": 503})
		check(t, http.MethodGet, false)
		check(t, http.MethodPost, true)
	})
}

// TestResilienceConcurrentUploadsBulkheaded: 300 uploads at once against a
// slow backend. At most 100 reach it at a time; the others wait briefly
// or get 503 with Retry-After; nothing hangs.
func TestResilienceConcurrentUploadsBulkheaded(t *testing.T) {
	be := StartBackend(t, bins, nil)
	// Connections are opened before the burst and wait for their request
	// longer than the shipped 5 s allow.
	gw := StartGateway(t, bins, []string{be.Addr}, resilienceEnv(map[string]string{"GATEWAY_READ_HEADER_TIMEOUT": "2m"}))
	auth := gw.Bearer(t, "uploader", "free")
	be.SetFaults(t, map[string]any{"latency_ms": 2000})
	resetBackend(t, be)

	const uploads = 300
	// One connection per upload (HTTP/1.1), so that all 300 are at the
	// gateway at once instead of queueing in one HTTP/2 connection. Their
	// TLS handshakes are done first, a few at a time: 300 at once take
	// longer than a client waits for a handshake on a busy machine, and
	// the burst is about the bulkhead, not the handshakes.
	tr := gw.Client.Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	tr.MaxIdleConnsPerHost = uploads
	conns := openTLSConns(t, tr.TLSClientConfig, strings.TrimPrefix(gw.BaseURL, "https://"), uploads)
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		select {
		case c := <-conns:
			return c, nil
		default:
			return (&tls.Dialer{Config: tr.TLSClientConfig}).DialContext(ctx, network, addr)
		}
	}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	results := make([]callResult, uploads)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range uploads {
		wg.Go(func() {
			results[i] = call(client, http.MethodPost, gw.BaseURL+"/v1/scores", scoreBody, auth)
		})
	}
	wg.Wait()
	took := time.Since(start)

	var created, refused int
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Errorf("upload %d: %v after %v", i, r.err, r.elapsed)
		case r.status == http.StatusCreated:
			created++
		case r.status == http.StatusServiceUnavailable:
			refused++
			if typ := problemOf(t, r); typ != "overloaded" {
				t.Errorf("upload %d refused as %q, want overloaded", i, typ)
			}
			retryAfterOK(t, r, 60)
		default:
			t.Errorf("upload %d: %d %s", i, r.status, r.body)
		}
	}
	st := statsOf(t, be)
	t.Logf("%d created, %d refused in %v; backend max in flight %d", created, refused, took, st.MaxInFlight)
	if st.MaxInFlight > 100 {
		t.Errorf("the backend had %d uploads in flight at once, want at most 100", st.MaxInFlight)
	}
	if created < 100 || created+refused != uploads {
		t.Errorf("%d created and %d refused of %d", created, refused, uploads)
	}
	if took > 20*time.Second {
		t.Errorf("the burst took %v", took)
	}
	fams := metrics(t, gw)
	if _, v := sumSeries(fams, "gateway_concurrency_limit", map[string]string{"route": "submit_score"}); v != 100 {
		t.Errorf("gateway_concurrency_limit{route=submit_score} = %v, want 100", v)
	}
	if _, v := sumSeries(fams, "gateway_concurrency_in_flight", map[string]string{"route": "submit_score"}); v != 0 {
		t.Errorf("gateway_concurrency_in_flight{route=submit_score} = %v after the burst, want 0", v)
	}
	if _, v := sumSeries(fams, "gateway_concurrency_rejections_total", map[string]string{"route": "submit_score", "reason": "bulkhead"}); int(v) != refused {
		t.Errorf("gateway_concurrency_rejections_total{reason=bulkhead} = %v, want %d", v, refused)
	}
}

// TestResilienceSlowBackendTimesOut: a backend slower than the route's
// timeout gets the request canceled, the client a 504 in time; a slow
// body, once the answer has begun, is not cut.
func TestResilienceSlowBackendTimesOut(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, resilienceEnv(map[string]string{
		"GATEWAY_READ_TIMEOUT":         "1s",
		"GATEWAY_READ_ATTEMPT_TIMEOUT": "400ms",
		"GATEWAY_SUBMIT_TIMEOUT":       "1s",
	}))
	auth := gw.Bearer(t, "slow", "free")
	// The client's connection is set up first, so that the timings below
	// hold no TLS handshake with a race-built gateway on a busy machine.
	if r := call(gw.Client, http.MethodGet, gw.BaseURL+"/healthz", "", nil); r.status != http.StatusOK {
		t.Fatalf("/healthz: %d %v", r.status, r.err)
	}
	be.SetFaults(t, map[string]any{"latency_ms": 5000})
	resetBackend(t, be)

	// A canceled GET shows in the backend's cancelled_total. A canceled POST
	// does not: Go's server notices a dropped connection only once it has
	// read the request body, and the latency fault waits before reading it.
	for _, tc := range []struct {
		method, path, body string
		seesCancel         bool
	}{
		{http.MethodGet, "/v1/users/slow/scores", "", true},
		{http.MethodPost, "/v1/scores", scoreBody, false},
	} {
		before := statsOf(t, be).CancelledTotal
		r := call(gw.Client, tc.method, gw.BaseURL+tc.path, tc.body, auth)
		if r.status != http.StatusGatewayTimeout || problemOf(t, r) != "upstream-timeout" {
			t.Fatalf("%s %s: %d %s, want 504 upstream-timeout", tc.method, tc.path, r.status, r.body)
		}
		// Cut by the 1s timeout, not answered after the backend's 5s (a
		// loaded machine may add a second or two to the answer).
		if r.elapsed < time.Second || r.elapsed > 4*time.Second {
			t.Errorf("%s: 504 after %v, want after the 1s timeout, well before the backend's 5s", tc.method, r.elapsed)
		}
		t.Logf("%s: 504 after %v", tc.method, r.elapsed)
		if !tc.seesCancel {
			continue
		}
		testkit.Eventually(t, "the backend to see the request canceled", func() error {
			if n := statsOf(t, be).CancelledTotal; n <= before {
				return fmt.Errorf("cancelled_total %d", n)
			}
			return nil
		})
	}

	t.Run("a slow body streams past the timeout", func(t *testing.T) {
		be.SetFaults(t, map[string]any{"slow_body_ms": 2500})
		r := call(gw.Client, http.MethodGet, gw.BaseURL+"/v1/users/slow/scores", "", auth)
		if r.status != http.StatusOK || r.err != nil || !json.Valid(r.body) {
			t.Fatalf("slow body: %d %v %q", r.status, r.err, r.body)
		}
		if r.elapsed < 2*time.Second {
			t.Fatalf("answered in %v: the slow body was not slow", r.elapsed)
		}
	})
}

// TestResilienceDegradedModeFromTheAdminAPI: an operator switches degraded
// mode on; audio scoring is shed with 503 while reads are served.
func TestResilienceDegradedModeFromTheAdminAPI(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, resilienceEnv(nil))
	auth := gw.Bearer(t, "degraded", "free")
	setDegraded := func(on bool) map[string]bool {
		t.Helper()
		r := call(http.DefaultClient, http.MethodPost, gw.AdminURL+"/degraded", fmt.Sprintf(`{"enabled":%v}`, on), nil)
		var st map[string]bool
		if r.status != http.StatusOK || json.Unmarshal(r.body, &st) != nil {
			t.Fatalf("POST /degraded: %d %s %v", r.status, r.body, r.err)
		}
		return st
	}

	if st := setDegraded(true); !st["enabled"] || !st["manual"] {
		t.Fatalf("after switching on: %v", st)
	}
	r := call(gw.Client, http.MethodPost, gw.BaseURL+"/v1/scores", scoreBody, auth)
	if r.status != http.StatusServiceUnavailable || problemOf(t, r) != "degraded" {
		t.Fatalf("scoring in degraded mode: %d %s", r.status, r.body)
	}
	retryAfterOK(t, r, 60)
	if r := call(gw.Client, http.MethodGet, gw.BaseURL+"/v1/users/degraded/scores", "", auth); r.status != http.StatusOK {
		t.Fatalf("read in degraded mode: %d %s", r.status, r.body)
	}
	if _, v := sumSeries(metrics(t, gw), "gateway_degraded_mode", nil); v != 1 {
		t.Errorf("gateway_degraded_mode = %v, want 1", v)
	}
	if st := setDegraded(false); st["enabled"] {
		t.Fatalf("after switching off: %v", st)
	}
	if r := call(gw.Client, http.MethodPost, gw.BaseURL+"/v1/scores", scoreBody, auth); r.status != http.StatusCreated {
		t.Fatalf("scoring after degraded mode: %d %s", r.status, r.body)
	}
}

// openTLSConns dials n TLS connections to addr, eight handshakes at a time,
// and hands them out through the returned channel; the test closes those
// left.
func openTLSConns(t *testing.T, cfg *tls.Config, addr string, n int) chan net.Conn {
	t.Helper()
	conns := make(chan net.Conn, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			d := &tls.Dialer{Config: cfg.Clone()}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				failed.Add(1)
				t.Errorf("opening a connection to %s: %v", addr, err)
				return
			}
			conns <- c
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
	t.Cleanup(func() {
		for {
			select {
			case c := <-conns:
				_ = c.Close()
			default:
				return
			}
		}
	})
	return conns
}
