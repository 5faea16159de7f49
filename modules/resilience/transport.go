package resilience

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/lexiscore/gateway/internal/proxytransport"
	"github.com/lexiscore/gateway/internal/telemetry"
)

func init() {
	caddy.RegisterModule(Transport{})
}

// tracerName names the instrumentation scope of this package's spans.
const tracerName = "github.com/lexiscore/gateway/modules/resilience"

// Transport is a reverse_proxy transport that wraps another one (by default
// Caddy's http transport) with a circuit breaker per upstream, per-attempt
// metrics and a client span per attempt.
//
// An attempt refused by an open breaker fails as a dial error, so Caddy's
// load balancer moves on to another upstream when lb_retries allows it; the
// resilience handler turns "every upstream open" into a fast 503 with
// Retry-After. Active health checks pass through untouched: they neither
// count towards nor are blocked by the breakers (docs/resilience.md).
type Transport struct {
	proxytransport.Wrapper

	// Breaker configures the circuit breaker each upstream gets.
	Breaker BreakerConfig `json:"breaker,omitempty"`
	// DegradeWhenAllOpen switches the gateway's degraded mode on while the
	// breakers of every upstream this transport has used are open.
	// Default: off.
	DegradeWhenAllOpen bool `json:"degrade_when_all_open,omitempty"`

	breakers *breakerSet
	logger   *zap.Logger
}

// OpenError is the error of an attempt refused by an open circuit breaker.
type OpenError struct {
	// Upstream is the dial address whose breaker is open.
	Upstream string
	// RetryAfter is how long the breaker stays open.
	RetryAfter time.Duration
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("circuit breaker of upstream %s is open for %s", e.Upstream, e.RetryAfter)
}

// CaddyModule returns the Caddy module information.
func (Transport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.resilient",
		New: func() caddy.Module { return new(Transport) },
	}
}

// Provision loads the wrapped transport and registers the metrics.
func (t *Transport) Provision(ctx caddy.Context) error {
	t.logger = ctx.Logger()
	t.Breaker.setDefaults()
	if err := t.ProvisionInner(ctx); err != nil {
		return fmt.Errorf("transport resilient: %w", err)
	}
	if err := telemetry.Register(ctx.GetMetricsRegistry(), collectors()...); err != nil {
		return fmt.Errorf("transport resilient: registering metrics: %w", err)
	}
	var err error
	if t.breakers, err = newBreakerSet(t.Breaker, t.logger); err != nil {
		return fmt.Errorf("transport resilient: %w", err)
	}
	if t.DegradeWhenAllOpen {
		degraded.watch(t.breakers)
	}
	return nil
}

// Validate checks the breaker settings.
func (t *Transport) Validate() error {
	if err := t.Breaker.validate(); err != nil {
		return fmt.Errorf("transport resilient: %w", err)
	}
	return nil
}

