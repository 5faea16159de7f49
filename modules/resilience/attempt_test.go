package resilience

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit"
)

// fetch makes a request that must be answered within 10s, returning the
// response with its body read.
func fetch(t *testing.T, method, url, id string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Test-ID", id)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s (%s): %v", method, url, id, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s (%s): reading the body: %v", method, url, id, err)
	}
	return resp, string(body)
}

// writeFailure answers status with a body of size bytes, written in chunks
// from one buffer so that the backend itself allocates next to nothing. It
// stops when the gateway hangs up.
func writeFailure(w http.ResponseWriter, status, size int) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	for size > 0 {
		n := min(size, len(chunk))
		if _, err := w.Write(chunk[:n]); err != nil {
			return
		}
		size -= n
	}
}

func TestLargeFailureBodyIsNotBuffered(t *testing.T) {
	const huge = 50 << 20
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch id := r.Header.Get("X-Test-ID"); {
		case r.URL.Path == "/" || (id == "recovers" && n > 0):
			_, _ = io.WriteString(w, "ok")
		case strings.HasPrefix(id, "size-"):
			size, _ := strconv.Atoi(strings.TrimPrefix(id, "size-"))
			writeFailure(w, http.StatusServiceUnavailable, size)
		default:
			writeFailure(w, http.StatusServiceUnavailable, huge)
		}
	})
	in := start(t, site(be.addr(), "", "", "failure_body")+fmt.Sprintf(`
http://127.0.0.1:{http_port}/small/* {
	handle_errors {
		problem
	}
	resilience small {
		max_failure_body 1KiB
	}
	reverse_proxy %s
}`, be.addr()))

	// A failure whose body outgrows the cap is dropped as soon as it does:
	// memory stays far below the body's size, the attempt is retried like
	// any 503, and the client gets the gateway's 502 in the end.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp, body := fetch(t, http.MethodGet, in.URL("/x"), "huge")
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d bytes allocated while three attempts answered %d-byte 503s", allocated, huge)
	if allocated > 8<<20 {
		t.Errorf("%d bytes allocated for three %d-byte failure bodies: they were buffered", allocated, huge)
	}
	if resp.StatusCode != http.StatusBadGateway || problemType(t, resp, body) != "bad-gateway" {
		t.Fatalf("huge 503: %d %.200q, want 502 bad-gateway", resp.StatusCode, body)
	}
	if n := be.requestsFor("huge"); n != 3 {
		t.Errorf("huge 503 was tried %d times, want 3 (retried like any 503)", n)
	}

	if resp, body := fetch(t, http.MethodGet, in.URL("/x"), "recovers"); resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("huge 503 then 200: %d %.200q, want the retry's 200", resp.StatusCode, body)
	}
	resp, body = fetch(t, http.MethodPost, in.URL("/x"), "post")
	if resp.StatusCode != http.StatusBadGateway || problemType(t, resp, body) != "bad-gateway" {
		t.Fatalf("POST answered with a huge 503: %d %.200q, want 502 bad-gateway", resp.StatusCode, body)
	}
	if n := be.requestsFor("post"); n != 1 {
		t.Errorf("POST without Idempotency-Key sent %d times, want 1", n)
	}

	// Up to the cap, the upstream's failure is passed on as it is.
	resp, body = fetch(t, http.MethodGet, in.URL("/small/x"), "size-1024")
	if resp.StatusCode != http.StatusServiceUnavailable || body != strings.Repeat("x", 1024) || resp.Header.Get("Content-Type") != "text/html" {
		t.Fatalf("503 with a body at the cap: %d %q, %d bytes; want it passed on", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	resp, body = fetch(t, http.MethodGet, in.URL("/small/x"), "size-1025")
	if resp.StatusCode != http.StatusBadGateway || problemType(t, resp, body) != "bad-gateway" {
		t.Fatalf("503 with a body one byte over the cap: %d %.200q, want 502 bad-gateway", resp.StatusCode, body)
	}
}

func TestFailureBodyCutOffIsRetried(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n > 0 || r.URL.Path == "/" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		// A 503 whose connection dies halfway through its body.
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "half")
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	})
	in := start(t, site(be.addr(), "", "", "cut_off"))
	resp, body := fetch(t, http.MethodGet, in.URL("/x"), "cut")
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("503 cut off, then 200: %d %q, want the retry's 200", resp.StatusCode, body)
	}
	if n := be.requestsFor("cut"); n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}
	// Not replayable: the cut-off failure cannot be passed on either.
	resp, body = fetch(t, http.MethodPost, in.URL("/x"), "cut-post")
	if resp.StatusCode != http.StatusBadGateway || problemType(t, resp, body) != "bad-gateway" {
		t.Fatalf("POST answered with a cut-off 503: %d %q, want 502 bad-gateway", resp.StatusCode, body)
	}
	if n := be.requestsFor("cut-post"); n != 1 {
		t.Errorf("POST without Idempotency-Key sent %d times, want 1", n)
	}
}

func TestClientLeavingMidStreamReleasesItsPermit(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path != "/stream" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		// Streams until the gateway hangs up (or 10s, to bound the test).
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && r.Context().Err() == nil; {
			if _, err := io.WriteString(w, "chunk;"); err != nil {
				return
			}
			_ = http.NewResponseController(w).Flush()
			time.Sleep(5 * time.Millisecond)
		}
	})
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	handle_errors {
		problem
	}
	resilience one_at_a_time {
		bulkhead 1
	}
	reverse_proxy %s {
		transport resilient
	}
}`, be.addr()))

	resp, err := http.Get(in.URL("/stream"))
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, len("chunk;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // the client leaves while the response streams

	testkit.Eventually(t, "the stream's permit to be released", func() bool {
		resp, _ := fetch(t, http.MethodGet, in.URL("/next"), "next")
		return resp.StatusCode == http.StatusOK
	})
}
