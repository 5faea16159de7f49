package main

import (
	"net/http"
	"time"
)

// requestIDHeader carries the correlation id of a request.
const requestIDHeader = "X-Request-ID"

// middleware wraps a handler with one cross-cutting concern. The /v1 routes
// are served through a list of them (see v1Middleware), so a concern such as
// signature verification or tracing is added by inserting one entry.
type middleware func(http.Handler) http.Handler

// chain wraps h in mws, the first of which sees the request first.
func chain(h http.Handler, mws ...middleware) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// echoRequestID copies the request's X-Request-ID to the response, so that
// callers can match answers, including errors, to requests.
func echoRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get(requestIDHeader); id != "" {
			w.Header().Set(requestIDHeader, id)
		}
		next.ServeHTTP(w, r)
	})
}

// observe records every /v1 request in the request log and the statistics and
// writes the access log. It belongs first in the /v1 chain so that it counts
// requests that later middleware rejects or delays.
func (s *server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// The mux has not routed the request yet; ask it which route will
		// serve it. Unrouted requests get "" and only count in the total.
		_, route := s.v1.Handler(r)
		s.requests.add(r, start)
		s.stats.begin(route)

		sw := &statusWriter{ResponseWriter: w}
		var cancelled bool
		defer func() {
			s.stats.end(cancelled)
			s.logger.Info("request",
				"method", r.Method,
				"path", r.URL.Path,
				"route", route,
				"status", sw.status,
				"bytes", sw.written,
				"duration_ms", time.Since(start).Milliseconds(),
				"cancelled", cancelled,
				"request_id", r.Header.Get(requestIDHeader),
			)
		}()
		next.ServeHTTP(sw, r)
		// The server cancels the context when the client disconnects; a
		// failed write means it went away while the answer was sent.
		cancelled = sw.err != nil || r.Context().Err() != nil
	})
}

// statusWriter remembers the status, the body size and the first write error
// of a response.
type statusWriter struct {
	http.ResponseWriter
	status  int
	written int64
	err     error
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's Flush.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
