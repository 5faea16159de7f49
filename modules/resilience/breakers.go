package resilience

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// BreakerConfig is the per-upstream circuit breaker of the resilient
// transport. A breaker opens when, within Window, at least MinRequests
// attempts were made and at least FailureRatio of them failed (connection
// errors, timeouts, 5xx). It stays open for OpenDelay, then lets
// HalfOpenProbes attempts through: if they all succeed it closes, one failure
// re-opens it.
type BreakerConfig struct {
	// FailureRatio is the share of failed attempts (0 < ratio <= 1) that
	// opens the breaker. Default: 0.75 — above the 50% error rate that
	// retries still ride through, so a half-broken upstream keeps serving
	// while a mostly broken one is given a rest.
	FailureRatio float64 `json:"failure_ratio,omitempty"`
	// MinRequests is how many attempts the window must hold before the
	// ratio is judged, so that two failures out of two do not open it.
	// Default: 20.
	MinRequests uint `json:"min_requests,omitempty"`
	// Window is the sliding time window over which attempts are counted.
	// Default: 10s.
	Window caddy.Duration `json:"window,omitempty"`
	// OpenDelay is how long an open breaker fails fast before it lets
	// probes through. It is also the Retry-After clients get. Default: 5s.
	OpenDelay caddy.Duration `json:"open_delay,omitempty"`
	// HalfOpenProbes is how many consecutive successful probes close the
	// breaker again. Default: 3.
	HalfOpenProbes uint `json:"half_open_probes,omitempty"`
}

func (c *BreakerConfig) setDefaults() {
	if c.FailureRatio == 0 {
		c.FailureRatio = 0.75
	}
	if c.MinRequests == 0 {
		c.MinRequests = 20
	}
	if c.Window == 0 {
		c.Window = caddy.Duration(10 * time.Second)
	}
	if c.OpenDelay == 0 {
		c.OpenDelay = caddy.Duration(5 * time.Second)
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = 3
	}
}

func (c BreakerConfig) validate() error {
	switch {
	case c.FailureRatio <= 0 || c.FailureRatio > 1:
		return fmt.Errorf("breaker failure_ratio %v: must be in (0, 1]", c.FailureRatio)
	case c.Window < 0:
		return fmt.Errorf("breaker window %v: must not be negative", time.Duration(c.Window))
	case c.OpenDelay < 0:
		return fmt.Errorf("breaker open_delay %v: must not be negative", time.Duration(c.OpenDelay))
	}
	return nil
}

// key identifies breakers built from this configuration: a reload with the
// same settings keeps the breakers (and their state); changed settings get
// fresh ones.
func (c BreakerConfig) key() string {
	return fmt.Sprintf("%g/%d/%d/%d/%d", c.FailureRatio, c.MinRequests, c.Window, c.OpenDelay, c.HalfOpenProbes)
}

// State label values, as failsafe-go names them.
var stateNames = []circuitbreaker.State{circuitbreaker.ClosedState, circuitbreaker.OpenState, circuitbreaker.HalfOpenState}

// breaker is the circuit breaker of one upstream under one configuration.
// It lives in breakerPool, so it survives config reloads.
type breaker struct {
	upstream string
	cfgKey   string
	cb       circuitbreaker.CircuitBreaker[any]
	// seq orders breakers by creation; when two configurations briefly
	// coexist during a reload, the newer one reports the upstream's state.
	seq uint64
	// The upstream's metric series, resolved once.
	duration prometheus.Observer
	requests map[string]prometheus.Counter
}

// breakerPool holds every breaker in use, keyed by poolKey; the transports
// using a breaker hold a reference.
var breakerPool = caddy.NewUsagePool()

func poolKey(cfg BreakerConfig, upstream string) string { return cfg.key() + "|" + upstream }

// newBreaker builds the failsafe-go breaker of upstream. Transitions are
// counted, logged and tracked in the registry.
func newBreaker(cfg BreakerConfig, upstream string, logger *zap.Logger) *breaker {
	b := &breaker{
		upstream: upstream,
		cfgKey:   cfg.key(),
		seq:      registry.seq.Add(1),
		duration: upstreamDuration.WithLabelValues(upstream),
		requests: map[string]prometheus.Counter{},
	}
	for _, class := range codeClasses {
		b.requests[class] = upstreamRequests.WithLabelValues(upstream, class)
	}
	b.cb = circuitbreaker.NewBuilder[any]().
		WithFailureRateThreshold(cfg.FailureRatio, cfg.MinRequests, time.Duration(cfg.Window)).
		WithSuccessThreshold(cfg.HalfOpenProbes).
		WithDelay(time.Duration(cfg.OpenDelay)).
		OnStateChanged(func(e circuitbreaker.StateChangedEvent) {
			registry.transition(e.OldState, e.NewState)
			breakerTransitions.WithLabelValues(upstream, e.OldState.String(), e.NewState.String()).Inc()
			m := e.Metrics()
			fields := []zap.Field{
				zap.String("upstream", upstream),
				zap.String("from", e.OldState.String()),
				zap.String("to", e.NewState.String()),
				zap.Uint("executions", m.Executions()),
				zap.Uint("failures", m.Failures()),
				zap.Float64("failure_rate", m.FailureRate()),
			}
			if e.NewState == circuitbreaker.OpenState {
				logger.Warn("circuit breaker opened", append(fields, zap.Duration("open_delay", time.Duration(cfg.OpenDelay)))...)
				return
			}
			logger.Info("circuit breaker state changed", fields...)
		}).
		Build()
	return b
}

