package resilience

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/bulkhead"
)

// limiter bounds how many requests of a route are in flight at once.
type limiter interface {
	// acquire waits for a permit; the error is bulkhead.ErrFull,
	// adaptivelimiter.ErrExceeded, or the context's error.
	acquire(ctx context.Context) (release func(ok bool), err error)
	limit() int
	inFlight() int
}

// bulkheadLimiter is a failsafe-go bulkhead: a fixed number of permits and
// a bounded wait for one.
type bulkheadLimiter struct {
	bh   bulkhead.Bulkhead[any]
	size int
	wait time.Duration
	held atomic.Int64
}

func newBulkheadLimiter(size uint, wait time.Duration) *bulkheadLimiter {
	return &bulkheadLimiter{bh: bulkhead.New[any](size), size: int(size), wait: wait}
}

func (b *bulkheadLimiter) acquire(ctx context.Context) (func(bool), error) {
	if err := b.bh.AcquirePermitWithMaxWait(ctx, b.wait); err != nil {
		return nil, err
	}
	b.held.Add(1)
	return func(bool) {
		b.held.Add(-1)
		b.bh.ReleasePermit()
	}, nil
}

func (b *bulkheadLimiter) limit() int    { return b.size }
func (b *bulkheadLimiter) inFlight() int { return int(b.held.Load()) }

// adaptiveLimiter is failsafe-go's adaptive concurrency limiter: the limit
// moves between min and max following the latency trend of the requests.
type adaptiveLimiter struct {
	al   adaptivelimiter.AdaptiveLimiter[any]
	wait time.Duration
}

func newAdaptiveLimiter(minLimit, maxLimit, initial uint, wait time.Duration) *adaptiveLimiter {
	al := adaptivelimiter.NewBuilder[any]().WithLimits(minLimit, maxLimit, initial).Build()
	return &adaptiveLimiter{al: al, wait: wait}
}

func (a *adaptiveLimiter) acquire(ctx context.Context) (func(bool), error) {
	p, err := a.al.AcquirePermitWithMaxWait(ctx, a.wait)
	if err != nil {
		return nil, err
	}
	// Only completed requests teach the limiter about latency; failures
	// and timeouts would skew it.
	return func(ok bool) {
		if ok {
			p.Record()
			return
		}
		p.Drop()
	}, nil
}

func (a *adaptiveLimiter) limit() int    { return a.al.Limit() }
func (a *adaptiveLimiter) inFlight() int { return a.al.Inflight() }

// routeState is what a route keeps across config reloads: its concurrency
// limiter (a reload must not hand out a second set of permits), its retry
// budget and its stale cache.
type routeState struct {
	name   string
	seq    uint64
	lim    limiter
	budget budget.Budget
	cache  *staleCache
}

// routePool holds route states, keyed by route name and configuration.
var routePool = caddy.NewUsagePool()

// Destruct forgets the state when no loaded config uses it any more.
func (rs *routeState) Destruct() error {
	routes.remove(rs)
	return nil
}

// routeRegistry indexes live route states by name for the gauges.
type routeRegistry struct {
	mu     sync.RWMutex
	byName map[string][]*routeState
	seq    atomic.Uint64
}

var routes = &routeRegistry{byName: map[string][]*routeState{}}

func (r *routeRegistry) add(rs *routeState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs.seq = r.seq.Add(1)
	r.byName[rs.name] = append(r.byName[rs.name], rs)
}

func (r *routeRegistry) remove(rs *routeState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.byName[rs.name]
	for i, x := range list {
		if x == rs {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(r.byName, rs.name)
	} else {
		r.byName[rs.name] = list
	}
}

// limiters returns the newest limiter of each route that has one.
func (r *routeRegistry) limiters() map[string]limiter {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := map[string]limiter{}
	for name, list := range r.byName {
		var newest *routeState
		for _, rs := range list {
			if rs.lim != nil && (newest == nil || rs.seq > newest.seq) {
				newest = rs
			}
		}
		if newest != nil {
			out[name] = newest.lim
		}
	}
	return out
}
