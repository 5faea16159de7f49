// Package ratelimit limits request rates per user (or per client address on
// anonymous routes) with several named policies, per-tier quotas and a
// memory or Redis store shared by every gateway instance, on
// github.com/ulule/limiter. Every response carries the IETF RateLimit fields
// and the common X-RateLimit ones; a refusal is a 429 problem with
// Retry-After. A slow or unreachable store costs at most a short timeout and,
// once its circuit breaker opens, nothing; each handler then fails open (an
// in-process emergency limit) or closed (503). See docs/ratelimiting.md.
package ratelimit

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/ulule/limiter/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/lexiscore/gateway/internal/telemetry"
	"github.com/lexiscore/gateway/modules/problem"
)

func init() {
	caddy.RegisterModule(RateLimit{})
}

// Handler defaults and on_store_error values.
const (
	DefaultKey     = "{http.auth.user.id}"
	DefaultTier    = "{http.auth.user.tier}"
	DefaultTimeout = 50 * time.Millisecond
	FailOpen       = "fail_open"
	FailClosed     = "fail_closed"
	// DefaultLogDenied is LogDenied's default; LogDeniedOff logs every refusal.
	DefaultLogDenied = "10/s"
	LogDeniedOff     = "off"
)

// ExceededPlaceholder names the policy that refused a request.
const ExceededPlaceholder = "http.rate_limit.exceeded.name"

const tracerName = "github.com/lexiscore/gateway/modules/ratelimit"

// spanOptions are built once: an option is an allocation.
var spanOptions = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}

// RateLimit counts each request against every policy and refuses it with
// 429 when one is over its limit.
type RateLimit struct {
	// Key is the template of the identity requests are counted by; any
	// placeholders, e.g. "{http.auth.user.tenant}". A request has no
	// identity when any placeholder in it is unknown or empty. Default:
	// {http.auth.user.id}, the authenticated user.
	Key string `json:"key,omitempty"`
	// Anonymous says what to do with requests without an identity: "deny"
	// (403: the route is meant for authenticated users), "fallback" (count
	// them by client address), or "always" (an anonymous route: count every
	// request by client address, ignoring Key). Client addresses come from
	// Caddy's trusted_proxies handling, never the raw X-Forwarded-For; IPv6
	// clients are counted per /64. Default: deny.
	Anonymous string `json:"anonymous,omitempty"`
	// Tier is the template of the user's tier, which selects per-tier
	// limits; an unknown tier gets the policy's default rate. Default:
	// {http.auth.user.tier}.
	Tier string `json:"tier,omitempty"`
	// Policies are all checked for every request; it passes only if none
	// is over its limit. At least one is required.
	Policies []PolicyConfig `json:"policies,omitempty"`
	// Store holds the counters. Default: the in-process memory store.
	Store *StoreConfig `json:"store,omitempty"`
	// Timeout bounds each call to Redis; a call that takes longer counts as
	// a store failure. Longer tolerates a slower Redis, but every request
	// may wait that long while Redis hangs and the breaker is still closed.
	// Default: 50ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// OnStoreError is what happens when the store fails, times out, or its
	// breaker is open: "fail_open" lets the Emergency rate, counted in this
	// process, decide; "fail_closed" refuses with 503 and Retry-After.
	// Default: fail_open.
	OnStoreError string `json:"on_store_error,omitempty"`
	// Emergency is the rate per identity enforced in this process while the
	// store is unavailable and the handler fails open, e.g. "10/s". With N
	// gateway instances a client may get up to N times this. Default: the
	// first policy's default rate.
	Emergency string `json:"emergency,omitempty"`
	// LogDenied is how many refused requests per window this handler lets
	// into the access log, e.g. "10/s"; the others are not logged, so a
	// flood of refused requests cannot flood the logs. Every refusal is
	// still counted in gateway_ratelimit_decisions_total, and those not
	// logged in gateway_ratelimit_denials_unlogged_total. "off" logs them
	// all. Default: 10/s.
	LogDenied string `json:"log_denied,omitempty"`

	limiter   *Limiter
	logLimit  limiter.Store
	logRate   limiter.Rate
	logKey    string
	storeName string
	held      []string
}

