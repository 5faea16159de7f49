package resilience

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/lexiscore/gateway/internal/testkit"
)

func TestParseRetryAfter(t *testing.T) {
	now := testkit.NewClock(testkit.Epoch).Now()
	cases := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"3", 3 * time.Second, true},
		{" 7 ", 7 * time.Second, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"99999999999999", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{now.Add(2 * time.Second).Format(time.RFC850), 2 * time.Second, true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := parseRetryAfter(tc.in, now)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestRetryAfterValueRoundsUpToAtLeastOneSecond(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "1",
		time.Millisecond:        "1",
		1200 * time.Millisecond: "2",
		3 * time.Second:         "3",
	} {
		if got := retryAfterValue(d); got != want {
			t.Errorf("retryAfterValue(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestReplayable(t *testing.T) {
	withKey := http.Header{"Idempotency-Key": {"k1"}}
	cases := []struct {
		method   string
		header   http.Header
		bodyKept bool
		want     bool
	}{
		{http.MethodGet, nil, true, true},
		{http.MethodPut, nil, true, true},
		{http.MethodDelete, nil, true, true},
		{http.MethodPost, nil, true, false},
		{http.MethodPatch, nil, true, false},
		{http.MethodPost, withKey, true, true},
		{http.MethodPost, withKey, false, false},
		{http.MethodGet, nil, false, false},
	}
	for _, tc := range cases {
		if got := replayable(tc.method, tc.header, tc.bodyKept); got != tc.want {
			t.Errorf("replayable(%s, %v, %v) = %v, want %v", tc.method, tc.header, tc.bodyKept, got, tc.want)
		}
	}
}

func TestRetryable(t *testing.T) {
	clock := testkit.NewClock(testkit.Epoch)
	rr := retryRules{
		statuses:      map[int]bool{502: true, 503: true, 504: true},
		retryAfterCap: 5 * time.Second,
		now:           clock.Now,
	}
	deadline := clock.Now().Add(3 * time.Second)
	status := func(code int, retryAfter time.Duration) *outcome {
		return &outcome{kind: kindStatus, status: code, retryAfter: retryAfter, deadline: deadline}
	}
	of := func(k kind) *outcome { return &outcome{kind: k, retryAfter: -1, deadline: deadline} }
	cases := []struct {
		name string
		o    *outcome
		want bool
	}{
		{"503", status(503, -1), true},
		{"500 not in the list", status(500, -1), false},
		{"Retry-After within cap and time left", status(503, 2*time.Second), true},
		{"Retry-After beyond time left", status(503, 4*time.Second), false},
		{"transport error", of(kindTransport), true},
		{"attempt timeout", of(kindTimeout), true},
		{"dial error is failover's", of(kindDial), false},
		{"open breaker fails fast", of(kindOpen), false},
		{"no upstream fails fast", of(kindNoUpstream), false},
		{"client gone or hedge lost", of(kindCanceled), false},
		{"committed", of(kindCommitted), false},
		{"no outcome", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := rr.retryable(tc.o); got != tc.want {
				t.Fatalf("retryable = %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("Retry-After beyond cap", func(t *testing.T) {
		far := status(503, 6*time.Second)
		far.deadline = clock.Now().Add(time.Minute)
		if rr.retryable(far) {
			t.Fatal("a Retry-After above the cap was retried")
		}
	})
}

func TestDelay(t *testing.T) {
	rr := retryRules{backoff: 100 * time.Millisecond, maxBackoff: 1 * time.Second, jitter: 0.5}
	cases := []struct {
		name    string
		o       *outcome
		retries int
		rand    float64
		want    time.Duration
	}{
		{"Retry-After exactly, no jitter", &outcome{kind: kindStatus, retryAfter: 1500 * time.Millisecond}, 0, 0, 1500 * time.Millisecond},
		{"first backoff, low jitter", &outcome{kind: kindStatus, retryAfter: -1}, 0, 0, 50 * time.Millisecond},
		{"first backoff, middle", &outcome{kind: kindStatus, retryAfter: -1}, 0, 0.5, 100 * time.Millisecond},
		{"second backoff doubles", &outcome{kind: kindDial, retryAfter: -1}, 1, 0.5, 200 * time.Millisecond},
		{"capped", &outcome{kind: kindDial, retryAfter: -1}, 10, 0.5, time.Second},
		{"capped, high jitter", &outcome{kind: kindDial, retryAfter: -1}, 10, 1, 1500 * time.Millisecond},
		{"after an attempt timeout", nil, 2, 0.5, 400 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rr
			r.rand = func() float64 { return tc.rand }
			if got := r.delay(tc.o, tc.retries); got != tc.want {
				t.Fatalf("delay = %v, want %v", got, tc.want)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	live := context.Background()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	dial := caddyhttp.Error(http.StatusBadGateway, reverseproxy.NewDialError(errors.New("connection refused")))
	cases := []struct {
		name     string
		err      error
		ctx      context.Context
		lastOpen bool
		want     kind
	}{
		{"dial error", dial, live, false, kindDial},
		{"dial error from an open breaker", dial, live, true, kindOpen},
		{"no upstream available", caddyhttp.Error(http.StatusServiceUnavailable, errors.New("no upstreams available")), live, false, kindNoUpstream},
		{"attempt canceled", caddyhttp.Error(http.StatusBadGateway, errors.New("x")), gone, false, kindCanceled},
		{"context canceled", fmt.Errorf("read: %w", context.Canceled), live, false, kindCanceled},
		{"read timeout", caddyhttp.Error(http.StatusGatewayTimeout, timeoutErr{}), live, false, kindTimeout},
		{"connection reset", caddyhttp.Error(http.StatusBadGateway, errors.New("connection reset by peer")), live, false, kindTransport},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err, tc.ctx, tc.lastOpen); got != tc.want {
				t.Fatalf("classify = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestTimedOutTellsTimeoutsFromOtherCancellations(t *testing.T) {
	cases := []struct {
		cause error
		want  bool
	}{
		{errAttemptTimeout, true},
		{errRouteTimeout, true},
		{errHedgeLost, false},
		{nil, false}, // plain cancel: the client left
	}
	for _, tc := range cases {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(tc.cause)
		child, stop := context.WithCancel(ctx)
		if got := timedOut(child); got != tc.want {
			t.Errorf("cause %v: timedOut = %v, want %v", tc.cause, got, tc.want)
		}
		stop()
	}
}
