// Package resilience keeps backend failures away from clients. It has three
// Caddy modules that work together, all built on failsafe-go:
//
//   - http.handlers.resilience (directive "resilience"), in front of
//     reverse_proxy, one per named route: timeouts, retries with backoff,
//     jitter, a retry budget and Retry-After, hedged reads, a bulkhead or an
//     adaptive concurrency limit, fallbacks (a secondary upstream, the last
//     good response, a static answer) and shedding in degraded mode;
//   - http.reverse_proxy.transport.resilient, wrapping Caddy's http
//     transport: a circuit breaker per upstream, per-attempt metrics and
//     client spans;
//   - http.reverse_proxy.selection_policies.resilient: load balancing that
//     steers around open breakers and upstreams that already failed the
//     request;
//
// plus admin.api.degraded, an admin endpoint to switch degraded mode.
//
// Exactly one layer retries: this handler. reverse_proxy's lb_retries only
// fail over to another upstream when the request could not be sent (dial
// errors and open breakers), so a failing backend sees at most the
// handler's max_attempts per client request. docs/resilience.md has the
// design and its reasons.
package resilience

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/lexiscore/gateway/internal/telemetry"
	"github.com/lexiscore/gateway/modules/problem"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler applies a route's resilience policies to the handlers after it
// (normally reverse_proxy). WebSocket upgrades pass through untouched, and
// a response that is not a failure streams straight to the client: only
// failure responses (5xx and retried statuses) are held back, to be retried
// or replaced.
type Handler struct {
	// Route names the route in metrics (label "route") and logs. Required;
	// keep the set of names small.
	Route string `json:"route"`

	// Timeout bounds how long the client waits for the response to begin,
	// across all attempts and the waits between them. When it passes, the
	// attempt in flight is canceled upstream and the client gets 504. A
	// response that has begun streams to its end (the server's write
	// timeout bounds that). Default: 30s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// AttemptTimeout bounds each attempt the same way; a timed-out attempt
	// is canceled upstream and retried if replay is safe. Default: none,
	// only Timeout applies.
	AttemptTimeout caddy.Duration `json:"attempt_timeout,omitempty"`

	// Retry enables retries. Default: none, one attempt per request.
	Retry *RetryConfig `json:"retry,omitempty"`

	// Bulkhead caps the route's requests in flight. Default: no cap.
	Bulkhead *BulkheadConfig `json:"bulkhead,omitempty"`

	// AdaptiveLimit caps the route's requests in flight with a limit that
	// follows latency (instead of Bulkhead). Default: no cap.
	AdaptiveLimit *AdaptiveLimitConfig `json:"adaptive_limit,omitempty"`

	// Hedge sends a second attempt of a slow idempotent read (GET, HEAD)
	// and keeps whichever answers first; the other is canceled. Default:
	// off.
	Hedge *HedgeConfig `json:"hedge,omitempty"`

	// Fallback answers a request that failed for good. Default: none, the
	// failure goes to the client.
	Fallback *FallbackConfig `json:"fallback,omitempty"`

	// ShedWhenDegraded answers the route with 503 at once while the
	// gateway is in degraded mode: heavy routes make room for the rest.
	// Default: off.
	ShedWhenDegraded bool `json:"shed_when_degraded,omitempty"`

	// MaxFailureBody is the largest failure response body (5xx, retried
	// statuses) held back, in bytes, while the handler decides whether to
	// retry or replace the response. A failure whose body grows past it is
	// dropped as soon as it does — the upstream's connection is closed — and
	// counts as a failed attempt like any other: it is retried or replaced
	// as its status says, but never passed on; if nothing else answers, the
	// client gets 502 bad-gateway. Memory for failures is at most this much
	// per attempt in flight. Default: 64 KiB, ample for an error document.
	MaxFailureBody int64 `json:"max_failure_body,omitempty"`

	// RetryAfter is the Retry-After sent with the gateway's own 503s when
	// no better value is known (full bulkhead, shed route, no healthy
	// upstream); an open breaker sends its remaining open time instead.
	// Default: 2s.
	RetryAfter caddy.Duration `json:"retry_after,omitempty"`

	// SecondaryRaw is the handler the upstream fallback sends requests to,
	// used as it is: normally a reverse_proxy whose transport is resilient
	// (and signs, as the primary's does, when the upstream verifies
	// signatures). Default: built from Fallback.Upstreams.
	SecondaryRaw json.RawMessage `json:"secondary,omitempty" caddy:"namespace=http.handlers inline_key=handler"`

	secondary    caddyhttp.MiddlewareHandler
	repeats      bool
	state        *routeState
	stateKey     string
	rules        retryRules
	staleMaxBody int
	vary         []string
	// now is the clock: time.Now, or a test's fake one, so that Retry-After
	// dates, cache ages and deadlines are exact.
	now    func() time.Time
	logger *zap.Logger

	// Executors for requests that may not be replayed, that may, and
	// that may be hedged too.
	execOnce, execReplay, execHedged failsafe.Executor[*outcome]
}

