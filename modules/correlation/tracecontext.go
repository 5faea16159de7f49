package correlation

import (
	"fmt"
	"net/http"
	"os"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/tracing"
	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(TraceContext{})
}

// serverSpan is built once: an option is an allocation.
var serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}

// unexported makes the spans of requests whose traces go nowhere: never
// sampled, never recorded, but with real IDs (the client's trace ID, or a
// new one) for logs and upstreams.
var unexported = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())).
	Tracer("github.com/lexiscore/gateway/modules/correlation")

// TraceContext is Caddy's `tracing` handler (same options, same server span
// when spans are exported) that does no span work when none are: with
// OTEL_TRACES_EXPORTER=none, which the gateway sets when no exporter or
// endpoint is configured, it skips otelhttp (attributes, response wrapper,
// metrics, span names) and only carries the W3C trace context: the client's
// trace continued (or a new one started), `traceID`/`spanID` in the access
// log, {http.vars.trace_id}/{http.vars.span_id}, `traceparent` sent upstream,
// and a non-recording span in the request context for the modules' child
// spans to inherit.
type TraceContext struct {
	tracing.Tracing

	// propagators is set when no spans are exported, and then replaces
	// the embedded Caddy handler.
	propagators propagation.TextMapPropagator
}

// CaddyModule returns the Caddy module information.
func (TraceContext) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.trace_context",
		New: func() caddy.Module { return new(TraceContext) },
	}
}

// Provision chooses between Caddy's tracing handler and the context alone.
func (t *TraceContext) Provision(ctx caddy.Context) error {
	if os.Getenv("OTEL_TRACES_EXPORTER") == "none" {
		// The propagators Caddy's handler uses (OTEL_PROPAGATORS, by
		// default W3C trace context and baggage).
		t.propagators = autoprop.NewTextMapPropagator()
		return nil
	}
	if err := t.Tracing.Provision(ctx); err != nil {
		return fmt.Errorf("trace_context: %w", err)
	}
	return nil
}

// Cleanup releases Caddy's handler's tracer provider, when it has one.
func (t *TraceContext) Cleanup() error {
	if t.propagators != nil {
		return nil
	}
	return t.Tracing.Cleanup()
}

// ServeHTTP continues or starts the request's trace.
func (t *TraceContext) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if t.propagators == nil {
		return t.Tracing.ServeHTTP(w, r, next)
	}
	ctx := t.propagators.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := unexported.Start(ctx, "", serverSpan...)
	t.propagators.Inject(ctx, propagation.HeaderCarrier(r.Header))
	sc := span.SpanContext()
	traceID, spanID := sc.TraceID().String(), sc.SpanID().String()
	caddyhttp.SetVar(ctx, "trace_id", traceID)
	caddyhttp.SetVar(ctx, "span_id", spanID)
	if extra, ok := ctx.Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		extra.Add(zap.String("traceID", traceID))
		extra.Add(zap.String("spanID", spanID))
	}
	return next.ServeHTTP(w, r.WithContext(ctx))
}

// Interface guards
var (
	_ caddy.Provisioner           = (*TraceContext)(nil)
	_ caddy.CleanerUpper          = (*TraceContext)(nil)
	_ caddyhttp.MiddlewareHandler = (*TraceContext)(nil)
	_ caddyfile.Unmarshaler       = (*TraceContext)(nil)
)