// RoundTrip sends one attempt through the upstream's breaker.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	di, ok := reverseproxy.GetDialInfo(ctx)
	// Active health checks must see the upstream as it is, and the health
	// endpoint is not the API whose failures the breaker tracks.
	if !ok || isHealthCheck(ctx) {
		return t.Inner.RoundTrip(req)
	}
	upstream := di.Address
	if di.Upstream != nil {
		upstream = di.Upstream.Dial
	}
	b, err := t.breakers.get(upstream)
	if err != nil {
		return nil, err
	}
	info := infoFrom(ctx)
	info.noteUpstream(upstream, b.cb.State().String())

	ctx, span := telemetry.Tracer(ctx, tracerName).Start(ctx, req.Method,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("server.address", di.Host),
			attribute.String("http.request.method", req.Method),
			attribute.String("gateway.upstream", upstream),
			attribute.String("gateway.circuit_breaker.state", b.cb.State().String()),
		))
	defer span.End()
	if port, err := strconv.Atoi(di.Port); err == nil {
		span.SetAttributes(attribute.Int("server.port", port))
	}
	if n := info.attempt(); n > 0 {
		span.SetAttributes(attribute.Int("http.request.resend_count", n))
	}

	if !b.cb.TryAcquirePermit() {
		wait := b.cb.RemainingDelay()
		b.requests["open"].Inc()
		info.noteOpen(upstream, wait)
		span.SetAttributes(attribute.String("error.type", "circuit_breaker_open"))
		span.SetStatus(codes.Error, "circuit breaker open")
		return nil, reverseproxy.NewDialError(&OpenError{Upstream: upstream, RetryAfter: wait})
	}
	info.noteSent()
	if body := info.body(); body != nil {
		// Every try gets the whole body: a wrapped transport (request
		// signing) may have consumed it on a try that then failed to dial,
		// and Caddy's failover would resend what is left of it.
		r2 := *req
		r2.Body = io.NopCloser(bytes.NewReader(body))
		r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req = &r2
	}
	if span.IsRecording() {
		// The upstream's spans become children of this attempt's span. The
		// header map is copied, not its values: Inject replaces one entry.
		req = req.WithContext(ctx)
		req.Header = maps.Clone(req.Header)
		propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	}

	start := time.Now()
	resp, err := t.Inner.RoundTrip(req)
	telemetry.Observe(ctx, b.duration, time.Since(start).Seconds())

	class := t.record(ctx, b, info, upstream, resp, err)
	b.requests[class].Inc()
	switch {
	case err != nil:
		span.RecordError(err)
		span.SetAttributes(attribute.String("error.type", class))
		span.SetStatus(codes.Error, class)
	case resp.StatusCode >= 500:
		span.SetAttributes(
			attribute.Int("http.response.status_code", resp.StatusCode),
			attribute.String("error.type", strconv.Itoa(resp.StatusCode)))
		span.SetStatus(codes.Error, "")
	default:
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	}
	return resp, err
}

// isHealthCheck tells reverse_proxy's active health checks from proxied
// requests. Caddy's server gives every request it serves a vars map
// (caddyhttp.PrepareRequest; handlers such as vars and map depend on it),
// while the checker builds its requests from the handler's provisioning
// context, which has none. The server key is no test: that context carries
// it. Nothing a client sends can set a context value.
func isHealthCheck(ctx context.Context) bool {
	return ctx.Value(caddyhttp.VarsCtxKey) == nil
}

// record gives the breaker its verdict on an attempt and returns the
// code_class label. Connection errors, timeouts and 5xx are failures. An
// attempt cut short because the client left or a hedge won says nothing
// about the upstream, so it is not counted — except that a half-open
// breaker must get its probe permit back, and an unfinished probe is no
// evidence of recovery.
func (t *Transport) record(ctx context.Context, b *breaker, info *attemptInfo, upstream string, resp *http.Response, err error) string {
	var ne net.Error
	canceled := ctx.Err() != nil
	switch {
	case err == nil && resp.StatusCode >= 500:
		b.cb.RecordFailure()
		info.noteFailed(upstream)
		return codeClass(resp.StatusCode)
	case err == nil:
		b.cb.RecordSuccess()
		return codeClass(resp.StatusCode)
	case canceled && timedOut(ctx):
		b.cb.RecordFailure()
		info.noteFailed(upstream)
		return "timeout"
	case canceled:
		if b.cb.IsHalfOpen() {
			b.cb.RecordFailure()
		}
		return "canceled"
	case errors.As(err, &ne) && ne.Timeout():
		b.cb.RecordFailure()
		info.noteFailed(upstream)
		return "timeout"
	default:
		b.cb.RecordFailure()
		info.noteFailed(upstream)
		return "error"
	}
}

// Cleanup releases this transport's breakers; the wrapped transport is
// cleaned up by Caddy, which loaded it.
func (t *Transport) Cleanup() error {
	if t.breakers == nil {
		return nil
	}
	degraded.unwatch(t.breakers)
	return t.breakers.release()
}

// Interface guards
var (
	_ caddy.Provisioner  = (*Transport)(nil)
	_ caddy.Validator    = (*Transport)(nil)
	_ caddy.CleanerUpper = (*Transport)(nil)
	_ http.RoundTripper  = (*Transport)(nil)
)