// RetryConfig configures retries. Only safe replays happen: requests with
// an idempotent method or an Idempotency-Key, whose body was kept, are
// retried after a retryable failure. Others are never resent by this
// handler; a request that could not be sent at all (connection refused,
// open breaker) is failed over by reverse_proxy's lb_retries, whatever its
// method.
type RetryConfig struct {
	// MaxAttempts counts the first attempt too. Default: 3.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Backoff is the wait before the first retry, doubled for each next
	// one. Default: 100ms.
	Backoff caddy.Duration `json:"backoff,omitempty"`
	// MaxBackoff caps the doubling. Default: 2s.
	MaxBackoff caddy.Duration `json:"max_backoff,omitempty"`
	// Jitter spreads each backoff by ± this fraction. Default: 0.5.
	Jitter float64 `json:"jitter,omitempty"`
	// Statuses are the upstream answers that are retried. Default: 502,
	// 503, 504. (A 500 is usually a bug that would fail again.)
	Statuses []int `json:"statuses,omitempty"`
	// RetryAfterCap is the longest upstream Retry-After (seconds or
	// HTTP-date) waited for; an upstream asking for longer, or for longer
	// than the request has left, gets its answer passed on. Default: 5s.
	RetryAfterCap caddy.Duration `json:"retry_after_cap,omitempty"`
	// Budget is the largest share (0..1] of the route's requests in
	// flight that may be retries or hedges at the same moment, so that a
	// struggling backend is not hit by a retry storm. Default: 0.2.
	Budget float64 `json:"budget,omitempty"`
	// BudgetMinConcurrency is how many retries may be in flight whatever
	// the share, so that a quiet route can still retry. Default: 3.
	BudgetMinConcurrency uint `json:"budget_min_concurrency,omitempty"`
	// MaxBody is the largest request body kept in memory for replay, in
	// bytes; larger requests are never retried. Default: 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`
}

// BulkheadConfig is a failsafe-go bulkhead.
type BulkheadConfig struct {
	// MaxInFlight is how many requests of the route may run at once.
	// Required.
	MaxInFlight uint `json:"max_in_flight"`
	// MaxWait is how long a request waits for a free slot before it is
	// refused with 503 and Retry-After. Default: 0, refuse at once.
	MaxWait caddy.Duration `json:"max_wait,omitempty"`
}

// AdaptiveLimitConfig is failsafe-go's adaptive concurrency limiter.
type AdaptiveLimitConfig struct {
	// Min, Max and Initial bound the limit and set its start. Defaults: 1,
	// 200, 20.
	Min     uint `json:"min,omitempty"`
	Max     uint `json:"max,omitempty"`
	Initial uint `json:"initial,omitempty"`
	// MaxWait is how long a request waits for a permit. Default: 0.
	MaxWait caddy.Duration `json:"max_wait,omitempty"`
}

