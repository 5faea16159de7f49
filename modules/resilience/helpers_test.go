package resilience

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
	_ "github.com/lexiscore/gateway/modules/problem"
)

// backend is an upstream whose behaviour a test scripts. It counts what it
// receives: requests per X-Request-ID, requests in flight, and requests
// whose client (the gateway) went away before the answer.
type backend struct {
	*httptest.Server
	// serve answers the n-th request (from 0) with the request's X-Test-ID;
	// default: 200 "ok".
	serve func(w http.ResponseWriter, r *http.Request, n int)

	mu          sync.Mutex
	total       int
	byID        map[string]int
	inFlight    int
	maxInFlight int
	canceled    int
}

func newBackend(t *testing.T, serve func(w http.ResponseWriter, r *http.Request, n int)) *backend {
	t.Helper()
	b := &backend{serve: serve, byID: map[string]int{}}
	b.Server = httptest.NewServer(http.HandlerFunc(b.handle))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) handle(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	id := r.Header.Get("X-Test-ID")
	n := b.byID[id]
	b.total++
	b.byID[id]++
	b.inFlight++
	b.maxInFlight = max(b.maxInFlight, b.inFlight)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.inFlight--
		if r.Context().Err() != nil {
			b.canceled++
		}
		b.mu.Unlock()
	}()
	if b.serve == nil {
		_, _ = io.WriteString(w, "ok")
		return
	}
	b.serve(w, r, n)
}

// addr is the backend's dial address.
func (b *backend) addr() string { return strings.TrimPrefix(b.URL, "http://") }

func (b *backend) stats() (total, maxInFlight, canceled int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total, b.maxInFlight, b.canceled
}

func (b *backend) requestsFor(id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byID[id]
}

func (b *backend) currentInFlight() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inFlight
}

// always returns a serve function answering every request with status.
func always(status int, header ...string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, r *http.Request, _ int) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, http.StatusText(status))
	}
}

// blockUntilCanceled never answers: it waits for the gateway to give up.
func blockUntilCanceled(_ http.ResponseWriter, r *http.Request, _ int) {
	<-r.Context().Done()
}

// start runs Caddy with the given sites; "{http_port}" is filled in.
func start(t *testing.T, sites string) *caddytest.Instance {
	t.Helper()
	return caddytest.Start(t, "", sites)
}

// send makes a request with an X-Test-ID, returning the response with its
// body read.
func send(t *testing.T, method, url, id string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("X-Test-ID", id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// problemType decodes a problem+json body and returns its type slug.
func problemType(t *testing.T, resp *http.Response, body string) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json; body %q", ct, body)
	}
	var doc struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("problem body %q: %v", body, err)
	}
	return doc.Type[strings.LastIndex(doc.Type, "#")+1:]
}

// growth returns a function that reports how much counter c grew since
// growth was called: counters are package-level and keep counting across
// tests (and -count runs).
func growth(c prometheus.Collector) func() float64 {
	before := testkit.Value(c)
	return func() float64 { return testkit.Value(c) - before }
}

// breakerState returns the state the gauge reports for upstream.
func breakerState(t *testing.T, upstream string) string {
	t.Helper()
	for _, s := range []string{"closed", "open", "half-open"} {
		if v, _ := testkit.Series(t, stateCollector{}, "", map[string]string{"upstream": upstream, "state": s}); v == 1 {
			return s
		}
	}
	return ""
}
