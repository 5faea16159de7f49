package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ulule/limiter/v3"

	"github.com/lexiscore/gateway/internal/telemetry"
)

// Store is a limiter.Store (memory or Redis) with the guard a remote store
// needs. One Store serves every handler configured with it, so its breaker
// sees all of their calls. Safe for concurrent use.
type Store struct {
	// Name labels metrics: "memory" or "redis".
	Name string
	// Backend counts the hits.
	Backend limiter.Store
	// Breaker, when set, guards Backend: while it is open, calls fail at
	// once without reaching Backend. Nil for a store that cannot fail (memory).
	Breaker circuitbreaker.CircuitBreaker[any]

	duration prometheus.Observer
	errors   prometheus.Counter
	openErr  error
}

// NewStore names backend for metrics and guards it with breaker (may be nil).
func NewStore(name string, backend limiter.Store, breaker circuitbreaker.CircuitBreaker[any]) *Store {
	return &Store{
		Name:     name,
		Backend:  backend,
		Breaker:  breaker,
		duration: storeDuration.WithLabelValues(name),
		errors:   storeErrors.WithLabelValues(name),
		openErr:  fmt.Errorf("rate limit store %s: %w", name, circuitbreaker.ErrOpen),
	}
}

// hit is one policy's count for one request; a peek reads the count
// without adding to it.
type hit struct {
	key  string
	rate limiter.Rate
	peek bool
}

// count adds h to the store's count, or reads it for a peek.
func (s *Store) count(ctx context.Context, h hit) (limiter.Context, error) {
	if h.peek {
		return s.Backend.Peek(ctx, h.key, h.rate)
	}
	return s.Backend.Get(ctx, h.key, h.rate)
}

// answer is the store's count for one hit, when it gave one.
type answer struct {
	limiter.Context
	ok bool
}

// getAll counts every hit of one request. On a guarded (remote) store the
// calls go out at once, so that they travel together (one round trip, see
// redisCounter), under one breaker permit and one timeout: the breaker and the
// duration histogram see one call per request. The timeout is kept here,
// not left to the client: a pipelined Redis client waits for its batch,
// which a hung server holds for the client's read timeout (seconds). A
// guarded call is detached from the request's cancellation: a client that
// goes away must not count as a store failure, and the hits are counted
// either way. It returns the answers in the order of hits (those the store
// gave, even when another failed) and the first error.
func (s *Store) getAll(ctx context.Context, hits []hit, timeout time.Duration) ([]answer, error) {
	out := make([]answer, len(hits))
	start := time.Now()
	if s.Breaker == nil {
		defer func() { telemetry.Observe(ctx, s.duration, time.Since(start).Seconds()) }()
		for i, h := range hits {
			lc, err := s.count(ctx, h)
			if err != nil {
				return out, fmt.Errorf("rate limit store %s: %w", s.Name, err)
			}
			out[i] = answer{lc, true}
		}
		return out, nil
	}
	if !s.Breaker.TryAcquirePermit() {
		return out, s.openErr
	}
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var err error
	if b, ok := s.Backend.(batchCounter); ok {
		err = b.countAll(callCtx, hits, out)
	} else {
		err = s.countEach(callCtx, hits, out)
	}
	telemetry.Observe(ctx, s.duration, time.Since(start).Seconds())
	if err != nil {
		s.errors.Inc()
		s.Breaker.RecordFailure()
		return out, fmt.Errorf("rate limit store %s: %w", s.Name, err)
	}
	s.Breaker.RecordSuccess()
	return out, nil
}

// countEach is countAll for a store that takes one hit per call: each in
// its own goroutine, so that they are all in flight at once, awaited until
// ctx is done.
func (s *Store) countEach(ctx context.Context, hits []hit, out []answer) error {
	type reply struct {
		i   int
		lc  limiter.Context
		err error
	}
	replies := make(chan reply, len(hits))
	for i, h := range hits {
		go func() {
			lc, err := s.count(ctx, h)
			replies <- reply{i, lc, err}
		}()
	}
	var err error
	for range hits {
		select {
		case r := <-replies:
			if r.err == nil {
				out[r.i] = answer{r.lc, true}
			} else if err == nil {
				err = r.err
			}
			continue
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
		}
		break
	}
	return err
}