// PolicyConfig is one named limit.
type PolicyConfig struct {
	// Name appears in the RateLimit headers, the metrics' policy label and
	// the store keys: 1-64 of [a-z0-9_.-]. Policies with the same name share
	// counters, across handlers too; give each budget its own name.
	Name string `json:"name"`
	// Rate is "<limit>/<window>", e.g. "10/s", "100/m", "5/10s"; the
	// window is whole seconds. It applies to tiers not in Tiers.
	Rate string `json:"rate"`
	// Tiers maps a tier to its limit over the same window, e.g. {"pro": 50}.
	Tiers map[string]int64 `json:"tiers,omitempty"`
	// CountStatuses makes the policy count only the requests that the rest
	// of the route refuses with one of these statuses, e.g. [401]: a limit
	// on failed authentications, checked before authentication runs, so a
	// client at its limit is refused without costing a verification.
	// Default: every request counts.
	CountStatuses []int `json:"count_statuses,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (RateLimit) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.rate_limit",
		New: func() caddy.Module { return new(RateLimit) },
	}
}

// Provision sets defaults, reads the policies and takes the stores from the
// pool. It never contacts Redis.
func (h *RateLimit) Provision(ctx caddy.Context) error {
	if err := telemetry.Register(ctx.GetMetricsRegistry(), collectors()...); err != nil {
		return fmt.Errorf("rate_limit: registering metrics: %w", err)
	}
	h.Key = cmp.Or(h.Key, DefaultKey)
	h.Anonymous = cmp.Or(h.Anonymous, AnonymousDeny)
	h.Tier = cmp.Or(h.Tier, DefaultTier)
	h.Timeout = cmp.Or(h.Timeout, caddy.Duration(DefaultTimeout))
	h.OnStoreError = cmp.Or(h.OnStoreError, FailOpen)
	h.LogDenied = cmp.Or(h.LogDenied, DefaultLogDenied)

	policies, err := h.policies()
	if err != nil {
		return err
	}
	emergency := policies[0].Rate
	if h.Emergency != "" {
		if emergency, err = ParseRate(h.Emergency); err != nil {
			return fmt.Errorf("rate_limit: emergency: %w", err)
		}
	}
	var logRate Rate
	if h.LogDenied != LogDeniedOff {
		if logRate, err = ParseRate(h.LogDenied); err != nil {
			return fmt.Errorf("rate_limit: log_denied: %w", err)
		}
	}
	spec, err := h.Store.resolve(caddy.NewReplacer())
	if err != nil {
		return fmt.Errorf("rate_limit: %w", err)
	}
	store, err := h.acquire(spec)
	if err != nil {
		return err
	}
	local, err := h.acquire(storeSpec{key: memoryKey})
	if err != nil {
		return err
	}
	if h.LogDenied != LogDeniedOff {
		// Counted in this process: a log line is written by this process.
		h.logLimit, h.logRate = local.Backend, logRate.limiterRate()
		h.logKey = "log_denied:" + logRate.String() + ":" + policies[0].Name
	}
	h.storeName = store.Name
	h.limiter = New(Config{
		Policies:  policies,
		Store:     store,
		Timeout:   time.Duration(h.Timeout),
		FailOpen:  h.OnStoreError == FailOpen,
		Emergency: emergency,
		Local:     local.Backend,
	})
	return nil
}

// Validate checks the settings Provision does not read.
func (h *RateLimit) Validate() error {
	switch h.Anonymous {
	case AnonymousDeny, AnonymousFallback, AnonymousAlways:
	default:
		return fmt.Errorf("rate_limit: anonymous %q: want deny, fallback or always", h.Anonymous)
	}
	switch h.OnStoreError {
	case FailOpen:
	case FailClosed:
		if h.Emergency != "" {
			return fmt.Errorf("rate_limit: emergency %q applies only with on_store_error fail_open", h.Emergency)
		}
	default:
		return fmt.Errorf("rate_limit: on_store_error %q: want fail_open or fail_closed", h.OnStoreError)
	}
	if h.Timeout <= 0 {
		return fmt.Errorf("rate_limit: timeout %s: must be positive", time.Duration(h.Timeout))
	}
	if s := h.Store; s != nil && (s.BreakerFailures < 0 || s.BreakerDelay < 0) {
		return fmt.Errorf("rate_limit: store breaker %d %s: both must be positive", s.BreakerFailures, time.Duration(s.BreakerDelay))
	}
	return nil
}

// ServeHTTP counts the request, sets the rate-limit headers and lets it
// through, or refuses it.
func (h *RateLimit) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	id, ok := h.identity(r, repl)
	if !ok {
		return problem.New(http.StatusForbidden, "identity-required",
			"This resource is rate-limited per user and the request carries no user identity.", nil)
	}

	ctx, span := telemetry.Tracer(r.Context(), tracerName).Start(r.Context(), "rate_limit", spanOptions...)
	d := h.limiter.Decide(ctx, id, repl.ReplaceAll(h.Tier, ""))
	h.annotate(span, d)
	span.End()
	decision := d.Outcome.String()
	if d.FailedOpen {
		decision = "fail_open"
	}
	telemetry.LogFields(r, zap.String("ratelimit_decision", decision))

	SetHeaders(w.Header(), d)
	switch d.Outcome {
	case Denied:
		w.Header().Set("Retry-After", strconv.FormatInt(d.RetryAfter, 10))
		repl.Set(ExceededPlaceholder, d.Exceeded)
		h.sampleLog(r)
		return problem.WithExtensions(http.StatusTooManyRequests, "rate-limited",
			"Too many requests: retry after the number of seconds in Retry-After.",
			map[string]any{"policy": d.Exceeded, "retry_after": d.RetryAfter}, nil)
	case Unavailable:
		w.Header().Set("Retry-After", strconv.FormatInt(d.RetryAfter, 10))
		return problem.WithExtensions(http.StatusServiceUnavailable, "rate-limit-unavailable",
			"The request cannot be counted against its rate limit right now: retry after the number of seconds in Retry-After.",
			map[string]any{"retry_after": d.RetryAfter}, d.Err)
	}
	err := next.ServeHTTP(w, r)
	var he caddyhttp.HandlerError
	if err != nil && errors.As(err, &he) && h.limiter.CountsStatus(he.StatusCode) {
		if cerr := h.limiter.CountAfter(r.Context(), id, repl.ReplaceAll(h.Tier, ""), he.StatusCode); cerr != nil {
			telemetry.LogFields(r, zap.String("ratelimit_count_error", cerr.Error()))
		}
	}
	return err
}

// Cleanup releases the stores; the last config to let go of one closes it.
func (h *RateLimit) Cleanup() error {
	var errs []error
	for _, key := range h.held {
		if _, err := stores.Delete(key); err != nil {
			errs = append(errs, fmt.Errorf("rate_limit: releasing store: %w", err))
		}
	}
	h.held = nil
	return errors.Join(errs...)
}

// sampleLog keeps a refused request out of the access log once LogDenied
// lines have been let through in the current window.
func (h *RateLimit) sampleLog(r *http.Request) {
	if h.logLimit == nil {
		return
	}
	lc, err := h.logLimit.Get(r.Context(), h.logKey, h.logRate)
	if err == nil && !lc.Reached {
		return
	}
	caddyhttp.SetVar(r.Context(), caddyhttp.LogSkipVar, true)
	denialsUnlogged.Inc()
}

// policies reads the policy configs.
func (h *RateLimit) policies() ([]Policy, error) {
	if len(h.Policies) == 0 {
		return nil, fmt.Errorf("rate_limit: at least one policy is required")
	}
	seen := make(map[string]bool, len(h.Policies))
	out := make([]Policy, 0, len(h.Policies))
	for _, pc := range h.Policies {
		if err := validPolicyName(pc.Name); err != nil {
			return nil, fmt.Errorf("rate_limit: %w", err)
		}
		if seen[pc.Name] {
			return nil, fmt.Errorf("rate_limit: policy %q is defined twice", pc.Name)
		}
		seen[pc.Name] = true
		rate, err := ParseRate(pc.Rate)
		if err != nil {
			return nil, fmt.Errorf("rate_limit: policy %q: %w", pc.Name, err)
		}
		for tier, n := range pc.Tiers {
			if n < 1 {
				return nil, fmt.Errorf("rate_limit: policy %q: tier %q: limit %d must be positive", pc.Name, tier, n)
			}
		}
		for _, status := range pc.CountStatuses {
			if status < 100 || status > 599 {
				return nil, fmt.Errorf("rate_limit: policy %q: count_status %d is not an HTTP status", pc.Name, status)
			}
		}
		out = append(out, Policy{Name: pc.Name, Rate: rate, Tiers: pc.Tiers, CountStatuses: pc.CountStatuses})
	}
	return out, nil
}

// acquire takes a store from the pool and remembers to release it.
func (h *RateLimit) acquire(spec storeSpec) (*Store, error) {
	s, err := acquire(spec)
	if err != nil {
		return nil, fmt.Errorf("rate_limit: %w", err)
	}
	h.held = append(h.held, spec.key)
	return s, nil
}

// annotate records the decision on the rate_limit span.
func (h *RateLimit) annotate(span trace.Span, d Decision) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(
		attribute.String("lexiscore.rate_limit.outcome", d.Outcome.String()),
		attribute.String("lexiscore.rate_limit.store", h.storeName),
		attribute.Bool("lexiscore.rate_limit.failed_open", d.FailedOpen),
	)
	if d.Exceeded != "" {
		span.SetAttributes(attribute.String("lexiscore.rate_limit.policy", d.Exceeded))
	}
	if d.Err != nil {
		span.RecordError(d.Err)
		span.SetStatus(codes.Error, "rate limit store unavailable")
	}
}

// identity resolves the key template: it has no value when any of its
// placeholders is unknown or empty (see Identity).
func (h *RateLimit) identity(r *http.Request, repl *caddy.Replacer) (string, bool) {
	if h.Anonymous == AnonymousAlways {
		// The key is not used, and resolving an unknown placeholder
		// builds an error.
		return Identity(h.Anonymous, "", false, clientIP(r))
	}
	key, err := repl.ReplaceOrErr(h.Key, true, true)
	return Identity(h.Anonymous, key, err == nil, clientIP(r))
}

// clientIP is Caddy's client address (trusted_proxies applied), or the
// peer's when the request did not come through a Caddy server.
func clientIP(r *http.Request) string {
	if ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Interface guards
var (
	_ caddy.Provisioner           = (*RateLimit)(nil)
	_ caddy.Validator             = (*RateLimit)(nil)
	_ caddy.CleanerUpper          = (*RateLimit)(nil)
	_ caddyhttp.MiddlewareHandler = (*RateLimit)(nil)
)
