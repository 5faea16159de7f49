package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit"
)

func TestFaultsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    faults
		ok   bool
	}{
		{"zero", faults{}, true},
		{"all set", faults{LatencyMS: 100, ErrorRate: 0.5, ErrorStatus: 429, RetryAfter: "Wed, 21 Oct 2015 07:28:00 GMT", Outage: true, SlowBodyMS: 100}, true},
		{"max", faults{LatencyMS: maxFaultMS, SlowBodyMS: maxFaultMS, ErrorRate: 1, ErrorStatus: 599}, true},
		{"negative latency", faults{LatencyMS: -1}, false},
		{"huge latency", faults{LatencyMS: maxFaultMS + 1}, false},
		{"negative slow body", faults{SlowBodyMS: -1}, false},
		{"huge slow body", faults{SlowBodyMS: maxFaultMS + 1}, false},
		{"negative rate", faults{ErrorRate: -0.1}, false},
		{"rate above 1", faults{ErrorRate: 1.01}, false},
		{"success status", faults{ErrorStatus: 200}, false},
		{"status 600", faults{ErrorStatus: 600}, false},
		{"status 399", faults{ErrorStatus: 399}, false},
		{"retry after newline", faults{RetryAfter: "1\r\nX-Evil: 1"}, false},
		{"retry after too long", faults{RetryAfter: strings.Repeat("1", maxRetryAfterLen+1)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.f.validate(); (err == nil) != tc.ok {
				t.Errorf("validate(%+v) = %v, want ok=%v", tc.f, err, tc.ok)
			}
		})
	}
}

func TestAdminFaults(t *testing.T) {
	ts := startServer(t)
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	for _, body := range []string{
		``,
		`{`,
		`[]`,
		`{"latency_ms":"100"}`,
		`{"latency_ms":1.5}`,
		`{"latency":100}`,
		`{"latency_ms":100} {}`,
		`{"latency_ms":-5}`,
		`{"error_rate":2}`,
		`{"error_status":302}`,
	} {
		t.Run(body, func(t *testing.T) {
			checkProblem(t, ts.do(t, http.MethodPut, ts.admin+"/faults", strings.NewReader(body), jsonCT), http.StatusBadRequest, probInvalidRequest)
		})
	}

	want := faults{LatencyMS: 1, ErrorRate: 0.25, ErrorStatus: 502, RetryAfter: "3", SlowBodyMS: 2}
	ts.setFaults(t, want)
	var got faults
	decodeJSON(t, ts.do(t, http.MethodGet, ts.admin+"/faults", nil, nil), http.StatusOK, &got)
	if got != want {
		t.Errorf("GET /faults = %+v, want %+v", got, want)
	}
	// PUT replaces: absent fields are off.
	ts.setFaults(t, faults{LatencyMS: 7})
	decodeJSON(t, ts.do(t, http.MethodGet, ts.admin+"/faults", nil, nil), http.StatusOK, &got)
	if got != (faults{LatencyMS: 7}) {
		t.Errorf("GET /faults after second PUT = %+v, want only latency_ms 7", got)
	}
	if resp := ts.do(t, http.MethodDelete, ts.admin+"/faults", nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE /faults = %d, want 204", resp.StatusCode)
	}
	decodeJSON(t, ts.do(t, http.MethodGet, ts.admin+"/faults", nil, nil), http.StatusOK, &got)
	if got != (faults{}) {
		t.Errorf("GET /faults after DELETE = %+v, want none", got)
	}
	checkProblem(t, ts.do(t, http.MethodPost, ts.admin+"/faults", nil, nil), http.StatusMethodNotAllowed, probMethodNotAllowed)
	checkProblem(t, ts.do(t, http.MethodGet, ts.admin+"/nope", nil, nil), http.StatusNotFound, probNotFound)
}

func TestFaultLatency(t *testing.T) {
	ts := startServer(t)
	const latency = 300 * time.Millisecond
	ts.setFaults(t, faults{LatencyMS: int(latency / time.Millisecond)})

	start := time.Now()
	checkProblem(t, ts.do(t, http.MethodGet, ts.api+"/v1/scores/unknown", nil, nil), http.StatusNotFound, probNotFound)
	if elapsed := time.Since(start); elapsed < latency {
		t.Errorf("answered after %v, want at least %v", elapsed, latency)
	}

	// Health checks are not delayed: with a huge latency they still answer.
	ts.setFaults(t, faults{LatencyMS: maxFaultMS})
	for _, path := range []string{"/healthz", "/readyz"} {
		if resp := ts.do(t, http.MethodGet, ts.api+path, nil, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("%s = %d during latency, want 200", path, resp.StatusCode)
		}
	}
}

// TestInFlightAndCancellation holds requests in injected latency to check the
// in-flight gauge, its high-water mark and the counting of abandoned requests.
func TestInFlightAndCancellation(t *testing.T) {
	ts := startServer(t)
	ts.setFaults(t, faults{LatencyMS: maxFaultMS})
	const n = 6
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.api+"/v1/scores/held", nil)
			if err != nil {
				errs <- err
				return
			}
			resp, err := ts.client.Do(req)
			if err == nil {
				resp.Body.Close()
				err = errors.New("request answered despite the latency")
			}
			if !errors.Is(err, context.Canceled) {
				errs <- err
			}
		})
	}
	testkit.Eventually(t, "requests in flight", func() bool { return ts.stats(t).InFlight == n })
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("held request: %v", err)
	}
	testkit.Eventually(t, "cancelled requests to finish", func() bool {
		s := ts.stats(t)
		return s.InFlight == 0 && s.CancelledTotal == n
	})
	s := ts.stats(t)
	if s.MaxInFlight != n || s.RequestsTotal != n || s.ByRoute[routeGetScore] != n {
		t.Errorf("stats = %+v, want max_in_flight, requests_total and GET route = %d", s, n)
	}

	if resp := ts.do(t, http.MethodDelete, ts.admin+"/stats", nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /stats = %d, want 204", resp.StatusCode)
	}
	want := statsSnapshot{ByRoute: map[string]int64{routeCreateScore: 0, routeGetScore: 0, routeUserScores: 0}}
	if s := ts.stats(t); !reflect.DeepEqual(s, want) {
		t.Errorf("stats after reset = %+v, want %+v", s, want)
	}
}