// retryAfter is when a client refused for want of the store should come
// back: when the breaker will let a call through, at least a second.
func (s *Store) retryAfter() int64 {
	if s.Breaker == nil {
		return 1
	}
	return max(ceilSeconds(s.Breaker.RemainingDelay()), 1)
}

// Config is what a Limiter decides with.
type Config struct {
	// Policies are all checked, in order, for every request.
	Policies []Policy
	// Store counts the policies' hits.
	Store *Store
	// Timeout bounds each call to a guarded Store.
	Timeout time.Duration
	// FailOpen decides what happens when Store fails: true lets the
	// in-process Emergency rate decide, false refuses the request.
	FailOpen bool
	// Emergency is the rate per key enforced in Local while Store is
	// unavailable and FailOpen is set.
	Emergency Rate
	// Local is an in-process store for the Emergency rate.
	Local limiter.Store
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Limiter decides requests against named policies. Safe for concurrent use.
type Limiter struct {
	cfg      Config
	counters []policyCounters
	// tiers holds what depends only on the tier, formatted once: the
	// policies' quotas and their RateLimit-Policy field. byDefault is for
	// tiers no policy names.
	tiers     map[string]tierQuotas
	byDefault tierQuotas
	// emergency* are the same for the fail-open policy; emergencyPrefix
	// starts its keys in the in-process store.
	emergency       policyCounters
	emergencyField  string
	emergencyPrefix string
	// after maps a status to the policies that count requests refused
	// with it (Policy.CountStatuses).
	after map[int][]int
}

type tierQuotas struct {
	quotas []State
	field  string
}

// New returns a Limiter for cfg.
func New(cfg Config) *Limiter {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Limiter{
		cfg:            cfg,
		tiers:          make(map[string]tierQuotas),
		emergency:      countersFor(EmergencyPolicy),
		emergencyField: PolicyField([]State{{Policy: EmergencyPolicy, Limit: cfg.Emergency.Limit, Window: cfg.Emergency.seconds()}}),
		// The rate is part of the key: handlers with different emergency
		// rates must not share a counter in the one in-process store.
		emergencyPrefix: EmergencyPolicy + ":" + cfg.Emergency.String() + ":",
	}
	quotasOf := func(rateOf func(Policy) Rate) tierQuotas {
		q := make([]State, len(cfg.Policies))
		for i, p := range cfg.Policies {
			r := rateOf(p)
			q[i] = State{Policy: p.Name, Limit: r.Limit, Window: r.seconds()}
		}
		return tierQuotas{quotas: q, field: PolicyField(q)}
	}
	for i, p := range cfg.Policies {
		for _, status := range p.CountStatuses {
			if l.after == nil {
				l.after = make(map[int][]int)
			}
			l.after[status] = append(l.after[status], i)
		}
		l.counters = append(l.counters, countersFor(p.Name))
		for tier := range p.Tiers {
			l.tiers[tier] = quotasOf(func(p Policy) Rate { return p.RateFor(tier) })
		}
	}
	l.byDefault = quotasOf(func(p Policy) Rate { return p.Rate })
	return l
}

func (l *Limiter) tier(name string) tierQuotas {
	if t, ok := l.tiers[name]; ok {
		return t
	}
	return l.byDefault
}

// Outcome is what happens to a request.
type Outcome int

const (
	// Allowed requests go on.
	Allowed Outcome = iota
	// Denied requests are over a limit: 429.
	Denied
	// Unavailable requests could not be counted and the handler fails
	// closed: 503.
	Unavailable
)

func (o Outcome) String() string {
	switch o {
	case Allowed:
		return "allowed"
	case Denied:
		return "denied"
	default:
		return "unavailable"
	}
}

// State is one policy as a response advertises it.
type State struct {
	Policy string
	// Limit is the quota per Window (seconds).
	Limit, Window int64
	// Known is false when the store did not answer: only the quota is known.
	Known bool
	// Remaining requests in the window and seconds until it ends (at
	// least 1), when Known.
	Remaining, Reset int64
	// Reached is set when this request was over the limit.
	Reached bool
}

// Decision is the verdict on one request.
type Decision struct {
	Outcome Outcome
	// States are the policies the response advertises: the configured
	// ones, or only the emergency one when the store failed open.
	States []State
	// PolicyField is the RateLimit-Policy field of States, when known.
	PolicyField string
	// Exceeded names the policy that refused the request (Denied).
	Exceeded string
	// RetryAfter is in seconds (Denied, Unavailable).
	RetryAfter int64
	// FailedOpen is set when the store failed and the emergency policy decided.
	FailedOpen bool
	// Err is the store's error: for logs and spans, never for clients.
	Err error
}

// Decide counts one request of key, whose user is of tier, against every
// policy; a policy with CountStatuses is only read, and refuses a key that
// is at its limit.
func (l *Limiter) Decide(ctx context.Context, key, tier string) Decision {
	hits := make([]hit, len(l.cfg.Policies))
	rates := make([]Rate, len(l.cfg.Policies))
	for i, p := range l.cfg.Policies {
		rates[i] = p.RateFor(tier)
		hits[i] = hit{key: p.Name + ":" + key, rate: rates[i].limiterRate(), peek: len(p.CountStatuses) > 0}
	}
	answers, storeErr := l.cfg.Store.getAll(ctx, hits, l.cfg.Timeout)
	states := make([]State, 0, len(answers))
	for i, a := range answers {
		switch {
		case a.ok:
			st := l.state(l.cfg.Policies[i].Name, rates[i], a.Context)
			if hits[i].peek {
				// A read is over the limit once the count reaches it: the
				// next counted request would exceed it.
				st.Reached = a.Remaining <= 0
			}
			l.counters[i].verdict(st.Reached)
			states = append(states, st)
		case l.cfg.FailOpen:
			l.counters[i].failOpen.Inc()
		default:
			l.counters[i].failClosed.Inc()
		}
	}
	d := verdict(states)
	if storeErr == nil {
		d.PolicyField = l.tier(tier).field
		return d
	}
	if d.Outcome == Denied {
		// A policy the store did answer for is over its limit: that holds
		// whatever became of the others.
		d.Err = storeErr
		return d
	}
	if !l.cfg.FailOpen {
		t := l.tier(tier)
		return Decision{Outcome: Unavailable, States: t.quotas, PolicyField: t.field, RetryAfter: l.cfg.Store.retryAfter(), Err: storeErr}
	}
	lc, err := l.cfg.Local.Get(ctx, l.emergencyPrefix+key, l.cfg.Emergency.limiterRate())
	if err != nil {
		// Failing open with no count at all is still failing open.
		return Decision{Outcome: Allowed, FailedOpen: true, Err: storeErr}
	}
	st := l.state(EmergencyPolicy, l.cfg.Emergency, lc)
	l.emergency.verdict(st.Reached)
	d = verdict([]State{st})
	d.PolicyField, d.FailedOpen, d.Err = l.emergencyField, true, storeErr
	return d
}

// CountsStatus reports whether a request answered with status is counted
// after the fact (see CountAfter).
func (l *Limiter) CountsStatus(status int) bool {
	_, ok := l.after[status]
	return ok
}

// CountAfter counts one request of key, whose user is of tier, that was
// answered with status, against the policies that count that status. A
// store failure only loses the count: it is returned for logs.
func (l *Limiter) CountAfter(ctx context.Context, key, tier string, status int) error {
	idx := l.after[status]
	if len(idx) == 0 {
		return nil
	}
	hits := make([]hit, len(idx))
	for j, i := range idx {
		p := l.cfg.Policies[i]
		hits[j] = hit{key: p.Name + ":" + key, rate: p.RateFor(tier).limiterRate()}
	}
	_, err := l.cfg.Store.getAll(ctx, hits, l.cfg.Timeout)
	return err
}

// state turns the store's answer into what a response advertises.
// limiter.Context.Reset is the end of the window truncated to the second,
// so the seconds left are rounded up: a client told to wait too little
// would come back too early and be refused again.
func (l *Limiter) state(name string, rate Rate, lc limiter.Context) State {
	reset := min(max(lc.Reset+1-l.cfg.Now().Unix(), 1), rate.seconds())
	return State{
		Policy: name, Limit: rate.Limit, Window: rate.seconds(),
		Known: true, Remaining: lc.Remaining, Reset: reset, Reached: lc.Reached,
	}
}

// verdict denies when any policy is over its limit; Retry-After is the
// longest wait among those, since the request passes only when all allow it.
func verdict(states []State) Decision {
	d := Decision{Outcome: Allowed, States: states}
	for _, s := range states {
		if s.Reached && s.Reset > d.RetryAfter {
			d.Outcome, d.Exceeded, d.RetryAfter = Denied, s.Policy, s.Reset
		}
	}
	return d
}

func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
