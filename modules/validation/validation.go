// Package validation refuses requests that break the scoring API's OpenAPI 3
// contract before they reach the backend, and serves that contract to
// clients. Paths, methods, path/query/header parameters, content types, body
// sizes and JSON bodies are checked with kin-openapi; multipart uploads are
// streamed and only counted, so that a 25 MiB upload never sits in memory.
package validation

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/lexiscore/gateway/internal/telemetry"
	"github.com/lexiscore/gateway/modules/problem"
)

func init() {
	caddy.RegisterModule(Handler{})
	caddy.RegisterModule(SpecHandler{})
}

// Handler validates each request against an OpenAPI 3 document and answers
// the ones that break it with a problem document: 404 (no such path), 405
// (with Allow), 415 (content type), 413 (body size) or 400 (parameters or
// body, each violation listed in the "errors" member with its JSON pointer or
// parameter). Valid requests go on unchanged; a JSON body is buffered,
// validated and replayed to the upstream, a multipart body is streamed and
// counted, and a 413 replaces the upstream error if it passes its limit.
type Handler struct {
	// SpecFile is the OpenAPI document (YAML or JSON), relative to the
	// working directory. Default: the scoring API's document compiled into
	// the binary, which always matches the backend built from this tree.
	SpecFile string `json:"spec_file,omitempty"`
	// Limits bound the bodies of every operation (see Limits for the
	// defaults: 1 MiB buffered, 26 MiB streamed multipart).
	Limits
	// Routes overrides Limits per operation, keyed by operationId.
	Routes map[string]Limits `json:"routes,omitempty"`

	validator *Validator
	logger    *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.openapi_validate",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision loads and checks the document and registers the metric.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if err := telemetry.Register(ctx.GetMetricsRegistry(), failures); err != nil {
		return fmt.Errorf("openapi_validate: registering metrics: %w", err)
	}
	contract, err := LoadContract(ctx, h.SpecFile)
	if err != nil {
		return fmt.Errorf("openapi_validate: %w", err)
	}
	h.validator, err = NewValidator(contract, h.Limits, h.Routes)
	if err != nil {
		return fmt.Errorf("openapi_validate: routes: %w", err)
	}
	return nil
}

// Validate checks the limits.
func (h *Handler) Validate() error {
	if h.MaxBody < 0 || h.MaxUpload < 0 {
		return fmt.Errorf("openapi_validate: max_body %d and max_upload %d must not be negative", h.MaxBody, h.MaxUpload)
	}
	for name, l := range h.Routes {
		if l.MaxBody < 0 || l.MaxUpload < 0 {
			return fmt.Errorf("openapi_validate: route %s: max_body %d and max_upload %d must not be negative", name, l.MaxBody, l.MaxUpload)
		}
	}
	return nil
}

// ServeHTTP validates r, then passes it on or refuses it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	res, err := h.validator.Validate(r.Context(), r)
	// An event on the request's span rather than a child span: it is what
	// the trace needs, at a fraction of the cost on every request.
	span := trace.SpanFromContext(r.Context())
	if err != nil {
		var f *Failure
		if !errors.As(err, &f) {
			return problem.New(http.StatusBadRequest, "invalid-request", "The request could not be validated.", err)
		}
		span.AddEvent("openapi_validate", trace.WithAttributes(
			attribute.String("openapi.operation", f.Route),
			attribute.String("gateway.validation.result", "refused"),
			attribute.String("gateway.validation.reason", f.Reason),
			attribute.Int("http.response.status_code", f.Status),
			attribute.Int("gateway.validation.violations", len(f.Violations)),
		))
		if f.Reason == ReasonInternal {
			h.logger.Error("OpenAPI validation failed internally; request refused", zap.Error(f.Cause))
		}
		return h.refuse(w, f)
	}
	if span.IsRecording() {
		span.AddEvent("openapi_validate", trace.WithAttributes(
			attribute.String("openapi.operation", res.Route),
			attribute.String("gateway.validation.result", "valid"),
		))
	}

	err = next.ServeHTTP(w, r)
	if err != nil && res.Upload != nil && res.Upload.Exceeded() {
		// The proxy failed because the upload passed its limit mid-stream:
		// that is the client's 413, not a bad gateway.
		return h.refuse(w, tooLarge(res.Route, res.Upload.Limit()))
	}
	return err
}

// refuse counts f and returns it as a problem for handle_errors to render.
func (h *Handler) refuse(w http.ResponseWriter, f *Failure) error {
	failures.WithLabelValues(f.Route, f.Reason).Inc()
	if len(f.Allow) > 0 {
		w.Header().Set("Allow", strings.Join(f.Allow, ", "))
	}
	if len(f.Violations) > 0 {
		return problem.WithExtensions(f.Status, f.Type, f.Detail, map[string]any{"errors": f.Violations}, f)
	}
	return problem.New(f.Status, f.Type, f.Detail, f)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
