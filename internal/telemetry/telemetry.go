// Package telemetry holds what every gateway module needs to emit metrics and
// traces the same way: access log fields set from any module, collectors registered the Caddy 2.11 way (package-level
// collectors registered into each config load's registry), histogram
// observations that carry the trace ID as an exemplar, and child spans taken
// from the tracer of the server span that Caddy's tracing handler opened.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/lexiscore/gateway/internal/buildinfo"
)

// Register adds collectors to reg, and gateway_build_info, so that every
// config load exposing gateway metrics says which build runs. The same
// collector already registered there (the same config loaded twice, or two
// modules) is not an error: package-level collectors keep their values
// across reloads, each load re-registering them. Another collector of the
// same name is: two modules claiming one metric name would otherwise leave
// one of them silently unexported.
func Register(reg prometheus.Registerer, collectors ...prometheus.Collector) error {
	for _, c := range append([]prometheus.Collector{buildinfo.Gauge}, collectors...) {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) && sameCollector(are.ExistingCollector, c) {
				continue
			}
			return fmt.Errorf("registering a collector: %w", err)
		}
	}
	return nil
}

// sameCollector reports whether a and b are one collector; a collector type
// that is not comparable is never the same as another value.
func sameCollector(a, b prometheus.Collector) bool {
	return reflect.TypeOf(a) == reflect.TypeOf(b) && reflect.TypeOf(a).Comparable() && a == b
}

// Observe records v in h, with the trace ID of ctx's span as an exemplar when
// that span is sampled, so a latency spike on a dashboard links to a trace.
func Observe(ctx context.Context, h prometheus.Observer, v float64) {
	sc := trace.SpanContextFromContext(ctx)
	if eo, ok := h.(prometheus.ExemplarObserver); ok && sc.IsSampled() {
		eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": sc.TraceID().String()})
		return
	}
	h.Observe(v)
}

// Tracer returns a tracer from the provider of the span in ctx. Caddy's
// tracing handler never sets the global provider, so modules take it from the
// server span; without one, the tracer is a no-op.
func Tracer(ctx context.Context, name string) trace.Tracer {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer(name)
}

// LogFields adds fields to the access log line of r's request (Caddy's
// ExtraLogFields), replacing earlier values of the same keys. It is not safe
// for concurrent use on one request: call it from the request's goroutine.
func LogFields(r *http.Request, fields ...zap.Field) {
	extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields)
	if !ok {
		return
	}
	for _, f := range fields {
		extra.Set(f)
	}
}
