package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/common"

	"github.com/lexiscore/gateway/internal/testkit"
)

// halfSecondClock starts half-way through a second, as real requests do, so that
// rounding of the seconds left in a window shows.
func halfSecondClock() *testkit.Clock {
	return testkit.NewClock(testkit.Epoch.Add(500 * time.Millisecond))
}

// fakeStore counts fixed windows on a fake clock, like limiter's stores; it
// can fail or hang per key. Only Get is used by the Limiter.
type fakeStore struct {
	limiter.Store
	now func() time.Time

	mu      sync.Mutex
	windows map[string]*fakeWindow
	calls   int
	fail    func(key string) error
	// hang holds calls until release is closed, whatever their context
	// says: a pipelined client waits for its batch the same way.
	hang    bool
	release chan struct{}
	// barrier, when set, holds each call until that many are in flight.
	barrier *sync.WaitGroup
}

type fakeWindow struct {
	count int64
	end   time.Time
}

func newFakeStore(t *testing.T, clock *testkit.Clock) *fakeStore {
	f := &fakeStore{now: clock.Now, windows: make(map[string]*fakeWindow), release: make(chan struct{})}
	t.Cleanup(func() { close(f.release) })
	return f
}

func (f *fakeStore) Get(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	f.mu.Lock()
	f.calls++
	fail, hang, barrier := f.fail, f.hang, f.barrier
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return limiter.Context{}, err // as a real client does
	}
	if hang {
		<-f.release
		return limiter.Context{}, errDown
	}
	if barrier != nil {
		barrier.Done()
		barrier.Wait()
	}
	if fail != nil {
		if err := fail(key); err != nil {
			return limiter.Context{}, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	w := f.windows[key]
	if w == nil || !now.Before(w.end) {
		w = &fakeWindow{end: now.Add(rate.Period)}
		f.windows[key] = w
	}
	w.count++
	return common.GetContextFromState(now, rate, w.end, w.count), nil
}

func (f *fakeStore) set(fail func(string) error, hang bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail, f.hang = fail, hang
}

func (f *fakeStore) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

var errDown = errors.New("connection refused")

func alwaysDown(string) error { return errDown }

// testPolicies: burst 3/s (pro 5), sustained 5/m (pro 100).
func testPolicies() []Policy {
	return []Policy{
		{Name: "burst", Rate: Rate{3, time.Second}, Tiers: map[string]int64{"pro": 5}},
		{Name: "sustained", Rate: Rate{5, time.Minute}, Tiers: map[string]int64{"pro": 100}},
	}
}

type fixture struct {
	clock  *testkit.Clock
	remote *fakeStore
	local  *fakeStore
	l      *Limiter
}

func newFixture(t *testing.T, failOpen bool, breaker circuitbreaker.CircuitBreaker[any]) *fixture {
	t.Helper()
	f := &fixture{clock: halfSecondClock()}
	f.remote, f.local = newFakeStore(t, f.clock), newFakeStore(t, f.clock)
	f.l = New(Config{
		Policies:  testPolicies(),
		Store:     NewStore("redis", f.remote, breaker),
		Timeout:   20 * time.Millisecond,
		FailOpen:  failOpen,
		Emergency: Rate{2, time.Minute},
		Local:     f.local,
		Now:       f.clock.Now,
	})
	return f
}

func closedBreaker() circuitbreaker.CircuitBreaker[any] {
	return circuitbreaker.NewBuilder[any]().WithFailureThreshold(1000).Build()
}

func TestDecidePolicies(t *testing.T) {
	cases := []struct {
		name     string
		tier     string
		hits     int           // earlier requests of the same key
		spacing  time.Duration // clock advance after each earlier request
		want     Outcome
		exceeded string
		retry    int64
		states   []State
	}{
		{
			name: "first request", want: Allowed,
			states: []State{
				{Policy: "burst", Limit: 3, Window: 1, Known: true, Remaining: 2, Reset: 1},
				{Policy: "sustained", Limit: 5, Window: 60, Known: true, Remaining: 4, Reset: 60},
			},
		},
		{
			name: "burst exhausted", hits: 3, want: Denied, exceeded: "burst", retry: 1,
			states: []State{
				{Policy: "burst", Limit: 3, Window: 1, Known: true, Remaining: 0, Reset: 1, Reached: true},
				{Policy: "sustained", Limit: 5, Window: 60, Known: true, Remaining: 1, Reset: 60},
			},
		},
		{
			// 55.5s are left in the minute: rounded up, never down.
			name: "sustained exhausted while burst is fine", hits: 5, spacing: 900 * time.Millisecond,
			want: Denied, exceeded: "sustained", retry: 56,
			states: []State{
				{Policy: "burst", Limit: 3, Window: 1, Known: true, Remaining: 1, Reset: 1},
				{Policy: "sustained", Limit: 5, Window: 60, Known: true, Remaining: 0, Reset: 56, Reached: true},
			},
		},
		{
			name: "both exhausted: Retry-After is the longer wait", hits: 5,
			want: Denied, exceeded: "sustained", retry: 60,
			states: []State{
				{Policy: "burst", Limit: 3, Window: 1, Known: true, Remaining: 0, Reset: 1, Reached: true},
				{Policy: "sustained", Limit: 5, Window: 60, Known: true, Remaining: 0, Reset: 60, Reached: true},
			},
		},
		{
			name: "pro tier has its own limits", tier: "pro", hits: 4, want: Allowed,
			states: []State{
				{Policy: "burst", Limit: 5, Window: 1, Known: true, Remaining: 0, Reset: 1},
				{Policy: "sustained", Limit: 100, Window: 60, Known: true, Remaining: 95, Reset: 60},
			},
		},
		{
			name: "unknown tier gets the default", tier: "platinum", hits: 3, want: Denied, exceeded: "burst", retry: 1,
			states: []State{
				{Policy: "burst", Limit: 3, Window: 1, Known: true, Remaining: 0, Reset: 1, Reached: true},
				{Policy: "sustained", Limit: 5, Window: 60, Known: true, Remaining: 1, Reset: 60},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, true, closedBreaker())
			ctx := context.Background()
			for range tc.hits {
				f.l.Decide(ctx, "id:u1", tc.tier)
				f.clock.Advance(tc.spacing)
			}
			other := f.l.Decide(ctx, "id:u2", tc.tier)
			d := f.l.Decide(ctx, "id:u1", tc.tier)
			if d.Outcome != tc.want || d.Exceeded != tc.exceeded || d.RetryAfter != tc.retry || d.FailedOpen || d.Err != nil {
				t.Fatalf("decision %+v, want %v exceeded %q retry %d", d, tc.want, tc.exceeded, tc.retry)
			}
			assertStates(t, d.States, tc.states)
			if want := PolicyField(tc.states); d.PolicyField != want {
				t.Errorf("RateLimit-Policy %q, want %q for tier %q", d.PolicyField, want, tc.tier)
			}
			if other.Outcome != Allowed {
				t.Errorf("another user was refused: %+v", other)
			}
		})
	}
}

