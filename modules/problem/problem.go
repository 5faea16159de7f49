// Package problem renders every error the gateway itself produces as an RFC 9457
// application/problem+json document carrying the request ID, and gives the other
// modules one error type to return so that clients see a stable, safe message.
package problem

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// RequestIDVar is the request variable ({http.vars.request_id}) holding the
// correlation ID of the request; the correlation module sets it.
const RequestIDVar = "request_id"

// Error is an error whose Detail is safe to show to a client. Modules return it
// wrapped in caddyhttp.Error so that Caddy's handle_errors routes render it.
type Error struct {
	// Status is the HTTP status code of the response.
	Status int
	// Type is a short, stable slug naming the kind of problem (e.g.
	// "rate-limited"); it becomes the fragment of the problem type URI.
	Type string
	// Detail is a human-readable explanation for the client. It must never
	// contain internal addresses, secrets or stack traces.
	Detail string
	// Extensions are extra members of the problem document (RFC 9457 §3.2).
	Extensions map[string]any
	// Cause is the internal error: logged by Caddy, never sent to clients.
	Cause error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Type, e.Detail, e.Cause)
	}
	return e.Type + ": " + e.Detail
}

func (e *Error) Unwrap() error { return e.Cause }

// New returns a caddyhttp.HandlerError carrying a problem Error, ready to be
// returned from a ServeHTTP method.
func New(status int, typ, detail string, cause error) error {
	return caddyhttp.Error(status, &Error{Status: status, Type: typ, Detail: detail, Cause: cause})
}

// WithExtensions is New with extra members in the problem document.
func WithExtensions(status int, typ, detail string, ext map[string]any, cause error) error {
	return caddyhttp.Error(status, &Error{Status: status, Type: typ, Detail: detail, Extensions: ext, Cause: cause})
}

// genericDetails are the client-facing explanations for errors that carry no
// problem Error of their own (Caddy's built-in handlers, reverse_proxy).
var genericDetails = map[int]string{
	http.StatusBadRequest:            "The request is malformed.",
	http.StatusUnauthorized:          "Authentication is required.",
	http.StatusForbidden:             "Access to this resource is denied.",
	http.StatusNotFound:              "No resource matches this path.",
	http.StatusMisdirectedRequest:    "This server does not serve the requested host.",
	http.StatusMethodNotAllowed:      "This method is not allowed on this resource.",
	http.StatusRequestEntityTooLarge: "The request body is too large.",
	http.StatusTooManyRequests:       "Too many requests.",
	http.StatusBadGateway:            "The scoring service could not be reached.",
	http.StatusServiceUnavailable:    "The scoring service is temporarily unavailable.",
	http.StatusGatewayTimeout:        "The scoring service did not answer in time.",
}

// FromError turns any handler error into the problem fields a client sees,
// keeping internal error text out of them.
func FromError(err error) (status int, typ, detail string, ext map[string]any) {
	status = http.StatusInternalServerError
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode != 0 {
		status = he.StatusCode
	}
	var pe *Error
	if errors.As(err, &pe) {
		if pe.Status != 0 {
			status = pe.Status
		}
		return status, pe.Type, pe.Detail, pe.Extensions
	}
	detail = genericDetails[status]
	if detail == "" {
		detail = http.StatusText(status)
	}
	return status, slug(status), detail, nil
}

// slug names a status code as a problem type: 502 → "bad-gateway".
func slug(status int) string {
	text := http.StatusText(status)
	if text == "" {
		return fmt.Sprintf("http-%d", status)
	}
	return strings.ToLower(strings.NewReplacer(" ", "-", "'", "").Replace(text))
}
