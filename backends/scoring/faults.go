package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"
)

const (
	// maxFaultMS bounds latency_ms and slow_body_ms: ten minutes outlasts
	// any gateway timeout worth testing.
	maxFaultMS = 10 * 60 * 1000
	// maxRetryAfterLen bounds retry_after.
	maxRetryAfterLen = 128
	// defaultErrorStatus is the status of injected errors when error_status
	// is not set.
	defaultErrorStatus = http.StatusServiceUnavailable
	// slowBodyChunks is how many pieces a slow body is written in.
	slowBodyChunks = 10
)

// faults are the failures injected into /v1 requests, set through the admin
// API. The zero value injects nothing.
type faults struct {
	// LatencyMS delays every /v1 request before it is answered.
	LatencyMS int `json:"latency_ms"`
	// ErrorRate is the fraction (0..1) of /v1 requests answered with
	// ErrorStatus instead of being served.
	ErrorRate float64 `json:"error_rate"`
	// ErrorStatus is the status of injected errors; 0 means 503.
	ErrorStatus int `json:"error_status"`
	// RetryAfter, when set, is sent as Retry-After with injected errors.
	RetryAfter string `json:"retry_after"`
	// Outage closes the API listener: connections are refused.
	Outage bool `json:"outage"`
	// SlowBodyMS spreads successful /v1 response bodies over this long.
	SlowBodyMS int `json:"slow_body_ms"`
}

// validate reports the first out-of-range field.
func (f faults) validate() error {
	switch {
	case f.LatencyMS < 0 || f.LatencyMS > maxFaultMS:
		return fmt.Errorf("latency_ms must be between 0 and %d", maxFaultMS)
	case f.SlowBodyMS < 0 || f.SlowBodyMS > maxFaultMS:
		return fmt.Errorf("slow_body_ms must be between 0 and %d", maxFaultMS)
	case f.ErrorRate < 0 || f.ErrorRate > 1:
		return errors.New("error_rate must be between 0 and 1")
	case f.ErrorStatus != 0 && (f.ErrorStatus < 400 || f.ErrorStatus > 599):
		return errors.New("error_status must be 0 (meaning 503) or between 400 and 599")
	case len(f.RetryAfter) > maxRetryAfterLen:
		return fmt.Errorf("retry_after must not exceed %d characters", maxRetryAfterLen)
	}
	for _, c := range []byte(f.RetryAfter) {
		if c < ' ' || c > '~' {
			return errors.New("retry_after must be printable ASCII")
		}
	}
	return nil
}

// errorStatus is the status of injected errors.
func (f faults) errorStatus() int {
	if f.ErrorStatus == 0 {
		return defaultErrorStatus
	}
	return f.ErrorStatus
}

// faultState holds the current faults. Requests read it without locking;
// the admin API replaces it whole.
type faultState struct {
	p atomic.Pointer[faults]
}

func (fs *faultState) load() faults {
	if f := fs.p.Load(); f != nil {
		return *f
	}
	return faults{}
}

func (fs *faultState) store(f faults) { fs.p.Store(&f) }

// injectFaults applies the current faults to a /v1 request: latency first,
// then maybe an error instead of the answer, then maybe a slow body. The
// faults are read once, so a request sees one consistent set.
func (s *server) injectFaults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := s.faults.load()
		if f.LatencyMS > 0 && !sleep(r.Context(), time.Duration(f.LatencyMS)*time.Millisecond) {
			return // the client is gone: there is no one to answer
		}
		if f.ErrorRate > 0 && rand.Float64() < f.ErrorRate {
			s.stats.errorInjected()
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			writeProblem(w, r, f.errorStatus(), probInjectedFault, "The scoring backend injected this error (fault injection).")
			return
		}
		if f.SlowBodyMS == 0 {
			next.ServeHTTP(w, r)
			return
		}
		sw := &slowBodyWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		sw.finish(r.Context(), time.Duration(f.SlowBodyMS)*time.Millisecond)
	})
}

// sleep waits for d and reports whether it did, or returns false as soon as
// ctx is done.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// slowBodyWriter sends the status and headers of a successful response at
// once but holds back its body, which finish then trickles out. Clients see a
// response that starts on time and stalls, unlike plain latency. Other
// responses pass through unchanged.
type slowBodyWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *slowBodyWriter) WriteHeader(status int) {
	if w.status != 0 {
		return
	}
	w.status = status
	w.ResponseWriter.WriteHeader(status)
	if w.slow() {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

func (w *slowBodyWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.slow() {
		return w.ResponseWriter.Write(p)
	}
	return w.body.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *slowBodyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// slow reports whether the body is held back.
func (w *slowBodyWriter) slow() bool {
	return w.status >= 200 && w.status < 300
}

// finish writes the held-back body in slowBodyChunks pieces, each after a
// pause, so that the whole body takes about d. It stops early when the client
// goes away; the observe middleware counts that.
func (w *slowBodyWriter) finish(ctx context.Context, d time.Duration) {
	body := w.body.Bytes()
	chunks := min(slowBodyChunks, len(body))
	if chunks == 0 {
		return
	}
	rc := http.NewResponseController(w.ResponseWriter)
	for i := range chunks {
		if !sleep(ctx, d/time.Duration(chunks)) {
			return
		}
		if _, err := w.ResponseWriter.Write(body[i*len(body)/chunks : (i+1)*len(body)/chunks]); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