// Destruct removes the breaker from the registry when the last transport
// using it is cleaned up.
func (b *breaker) Destruct() error {
	registry.remove(b)
	return nil
}

// blocking reports whether the breaker refuses attempts right now: open and
// still within its delay. An open breaker whose delay has passed lets the
// next attempt through as a probe, so it is not blocking.
func (b *breaker) blocking() bool {
	return b.cb.IsOpen() && b.cb.RemainingDelay() > 0
}

// breakerRegistry indexes live breakers by upstream, for the selection
// policy, the degraded mode and the state gauge.
type breakerRegistry struct {
	mu         sync.RWMutex
	byUpstream map[string][]*breaker
	// open counts breakers in the open state, so that the selection policy
	// skips all lookups in the common case where none is.
	open atomic.Int64
	seq  atomic.Uint64
}

var registry = &breakerRegistry{byUpstream: map[string][]*breaker{}}

func (r *breakerRegistry) add(b *breaker) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byUpstream[b.upstream] = append(r.byUpstream[b.upstream], b)
}

func (r *breakerRegistry) remove(b *breaker) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.byUpstream[b.upstream]
	for i, x := range list {
		if x == b {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(r.byUpstream, b.upstream)
	} else {
		r.byUpstream[b.upstream] = list
	}
	if b.cb.IsOpen() {
		r.open.Add(-1)
	}
}

func (r *breakerRegistry) transition(from, to circuitbreaker.State) {
	if to == circuitbreaker.OpenState {
		r.open.Add(1)
	}
	if from == circuitbreaker.OpenState {
		r.open.Add(-1)
	}
}

// blocking reports whether a breaker of upstream refuses attempts.
func (r *breakerRegistry) blocking(upstream string) bool {
	if r.open.Load() == 0 {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, b := range r.byUpstream[upstream] {
		if b.blocking() {
			return true
		}
	}
	return false
}

// upstreams lists the upstreams that have a breaker of configuration key.
func (r *breakerRegistry) upstreams(key string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for up, list := range r.byUpstream {
		for _, b := range list {
			if b.cfgKey == key {
				out = append(out, up)
				break
			}
		}
	}
	return out
}

// current returns, per upstream, the newest breaker.
func (r *breakerRegistry) current() []*breaker {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*breaker, 0, len(r.byUpstream))
	for _, list := range r.byUpstream {
		newest := list[0]
		for _, b := range list[1:] {
			if b.seq > newest.seq {
				newest = b
			}
		}
		out = append(out, newest)
	}
	return out
}

// breakerSet is the breakers one transport uses, created on first use of
// each upstream and released together at Cleanup.
type breakerSet struct {
	cfg    BreakerConfig
	logger *zap.Logger

	mu   sync.RWMutex
	byUp map[string]*breaker
}

// newBreakerSet returns the breakers of a transport. It adopts the live
// breakers of the same configuration at once: breakers are created on a
// transport's first request to an upstream, so without this a reload would
// drop them (the old transport releases them before the new one asks).
func newBreakerSet(cfg BreakerConfig, logger *zap.Logger) (*breakerSet, error) {
	s := &breakerSet{cfg: cfg, logger: logger, byUp: map[string]*breaker{}}
	for _, up := range registry.upstreams(cfg.key()) {
		if _, err := s.get(up); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// get returns the breaker of upstream, taking a pool reference the first
// time this set sees it.
func (s *breakerSet) get(upstream string) (*breaker, error) {
	s.mu.RLock()
	b, ok := s.byUp[upstream]
	s.mu.RUnlock()
	if ok {
		return b, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.byUp[upstream]; ok {
		return b, nil
	}
	v, _, err := breakerPool.LoadOrNew(poolKey(s.cfg, upstream), func() (caddy.Destructor, error) {
		b := newBreaker(s.cfg, upstream, s.logger)
		registry.add(b)
		return b, nil
	})
	if err != nil {
		return nil, fmt.Errorf("circuit breaker for %s: %w", upstream, err)
	}
	b = v.(*breaker)
	s.byUp[upstream] = b
	return b, nil
}

// allBlocking reports whether this set has breakers and every one of them
// refuses attempts: the upstreams behind this transport are all down.
func (s *breakerSet) allBlocking() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.byUp) == 0 {
		return false
	}
	for _, b := range s.byUp {
		if !b.blocking() {
			return false
		}
	}
	return true
}

// release drops this set's references; breakers no transport uses any more
// are destroyed.
func (s *breakerSet) release() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var firstErr error
	for up := range s.byUp {
		if _, err := breakerPool.Delete(poolKey(s.cfg, up)); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	clear(s.byUp)
	return firstErr
}
