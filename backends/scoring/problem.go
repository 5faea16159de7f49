package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/lexiscore/gateway/internal/problemjson"
)

// problemTypeBase prefixes the slug of every problem type; the README section
// of each slug explains it.
const problemTypeBase = "https://github.com/lexiscore/gateway/blob/main/backends/scoring/README.md#"

// Problem type slugs.
const (
	probInvalidRequest       = "invalid-request"
	probNotFound             = "not-found"
	probForbidden            = "forbidden"
	probMethodNotAllowed     = "method-not-allowed"
	probTooLarge             = "too-large"
	probUnsupportedMediaType = "unsupported-media-type"
	probInjectedFault        = "injected-fault"
	probInternal             = "internal"
)

// apiError is an error a handler answers with a problem document. Detail is
// shown to the client; err, if any, is only logged.
type apiError struct {
	status int
	typ    string
	detail string
	err    error
}

func (e *apiError) Error() string {
	if e.err != nil {
		return e.typ + ": " + e.detail + ": " + e.err.Error()
	}
	return e.typ + ": " + e.detail
}

func (e *apiError) Unwrap() error { return e.err }

// badRequest is the apiError for a request the client must fix.
func badRequest(detail string, err error) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: probInvalidRequest, detail: detail, err: err}
}

// writeError answers err as a problem document: an apiError as it says, any
// other error as an opaque 500 whose cause is logged rather than shown.
func writeError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		logger.Error("internal error", "error", err, "path", r.URL.Path, "request_id", r.Header.Get(requestIDHeader))
		ae = &apiError{status: http.StatusInternalServerError, typ: probInternal, detail: "The server failed to handle the request."}
	}
	writeProblem(w, r, ae.status, ae.typ, ae.detail)
}

// writeProblem sends a problem document carrying the request's correlation id.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, typ, detail string) {
	problemjson.Write(w, r, status, problemTypeBase+typ, detail, r.Header.Get(requestIDHeader), nil)
}

// writeJSON sends v as a JSON document with the given status.
func writeJSON(w http.ResponseWriter, r *http.Request, logger *slog.Logger, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, r, logger, fmt.Errorf("encode response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// withProblems serves mux, but answers with problem documents where the mux
// would send its own plain-text 404 and 405 responses, so that clients see
// one error format everywhere.
func withProblems(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// No route matched. Only the mux knows whether the path exists with
		// other methods, so let its handler answer into a recorder and keep
		// the status and the Allow header it computed.
		rec := &headerRecorder{header: make(http.Header)}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.header.Get("Allow"))
			writeProblem(w, r, http.StatusMethodNotAllowed, probMethodNotAllowed, "This method is not allowed on this resource.")
			return
		}
		writeProblem(w, r, http.StatusNotFound, probNotFound, "No resource matches this path.")
	})
}

// headerRecorder is a ResponseWriter that keeps the status and headers of a
// response and discards its body.
type headerRecorder struct {
	header http.Header
	status int
}

func (r *headerRecorder) Header() http.Header { return r.header }

func (r *headerRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *headerRecorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return len(p), nil
}
