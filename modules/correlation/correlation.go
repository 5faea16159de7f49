// Package correlation gives every request one correlation ID: a well-formed
// incoming ID is kept, anything else is replaced by a fresh UUID. The ID is
// forwarded upstream, echoed to the client, and put in access logs and
// problem documents so that one request can be followed across systems.
// trace_context does the same for the W3C trace context (tracecontext.go).
package correlation

import (
	"fmt"
	"io"
	"net/http"
	"regexp"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/google/uuid"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/lexiscore/gateway/internal/telemetry"
	"github.com/lexiscore/gateway/modules/problem"
)

func init() {
	caddy.RegisterModule(RequestID{})
}

// DefaultPattern accepts IDs of 1 to 128 letters, digits, '.', '_', ':' and
// '-': enough for UUIDs, ULIDs and most tracing IDs, and nothing that could
// break a log line or a header.
const DefaultPattern = `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`

// RequestID assigns the correlation ID. It sets {http.vars.request_id}, the
// request header sent upstream, the response header, and the access log
// field "request_id".
type RequestID struct {
	// Header carries the ID in both directions. Default: X-Request-ID.
	Header string `json:"header,omitempty"`
	// Pattern is the regular expression an incoming ID must match to be kept;
	// an ID that does not match is replaced, never trusted. Default:
	// DefaultPattern.
	Pattern string `json:"pattern,omitempty"`

	pattern *regexp.Regexp
}

// CaddyModule returns the Caddy module information.
func (RequestID) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.request_id",
		New: func() caddy.Module { return new(RequestID) },
	}
}

// Provision compiles the pattern.
func (m *RequestID) Provision(caddy.Context) error {
	if m.Header == "" {
		m.Header = "X-Request-ID"
	}
	if m.Pattern == "" {
		m.Pattern = DefaultPattern
	}
	var err error
	m.pattern, err = regexp.Compile(m.Pattern)
	if err != nil {
		return fmt.Errorf("request_id: pattern %q: %w", m.Pattern, err)
	}
	return nil
}

// Validate checks the header name.
func (m *RequestID) Validate() error {
	if !httpguts.ValidHeaderFieldName(m.Header) {
		return fmt.Errorf("request_id: header %q is not a valid header name", m.Header)
	}
	return nil
}

// ServeHTTP assigns the ID and calls the next handler.
func (m RequestID) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	id := m.Resolve(r.Header.Values(m.Header))
	r.Header.Set(m.Header, id)
	w.Header().Set(m.Header, id)
	caddyhttp.SetVar(r.Context(), problem.RequestIDVar, id)
	telemetry.LogFields(r, zap.String("request_id", id))
	return next.ServeHTTP(&idWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, header: m.Header, id: id}, r)
}

// idWriter keeps the response to one copy of the ID header, the gateway's:
// reverse_proxy adds the upstream's response headers to what is already
// set, so an upstream that echoes the ID, as most do, would add a second.
type idWriter struct {
	*caddyhttp.ResponseWriterWrapper
	header, id string
	written    bool
}

func (w *idWriter) WriteHeader(status int) {
	if !w.written {
		w.Header().Set(w.header, w.id)
		w.written = status >= 200
	}
	w.ResponseWriterWrapper.WriteHeader(status)
}

func (w *idWriter) Write(p []byte) (int, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriterWrapper.Write(p)
}

// ReadFrom is Write's, for io.Copy.
func (w *idWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// Resolve returns the single incoming ID when it is well-formed, else a new one.
// Several copies of the header are treated as malformed.
func (m RequestID) Resolve(incoming []string) string {
	if len(incoming) == 1 && m.pattern.MatchString(incoming[0]) {
		return incoming[0]
	}
	return uuid.NewString()
}

// Interface guards
var (
	_ caddy.Provisioner           = (*RequestID)(nil)
	_ caddy.Validator             = (*RequestID)(nil)
	_ caddyhttp.MiddlewareHandler = (*RequestID)(nil)
	_ io.ReaderFrom               = (*idWriter)(nil)
)
