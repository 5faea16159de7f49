package resilience

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// parseRetryAfter reads a Retry-After value (RFC 9110 §10.2.3): delay-seconds
// or an HTTP-date, taken relative to now. A date in the past means no wait.
// ok is false for an absent or malformed value.
func parseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(0, t.Sub(now)), true
}

// retryAfterValue formats a wait as Retry-After delay-seconds: rounded up, at
// least 1, since 0 would invite an immediate retry.
func retryAfterValue(d time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
}

// idempotent methods (RFC 9110 §9.2.2).
var idempotent = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodOptions: true,
	http.MethodTrace: true, http.MethodPut: true, http.MethodDelete: true,
}

// replayable reports whether the handler may send a request again after it
// reached an upstream: its method is idempotent or the client made it safe
// to repeat with an Idempotency-Key, and its whole body was kept. (A
// request that never reached an upstream is failed over by reverse_proxy's
// lb_retries whatever its method.)
func replayable(method string, header http.Header, bodyKept bool) bool {
	return bodyKept && (idempotent[method] || header.Get("Idempotency-Key") != "")
}

// kind is how an attempt ended.
type kind int

const (
	// kindCommitted: a response that is not a failure started streaming to
	// the client. Nothing can be retried or replaced any more.
	kindCommitted kind = iota
	// kindStatus: the upstream answered with a failure status, held back.
	kindStatus
	// kindDial: no connection to any upstream; the request was not sent.
	kindDial
	// kindOpen: every upstream tried had its circuit breaker open.
	kindOpen
	// kindNoUpstream: the load balancer had no available upstream (all
	// unhealthy per the active health checks).
	kindNoUpstream
	// kindTimeout: a timeout passed while waiting for the answer.
	kindTimeout
	// kindTransport: the exchange failed after the request may have been
	// sent (connection reset, malformed response).
	kindTransport
	// kindCanceled: the client went away, or a hedge won.
	kindCanceled
)

// reason is the gateway_retries_total label of a retried failure.
func (k kind) reason() string {
	switch k {
	case kindStatus:
		return "status"
	case kindTimeout:
		return "timeout"
	default:
		return "transport"
	}
}

// classify reads the error reverse_proxy returned for an attempt.
// lastOpen tells whether the load balancer's last try met an open breaker:
// reverse_proxy's DialError does not unwrap, so the transport reports it.
func classify(err error, attemptCtx context.Context, lastOpen bool) kind {
	var dial reverseproxy.DialError
	var he caddyhttp.HandlerError
	var ne net.Error
	switch {
	case errors.As(err, &dial) && lastOpen:
		return kindOpen
	case errors.As(err, &dial):
		return kindDial
	case attemptCtx.Err() != nil, errors.Is(err, context.Canceled):
		return kindCanceled
	case errors.As(err, &he) && he.StatusCode == http.StatusServiceUnavailable:
		// reverse_proxy answers 503 only when no upstream is available.
		return kindNoUpstream
	case errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	default:
		return kindTransport
	}
}

// retryRules decide which failed attempts are worth another try and how
// long to wait before it; the failsafe-go retry policy does the rest
// (counting attempts, the budget, waiting, cancellation).
type retryRules struct {
	// statuses are the upstream statuses retried.
	statuses map[int]bool
	// retryAfterCap is the longest Retry-After honoured; an upstream asking
	// for more gets its answer passed to the client instead.
	retryAfterCap time.Duration
	// backoff is the first wait, doubled after each retry up to maxBackoff,
	// then spread by ±jitter (a fraction) so that clients failing together
	// do not retry together.
	backoff, maxBackoff time.Duration
	jitter              float64
	now                 func() time.Time
	// rand returns a number in [0, 1); tests fix it.
	rand func() float64
}

// retryable reports whether an attempt of a replayable request that ended
// with o is worth another one. Failures before any upstream got the request
// (dial errors) are reverse_proxy's to fail over, within the attempt; open
// breakers and a pool without healthy upstreams fail fast.
func (rr retryRules) retryable(o *outcome) bool {
	if o == nil {
		return false
	}
	switch o.kind {
	case kindStatus:
		if !rr.statuses[o.status] {
			return false
		}
		if o.retryAfter < 0 {
			return true
		}
		wait := min(rr.retryAfterCap, o.deadline.Sub(rr.now()))
		return o.retryAfter <= wait
	case kindTimeout, kindTransport:
		return true
	default:
		return false
	}
}

// delay is the wait before the retry that follows retries earlier ones:
// exactly the upstream's Retry-After when it sent one, else the jittered
// exponential backoff. (failsafe-go's own backoff would jitter a DelayFunc's
// result too, and so retry before the upstream asked.)
func (rr retryRules) delay(o *outcome, retries int) time.Duration {
	if o != nil && o.kind == kindStatus && o.retryAfter >= 0 {
		return o.retryAfter
	}
	d := rr.backoff
	for i := 0; i < retries && d < rr.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, rr.maxBackoff)
	return time.Duration(float64(d) * (1 - rr.jitter + 2*rr.jitter*rr.rand()))
}