func assertStates(t *testing.T, got, want []State) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("states %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("state %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestDecideKeysArePerPolicy(t *testing.T) {
	f := newFixture(t, true, closedBreaker())
	f.l.Decide(context.Background(), "id:u1", "")
	for _, k := range []string{"burst:id:u1", "sustained:id:u1"} {
		if _, ok := f.remote.windows[k]; !ok {
			t.Errorf("no counter %q in %v", k, f.remote.windows)
		}
	}
}

func TestDecideStoreDownFailsOpenToEmergencyLimit(t *testing.T) {
	f := newFixture(t, true, closedBreaker())
	f.remote.set(alwaysDown, false)
	failOpen := decisions.WithLabelValues("burst", decisionFailOpen)
	failOpenSustained := decisions.WithLabelValues("sustained", decisionFailOpen)
	emergencyDenied := decisions.WithLabelValues(EmergencyPolicy, decisionDenied)
	before, beforeSustained, beforeDenied := testkit.Value(failOpen), testkit.Value(failOpenSustained), testkit.Value(emergencyDenied)

	var got []Outcome
	for range 3 {
		d := f.l.Decide(context.Background(), "id:u1", "pro")
		if !d.FailedOpen || !errors.Is(d.Err, errDown) {
			t.Fatalf("decision %+v: want failed open with the store's error", d)
		}
		if len(d.States) != 1 || d.States[0].Policy != EmergencyPolicy || d.PolicyField != `"emergency";q=2;w=60` {
			t.Fatalf("states %+v, RateLimit-Policy %q: want only the emergency policy", d.States, d.PolicyField)
		}
		got = append(got, d.Outcome)
	}
	if want := []Outcome{Allowed, Allowed, Denied}; !equal(got, want) {
		t.Fatalf("outcomes %v, want %v (emergency limit 2/m)", got, want)
	}
	// Both policies' hits go out together, once per request.
	if n := f.remote.callCount(); n != 6 {
		t.Errorf("store called %d times for 3 requests of 2 policies, want 6", n)
	}
	if d := testkit.Value(failOpen) - before; d != 3 {
		t.Errorf("burst fail_open decisions +%v, want +3", d)
	}
	if d := testkit.Value(failOpenSustained) - beforeSustained; d != 3 {
		t.Errorf("sustained fail_open decisions +%v, want +3", d)
	}
	if d := testkit.Value(emergencyDenied) - beforeDenied; d != 1 {
		t.Errorf("emergency denied decisions +%v, want +1", d)
	}
}

func TestDecideStoreDownFailsClosed(t *testing.T) {
	f := newFixture(t, false, closedBreaker())
	f.remote.set(alwaysDown, false)
	failClosed := decisions.WithLabelValues("burst", decisionFailClosed)
	before := testkit.Value(failClosed)

	d := f.l.Decide(context.Background(), "id:u1", "pro")
	if d.Outcome != Unavailable || d.RetryAfter < 1 || !errors.Is(d.Err, errDown) || d.FailedOpen {
		t.Fatalf("decision %+v: want unavailable with Retry-After and the store's error", d)
	}
	assertStates(t, d.States, []State{
		{Policy: "burst", Limit: 5, Window: 1},
		{Policy: "sustained", Limit: 100, Window: 60},
	})
	if f.local.callCount() != 0 {
		t.Errorf("the emergency store was used while failing closed")
	}
	if d := testkit.Value(failClosed) - before; d != 1 {
		t.Errorf("fail_closed decisions +%v, want +1", d)
	}
}

func TestDecideDenialStandsWhenALaterPolicyFails(t *testing.T) {
	f := newFixture(t, true, closedBreaker())
	ctx := context.Background()
	for range 3 {
		f.l.Decide(ctx, "id:u1", "")
	}
	f.remote.set(func(key string) error {
		if strings.HasPrefix(key, "sustained:") {
			return errDown
		}
		return nil
	}, false)
	d := f.l.Decide(ctx, "id:u1", "")
	if d.Outcome != Denied || d.Exceeded != "burst" || d.FailedOpen {
		t.Fatalf("decision %+v: the store said burst is exhausted, want denied by burst", d)
	}
}

func TestDecideHungStoreIsBoundedByTimeout(t *testing.T) {
	f := newFixture(t, false, closedBreaker())
	f.remote.set(nil, true)
	done := make(chan Decision, 1)
	go func() { done <- f.l.Decide(context.Background(), "id:u1", "") }()
	select {
	case d := <-done:
		if d.Outcome != Unavailable || !errors.Is(d.Err, context.DeadlineExceeded) {
			t.Fatalf("decision %+v: want unavailable after the store timed out", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Decide hung on a store that never answers")
	}
}

func TestDecideSendsEveryPolicyAtOnce(t *testing.T) {
	f := newFixture(t, false, closedBreaker())
	// Each call waits until both policies' calls are in flight: sent one
	// after the other, the first would wait for the second until the
	// timeout and the request would fail closed.
	var inFlight sync.WaitGroup
	inFlight.Add(len(testPolicies()))
	f.remote.barrier = &inFlight
	if d := f.l.Decide(context.Background(), "id:u1", ""); d.Outcome != Allowed || d.Err != nil {
		t.Fatalf("decision %+v: want both policies counted together and allowed", d)
	}
}

func TestDecideClientCancelIsNotAStoreFailure(t *testing.T) {
	f := newFixture(t, true, closedBreaker())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if d := f.l.Decide(ctx, "id:u1", ""); d.Outcome != Allowed || d.FailedOpen {
		t.Fatalf("decision %+v with a cancelled request context: want counted and allowed", d)
	}
}

func TestBreakerStopsCallingDeadStoreAndRecovers(t *testing.T) {
	breaker := circuitbreaker.NewBuilder[any]().WithFailureThreshold(3).WithSuccessThreshold(1).WithDelay(50 * time.Millisecond).Build()
	f := newFixture(t, false, breaker)
	f.remote.set(alwaysDown, false)
	ctx := context.Background()
	for range 3 {
		f.l.Decide(ctx, "id:u1", "")
	}
	if !breaker.IsOpen() {
		t.Fatalf("breaker %v after 3 failures, want open", breaker.State())
	}
	calls := f.remote.callCount()
	for range 20 {
		d := f.l.Decide(ctx, "id:u1", "")
		if d.Outcome != Unavailable || !errors.Is(d.Err, circuitbreaker.ErrOpen) {
			t.Fatalf("decision %+v while open: want unavailable, breaker open", d)
		}
		if d.RetryAfter < 1 {
			t.Fatalf("Retry-After %d while open", d.RetryAfter)
		}
		if !breaker.IsOpen() {
			break // the delay passed; the next call is a trial
		}
	}
	if n := f.remote.callCount(); n > calls+1 {
		t.Fatalf("store called %d more times while the breaker was open", n-calls)
	}

	f.remote.set(nil, false)
	testkit.Eventually(t, "recovery after the store came back", func() error {
		if d := f.l.Decide(ctx, "id:u1", ""); d.Outcome != Allowed || d.Err != nil {
			return fmt.Errorf("decision %+v", d)
		}
		return nil
	})
	if !breaker.IsClosed() {
		t.Fatalf("breaker %v after a success, want closed", breaker.State())
	}
}

func TestStoreMetrics(t *testing.T) {
	f := newFixture(t, true, closedBreaker())
	errs := storeErrors.WithLabelValues("redis")
	before := testkit.Value(errs)
	f.l.Decide(context.Background(), "id:u1", "")
	f.remote.set(alwaysDown, false)
	f.l.Decide(context.Background(), "id:u1", "")
	if d := testkit.Value(errs) - before; d != 1 {
		t.Errorf("store errors +%v, want +1", d)
	}
	if n := testkit.HistogramCount(t, storeDuration.WithLabelValues("redis")); n < 2 {
		t.Errorf("%d store durations observed, want 2 or more", n)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