// HedgeConfig configures hedged reads; set Delay or Quantile.
type HedgeConfig struct {
	// Delay is how long the first attempt runs alone.
	Delay caddy.Duration `json:"delay,omitempty"`
	// Quantile (0..1) hedges attempts slower than this quantile of recent
	// successful ones, once 20 have been seen (e.g. 0.95).
	Quantile float64 `json:"quantile,omitempty"`
	// MaxHedges is how many extra attempts may run. Default: 1.
	MaxHedges int `json:"max_hedges,omitempty"`
}

// FallbackConfig lists the fallbacks, tried in this order: a secondary
// upstream, the last good response (GET and HEAD), a static answer.
type FallbackConfig struct {
	// Upstreams are the dial addresses of a secondary upstream (e.g. a
	// replica in another zone), reached through its own resilient
	// transport with default settings. A shorthand for Handler.SecondaryRaw,
	// which the Caddyfile sets instead; use that for any other transport
	// (request signing, TLS).
	Upstreams []string `json:"upstreams,omitempty"`
	// Stale serves the last good response when the upstream fails.
	Stale *StaleConfig `json:"stale,omitempty"`
	// Static is a fixed degraded answer.
	Static *StaticConfig `json:"static,omitempty"`

	// secondary is the fallback upstream's reverse_proxy while a Caddyfile
	// is being adapted.
	secondary *reverseproxy.Handler
}

// StaleConfig is the stale-if-error cache of a route: the last 200 answer
// to each GET, served with Age and `Warning: 110 - "Response is Stale"`
// when the upstream fails or its breaker is open.
type StaleConfig struct {
	// MaxAge is the oldest response served. Default: 1h.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
	// MaxEntries bounds the cache; the least recently used entry goes
	// first. Default: 10000.
	MaxEntries int `json:"max_entries,omitempty"`
	// MaxBody is the largest response body kept, in bytes. Default:
	// 256 KiB.
	MaxBody int `json:"max_body,omitempty"`
	// Vary are the request headers that key the cache besides the URL and
	// {http.auth.user.id}, so that nobody is served a response meant for
	// other credentials. Default: Authorization, X-Api-Key, Cookie,
	// Accept, Accept-Encoding.
	Vary []string `json:"vary,omitempty"`
}