func TestFaultErrors(t *testing.T) {
	ts := startServer(t)
	for _, tc := range []struct {
		name       string
		f          faults
		status     int
		retryAfter string
	}{
		{"default status", faults{ErrorRate: 1}, http.StatusServiceUnavailable, ""},
		{"status and retry-after", faults{ErrorRate: 1, ErrorStatus: 429, RetryAfter: "7"}, http.StatusTooManyRequests, "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.do(t, http.MethodDelete, ts.admin+"/stats", nil, nil)
			ts.setFaults(t, tc.f)
			for _, resp := range []response{
				ts.postJSON(t, `{"audio_base64":"AQID"}`, nil),
				ts.do(t, http.MethodGet, ts.api+"/v1/users/bob/scores", nil, nil),
			} {
				checkProblem(t, resp, tc.status, probInjectedFault)
				if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("Retry-After = %q, want %q", got, tc.retryAfter)
				}
			}
			if resp := ts.do(t, http.MethodGet, ts.api+"/healthz", nil, nil); resp.StatusCode != http.StatusOK {
				t.Errorf("/healthz = %d during injected errors, want 200", resp.StatusCode)
			}
			if s := ts.stats(t); s.ErrorsInjectedTotal != 2 || s.ByRoute[routeCreateScore] != 1 || s.ByRoute[routeUserScores] != 1 {
				t.Errorf("stats = %+v, want 2 injected errors, one per route", s)
			}
		})
	}

	ts.setFaults(t, faults{ErrorRate: 0})
	if resp := ts.postJSON(t, `{"audio_base64":"AQID"}`, nil); resp.StatusCode != http.StatusCreated {
		t.Errorf("POST with error_rate 0 = %d, want 201", resp.StatusCode)
	}
}

func TestFaultOutage(t *testing.T) {
	ts := startServer(t)
	apiAddr := strings.TrimPrefix(ts.api, "http://")
	// A connection opened before the outage must not survive it.
	if resp := ts.do(t, http.MethodGet, ts.api+"/healthz", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz = %d, want 200", resp.StatusCode)
	}

	for round := range 2 {
		ts.setFaults(t, faults{Outage: true})
		if conn, err := net.Dial("tcp", apiAddr); !isRefused(err) {
			if conn != nil {
				conn.Close()
			}
			t.Fatalf("round %d: dial during outage: %v, want connection refused", round, err)
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.api+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := ts.client.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("round %d: /healthz answered %d during outage", round, resp.StatusCode)
		}
		// The admin API stays up and reports the outage.
		var f faults
		decodeJSON(t, ts.do(t, http.MethodGet, ts.admin+"/faults", nil, nil), http.StatusOK, &f)
		if !f.Outage {
			t.Fatalf("round %d: GET /faults = %+v, want outage", round, f)
		}
		// Setting the outage again is harmless.
		ts.setFaults(t, faults{Outage: true})

		if round == 0 {
			ts.setFaults(t, faults{})
		} else if resp := ts.do(t, http.MethodDelete, ts.admin+"/faults", nil, nil); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE /faults = %d, want 204", resp.StatusCode)
		}
		if resp := ts.do(t, http.MethodGet, ts.api+"/readyz", nil, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("round %d: /readyz after outage = %d, want 200", round, resp.StatusCode)
		}
		if resp := ts.postJSON(t, `{"audio_base64":"AQID"}`, nil); resp.StatusCode != http.StatusCreated {
			t.Fatalf("round %d: POST after outage = %d, want 201", round, resp.StatusCode)
		}
	}
}

func TestFaultSlowBody(t *testing.T) {
	ts := startServer(t)
	var created score
	decodeJSON(t, ts.postJSON(t, `{"audio_base64":"AQID"}`, nil), http.StatusCreated, &created)
	const slow = 500 * time.Millisecond
	ts.setFaults(t, faults{SlowBodyMS: int(slow / time.Millisecond)})

	start := time.Now()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.api+"/v1/scores/"+created.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	headersAt := time.Now()
	var reads int
	var body []byte
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			reads++
			body = append(body, buf[:n]...)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read body: %v", err)
		}
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	// The headers come at once, the body trickles in over the duration.
	if bodyTime := time.Since(headersAt); bodyTime < slow*8/10 {
		t.Errorf("body took %v after the headers (%v after the request), want about %v", bodyTime, headersAt.Sub(start), slow)
	}
	if reads < 2 {
		t.Errorf("body arrived in %d read, want several chunks", reads)
	}
	var got score
	if err := json.Unmarshal(body, &got); err != nil || got != created {
		t.Errorf("slow body = %s (%v), want the score %+v", body, err, created)
	}

	// Errors are not slowed down.
	start = time.Now()
	checkProblem(t, ts.do(t, http.MethodGet, ts.api+"/v1/scores/unknown", nil, nil), http.StatusNotFound, probNotFound)
	if elapsed := time.Since(start); elapsed >= slow {
		t.Errorf("404 took %v with slow_body_ms, want no delay", elapsed)
	}
}