// StaticConfig is a fixed answer.
type StaticConfig struct {
	// Status of the answer. Default: 200.
	Status int `json:"status,omitempty"`
	// Body of the answer.
	Body string `json:"body,omitempty"`
	// ContentType of the answer. Default: application/json.
	ContentType string `json:"content_type,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.resilience",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, takes the route's shared state and builds the
// policies.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.now == nil {
		h.now = time.Now
	}
	h.setDefaults()
	if err := telemetry.Register(ctx.GetMetricsRegistry(), collectors()...); err != nil {
		return fmt.Errorf("resilience %s: registering metrics: %w", h.Route, err)
	}
	if err := h.provisionState(); err != nil {
		return err
	}
	if h.SecondaryRaw != nil {
		mod, err := ctx.LoadModule(h, "SecondaryRaw")
		if err != nil {
			return fmt.Errorf("resilience %s: loading fallback upstream: %w", h.Route, err)
		}
		h.secondary = mod.(caddyhttp.MiddlewareHandler)
	}
	h.buildExecutors()
	h.precreateMetrics()
	return nil
}

func (h *Handler) setDefaults() {
	if h.Timeout == 0 {
		h.Timeout = caddy.Duration(30 * time.Second)
	}
	if h.RetryAfter == 0 {
		h.RetryAfter = caddy.Duration(2 * time.Second)
	}
	if h.MaxFailureBody == 0 {
		h.MaxFailureBody = 64 << 10
	}
	h.rules = retryRules{statuses: map[int]bool{}, now: h.now, rand: rand.Float64}
	if rc := h.Retry; rc != nil {
		if rc.MaxAttempts == 0 {
			rc.MaxAttempts = 3
		}
		if rc.Backoff == 0 {
			rc.Backoff = caddy.Duration(100 * time.Millisecond)
		}
		if rc.MaxBackoff == 0 {
			rc.MaxBackoff = caddy.Duration(2 * time.Second)
		}
		if rc.Jitter == 0 {
			rc.Jitter = 0.5
		}
		if len(rc.Statuses) == 0 {
			rc.Statuses = []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
		}
		if rc.RetryAfterCap == 0 {
			rc.RetryAfterCap = caddy.Duration(5 * time.Second)
		}
		if rc.Budget == 0 {
			rc.Budget = 0.2
		}
		if rc.BudgetMinConcurrency == 0 {
			rc.BudgetMinConcurrency = 3
		}
		if rc.MaxBody == 0 {
			rc.MaxBody = 1 << 20
		}
		for _, s := range rc.Statuses {
			h.rules.statuses[s] = true
		}
		h.rules.retryAfterCap = time.Duration(rc.RetryAfterCap)
		h.rules.backoff, h.rules.maxBackoff = time.Duration(rc.Backoff), time.Duration(rc.MaxBackoff)
		h.rules.jitter = rc.Jitter
	}
	if al := h.AdaptiveLimit; al != nil {
		if al.Min == 0 {
			al.Min = 1
		}
		if al.Max == 0 {
			al.Max = 200
		}
		if al.Initial == 0 {
			al.Initial = min(max(20, al.Min), al.Max)
		}
	}
	if hc := h.Hedge; hc != nil && hc.MaxHedges == 0 {
		hc.MaxHedges = 1
	}
	if fb := h.Fallback; fb != nil {
		if st := fb.Stale; st != nil {
			if st.MaxAge == 0 {
				st.MaxAge = caddy.Duration(time.Hour)
			}
			if st.MaxEntries == 0 {
				st.MaxEntries = 10000
			}
			if st.MaxBody == 0 {
				st.MaxBody = 256 << 10
			}
			if len(st.Vary) == 0 {
				st.Vary = []string{"Authorization", "X-Api-Key", "Cookie", "Accept", "Accept-Encoding"}
			}
			h.staleMaxBody = st.MaxBody
			h.vary = st.Vary
		}
		if sc := fb.Static; sc != nil {
			if sc.Status == 0 {
				sc.Status = http.StatusOK
			}
			if sc.ContentType == "" {
				sc.ContentType = "application/json"
			}
		}
		if len(fb.Upstreams) > 0 && h.SecondaryRaw == nil {
			ups := make([]map[string]string, len(fb.Upstreams))
			for i, u := range fb.Upstreams {
				ups[i] = map[string]string{"dial": u}
			}
			h.SecondaryRaw, _ = json.Marshal(map[string]any{
				"handler":   "reverse_proxy",
				"upstreams": ups,
				"transport": map[string]any{"protocol": "resilient"},
			})
		}
	}
}

// Validate checks the configuration; errors name the bad setting.
func (h *Handler) Validate() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("resilience %s: "+format, append([]any{h.Route}, args...)...)
	}
	switch {
	case h.Route == "":
		return errors.New("resilience: a route name is required")
	case h.Timeout < 0 || h.AttemptTimeout < 0:
		return fail("timeouts must not be negative")
	case h.MaxFailureBody < 0:
		return fail("max_failure_body %d must not be negative", h.MaxFailureBody)
	case h.Bulkhead != nil && h.AdaptiveLimit != nil:
		return fail("use bulkhead or adaptive_limit, not both")
	case h.Bulkhead != nil && h.Bulkhead.MaxInFlight == 0:
		return fail("bulkhead max_in_flight must be at least 1")
	case h.AdaptiveLimit != nil && (h.AdaptiveLimit.Min > h.AdaptiveLimit.Max ||
		h.AdaptiveLimit.Initial < h.AdaptiveLimit.Min || h.AdaptiveLimit.Initial > h.AdaptiveLimit.Max):
		return fail("adaptive_limit needs min <= initial <= max, got %d, %d, %d",
			h.AdaptiveLimit.Min, h.AdaptiveLimit.Initial, h.AdaptiveLimit.Max)
	case h.Hedge != nil && (h.Hedge.Quantile < 0 || h.Hedge.Quantile >= 1):
		return fail("hedge quantile %v must be in (0, 1)", h.Hedge.Quantile)
	case h.Hedge != nil && h.Hedge.MaxHedges < 0:
		return fail("hedge max_hedges %d must not be negative", h.Hedge.MaxHedges)
	}
	if rc := h.Retry; rc != nil {
		switch {
		case rc.MaxAttempts < 1:
			return fail("retry max_attempts %d must be at least 1", rc.MaxAttempts)
		case rc.Budget <= 0 || rc.Budget > 1:
			return fail("retry budget %v must be in (0, 1]", rc.Budget)
		case rc.Jitter < 0 || rc.Jitter > 1:
			return fail("retry jitter %v must be in [0, 1]", rc.Jitter)
		case rc.MaxBody < 0:
			return fail("retry max_body %d must not be negative", rc.MaxBody)
		}
		for _, s := range rc.Statuses {
			if s < 400 || s > 599 {
				return fail("retry status %d is not an error status", s)
			}
		}
	}
	if fb := h.Fallback; fb != nil && fb.Static != nil && (fb.Static.Status < 100 || fb.Static.Status > 599) {
		return fail("fallback static status %d is not an HTTP status", fb.Static.Status)
	}
	return nil
}

// provisionState takes the route's limiter, budget and cache from the
// pool, where they outlive config reloads that keep the route's settings.
func (h *Handler) provisionState() error {
	cfg, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("resilience %s: %w", h.Route, err)
	}
	h.stateKey = h.Route + "|" + string(cfg)
	route := h.Route
	v, _, err := routePool.LoadOrNew(h.stateKey, func() (caddy.Destructor, error) {
		rs := &routeState{name: route}
		switch {
		case h.Bulkhead != nil:
			rs.lim = newBulkheadLimiter(h.Bulkhead.MaxInFlight, time.Duration(h.Bulkhead.MaxWait))
		case h.AdaptiveLimit != nil:
			al := h.AdaptiveLimit
			rs.lim = newAdaptiveLimiter(al.Min, al.Max, al.Initial, time.Duration(al.MaxWait))
		}
		if rc := h.Retry; rc != nil {
			rs.budget = budget.NewBuilder().
				WithMaxRate(rc.Budget).
				WithMinConcurrency(rc.BudgetMinConcurrency).
				OnBudgetExceeded(func(budget.ExceededEvent) {
					retryBudgetExhausted.WithLabelValues(route).Inc()
				}).
				Build()
		}
		if fb := h.Fallback; fb != nil && fb.Stale != nil {
			rs.cache = newStaleCache(fb.Stale.MaxEntries, time.Duration(fb.Stale.MaxAge), h.now)
		}
		routes.add(rs)
		return rs, nil
	})
	if err != nil {
		return fmt.Errorf("resilience %s: %w", h.Route, err)
	}
	h.state = v.(*routeState)
	return nil
}

// buildExecutors composes the failsafe-go policies: retries around
// hedging. Timeouts are not policies but contexts that a response which
// has begun escapes (see exchange.attempt).
func (h *Handler) buildExecutors() {
	h.execOnce = failsafe.With[*outcome]()
	h.execReplay = h.execOnce
	var policies []failsafe.Policy[*outcome]
	if h.Retry != nil && h.Retry.MaxAttempts > 1 {
		policies = append(policies, h.retryPolicy())
		h.execReplay = failsafe.With(policies...)
	}
	h.execHedged = h.execReplay
	if hp := h.hedgePolicy(); hp != nil {
		h.execHedged = failsafe.With(append(policies, hp)...)
	}
	// Bodies are kept whenever a request may be sent again: retries,
	// hedges, the secondary upstream, and failover (see Transport).
	h.repeats = h.Retry != nil || h.execHedged != h.execReplay || h.secondary != nil
}

func (h *Handler) retryPolicy() failsafe.Policy[*outcome] {
	route := h.Route
	b := retrypolicy.NewBuilder[*outcome]().
		HandleIf(func(o *outcome, _ error) bool { return h.rules.retryable(o) }).
		WithMaxAttempts(h.Retry.MaxAttempts).
		WithDelayFunc(func(e failsafe.ExecutionAttempt[*outcome]) time.Duration {
			return h.rules.delay(e.LastResult(), e.Retries())
		}).
		ReturnLastFailure().
		OnRetry(func(e failsafe.ExecutionEvent[*outcome]) {
			reason := kindTimeout.reason()
			if o := e.LastResult(); o != nil {
				reason = o.kind.reason()
			}
			retries.WithLabelValues(route, reason).Inc()
		})
	if h.state.budget != nil {
		b = b.WithBudget(h.state.budget)
	}
	return b.Build()
}

func (h *Handler) hedgePolicy() failsafe.Policy[*outcome] {
	hc := h.Hedge
	if hc == nil || (hc.Delay <= 0 && hc.Quantile == 0) || hc.MaxHedges == 0 {
		return nil
	}
	var b hedgepolicy.Builder[*outcome]
	if hc.Quantile > 0 {
		b = hedgepolicy.NewBuilderWithDelayQuantile[*outcome](hc.Quantile, 100, 20)
	} else {
		b = hedgepolicy.NewBuilderWithDelay[*outcome](time.Duration(hc.Delay))
	}
	route := h.Route
	b = b.WithMaxHedges(hc.MaxHedges).
		// A failed attempt does not stop the others: any of them may
		// still answer well.
		CancelIf(func(o *outcome, _ error) bool { return o != nil && o.kind == kindCommitted }).
		OnHedge(func(failsafe.ExecutionEvent[*outcome]) { retries.WithLabelValues(route, "hedge").Inc() })
	if h.state.budget != nil {
		b = b.WithBudget(h.state.budget)
	}
	return b.Build()
}

// ServeHTTP runs the request through the route's policies.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if isUpgrade(r) {
		return next.ServeHTTP(w, r)
	}
	if h.ShedWhenDegraded && degraded.active() {
		concurrencyRejections.WithLabelValues(h.Route, "degraded").Inc()
		return unavailable(w, "degraded", "The service is in degraded mode and does not take this request now; retry later.",
			time.Duration(h.RetryAfter), errors.New("route shed in degraded mode"))
	}
	release := func(bool) {}
	if lim := h.state.lim; lim != nil {
		var err error
		if release, err = lim.acquire(r.Context()); err != nil {
			return h.rejected(w, r, err)
		}
	}

	x := &exchange{h: h, w: w, r: r, header: w.Header().Clone()}
	kept, err := h.keepBody(x)
	if err != nil {
		release(false)
		return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("reading request body: %w", err))
	}
	exec := h.execOnce
	if replayable(r.Method, r.Header, kept) {
		exec = h.execReplay
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			exec = h.execHedged
			x.hedged = exec != h.execReplay
		}
	}
	if h.state.cache != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		x.cached, x.cacheKey = true, h.cacheKey(r)
	}

	ctx, done := x.withTimeout(time.Duration(h.Timeout))
	defer done()
	o, _ := exec.WithContext(ctx).GetWithExecution(func(e failsafe.Execution[*outcome]) (*outcome, error) {
		return x.attempt(e, next)
	})
	x.wg.Wait()
	telemetry.LogFields(r, x.logFields()...)
	if win := x.committed(); win != nil {
		release(win.err == nil)
		return h.delivered(x, win)
	}
	defer release(false)
	if o == nil {
		// The retries ended early: request timeout, or budget exhausted.
		o = x.lastOutcome()
	}
	return h.failed(x, o, errors.Is(context.Cause(ctx), errRouteTimeout))
}

// Cleanup releases the route's shared state.
func (h *Handler) Cleanup() error {
	if h.stateKey == "" {
		return nil
	}
	_, err := routePool.Delete(h.stateKey)
	return err
}

// isUpgrade reports a protocol upgrade (WebSocket), which must reach the
// proxy untouched: no timeouts, no recorder, no retries.
func isUpgrade(r *http.Request) bool {
	return r.Method == http.MethodConnect ||
		(r.Header.Get("Upgrade") != "" && httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade"))
}

// rejected answers a request refused by the route's limiter.
func (h *Handler) rejected(w http.ResponseWriter, r *http.Request, err error) error {
	if r.Context().Err() != nil {
		// The client left while queued: nobody to answer.
		return caddyhttp.Error(499, err)
	}
	reason := "bulkhead"
	if errors.Is(err, adaptivelimiter.ErrExceeded) {
		reason = "limit"
	} else if !errors.Is(err, bulkhead.ErrFull) {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("concurrency limiter: %w", err))
	}
	concurrencyRejections.WithLabelValues(h.Route, reason).Inc()
	return unavailable(w, "overloaded", "Too many requests of this kind are in progress; retry after the indicated delay.",
		time.Duration(h.RetryAfter), fmt.Errorf("route %s: %w", h.Route, err))
}

// unavailable answers 503 with Retry-After, in the header and, as for
// rate-limited requests, in the problem document.
func unavailable(w http.ResponseWriter, typ, detail string, wait time.Duration, cause error) error {
	v := retryAfterValue(wait)
	w.Header().Set("Retry-After", v)
	secs, _ := strconv.Atoi(v)
	return problem.WithExtensions(http.StatusServiceUnavailable, typ, detail, map[string]any{"retry_after": secs}, cause)
}

// keepBody reads the request body into memory, up to the retry limit, so
// that it can be sent again; kept is false when it could not be.
func (h *Handler) keepBody(x *exchange) (kept bool, err error) {
	r := x.r
	if !h.repeats {
		return false, nil
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return true, nil
	}
	limit := int64(1 << 20)
	if h.Retry != nil {
		limit = h.Retry.MaxBody
	}
	if r.ContentLength > limit {
		return false, nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return false, err
	}
	x.hasBody, x.body = true, buf
	if int64(len(buf)) > limit {
		x.rest = r.Body
		return false, nil
	}
	return true, nil
}

// cacheSeed keys the stale cache's hash: random per process, so that
// nobody can craft a request whose key collides with another's.
var cacheSeed = maphash.MakeSeed()

// cacheKey identifies a GET's response in the stale cache: the route, the
// URL, the authenticated user and the Vary headers.
func (h *Handler) cacheKey(r *http.Request) uint64 {
	var sum maphash.Hash
	sum.SetSeed(cacheSeed)
	field := func(s string) {
		_, _ = sum.WriteString(s)
		_ = sum.WriteByte(0)
	}
	field(h.Route)
	field(r.URL.RequestURI())
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		field(repl.ReplaceKnown("{http.auth.user.id}", ""))
	}
	for _, name := range h.vary {
		for _, v := range r.Header.Values(name) {
			field(v)
		}
		_ = sum.WriteByte(1)
	}
	return sum.Sum64()
}

// delivered finishes a request whose response was committed to the client.
func (h *Handler) delivered(x *exchange, win *attemptRun) error {
	if win.aborted {
		// The response began and cannot be finished: abort it as the proxy
		// would have, so that the client sees it cut rather than complete.
		panic(http.ErrAbortHandler)
	}
	if c := win.aw.capture; c != nil && win.err == nil {
		h.state.cache.put(x.cacheKey, http.StatusOK, win.aw.header, c.Bytes())
	}
	return win.err
}

// failed answers a request none of whose attempts succeeded: with a
// fallback if one applies, else with the last failure.
func (h *Handler) failed(x *exchange, o *outcome, timedOut bool) error {
	switch {
	case o == nil && !timedOut:
		return caddyhttp.Error(http.StatusBadGateway, errNoResponse)
	case o != nil && o.kind == kindCanceled && !timedOut:
		return o.err
	}
	if handled, err := h.fallback(x, o); handled {
		return err
	}
	w := x.w
	switch {
	case timedOut || o.kind == kindTimeout:
		var cause error = errRouteTimeout
		if o != nil && o.err != nil {
			cause = detach(o.err)
		}
		return problem.New(http.StatusGatewayTimeout, "upstream-timeout",
			"The scoring service did not answer in time.", fmt.Errorf("route %s: %w", h.Route, cause))
	case o.kind == kindStatus && o.run.aw.tooLarge:
		return problem.New(http.StatusBadGateway, "bad-gateway",
			"The scoring service answered with an error the gateway could not pass on.", fmt.Errorf("route %s: %w", h.Route, o.err))
	case o.kind == kindStatus:
		return o.run.aw.passOn()
	case o.kind == kindOpen:
		return unavailable(w, "circuit-open", "The scoring service is temporarily unavailable; retry after the indicated delay.",
			o.openWait, detach(o.err))
	case o.kind == kindNoUpstream:
		return unavailable(w, "upstream-unavailable", "The scoring service is temporarily unavailable; retry after the indicated delay.",
			time.Duration(h.RetryAfter), detach(o.err))
	default:
		return o.err
	}
}

// detach strips the HandlerErrors reverse_proxy wraps its errors in, so
// that a problem caused by one keeps its own status: caddyhttp.Error adopts
// the status of a HandlerError it finds in the cause.
func detach(err error) error {
	var he caddyhttp.HandlerError
	for errors.As(err, &he) {
		if he.Err == nil {
			return errors.New(he.Error())
		}
		err = he.Err
	}
	return err
}

// servedFallback records that a fallback of kind answered the request: a
// metric, an event on the request's span, and a field of its access log line.
func (h *Handler) servedFallback(x *exchange, kind string) {
	fallbacks.WithLabelValues(h.Route, kind).Inc()
	trace.SpanFromContext(x.r.Context()).AddEvent("fallback",
		trace.WithAttributes(attribute.String("gateway.fallback.kind", kind)))
	telemetry.LogFields(x.r, zap.String("fallback", kind))
}

// fallback tries the route's fallbacks for a failed request: the secondary
// upstream, then the stale cache, then the static answer. handled is
// false when none answered.
func (h *Handler) fallback(x *exchange, o *outcome) (handled bool, err error) {
	fb := h.Fallback
	if fb == nil || (o != nil && o.kind == kindStatus && o.status < 500) {
		return false, nil
	}
	// The secondary upstream needs the body again and time left to answer.
	if left := x.deadline.Sub(h.now()); h.secondary != nil && x.rest == nil && left > 0 {
		ctx, done := x.withTimeout(left)
		defer done()
		next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
		_, _ = h.execOnce.WithContext(ctx).GetWithExecution(func(e failsafe.Execution[*outcome]) (*outcome, error) {
			return x.attempt(e, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				return h.secondary.ServeHTTP(w, r, next)
			}))
		})
		if win := x.committed(); win != nil {
			h.servedFallback(x, "upstream")
			return true, h.delivered(x, win)
		}
	}
	if x.cached {
		if res, age, ok := h.state.cache.get(x.cacheKey); ok {
			h.servedFallback(x, "stale")
			hdr := x.w.Header()
			for k, v := range res.header {
				hdr[k] = v
			}
			hdr.Set("Age", strconv.FormatInt(int64(age/time.Second), 10))
			hdr.Add("Warning", `110 - "Response is Stale"`)
			x.w.WriteHeader(res.status)
			_, err := x.w.Write(res.body)
			return true, err
		}
	}
	if sc := fb.Static; sc != nil {
		h.servedFallback(x, "static")
		x.w.Header().Set("Content-Type", sc.ContentType)
		x.w.WriteHeader(sc.Status)
		_, err := io.WriteString(x.w, sc.Body)
		return true, err
	}
	return false, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
