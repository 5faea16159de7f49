package resilience

import (
	"sync"
	"sync/atomic"
)

// degradedMode is the gateway-wide degraded mode. It is on when an operator
// switched it on through the admin API (admin.api.degraded), or
// automatically while every breaker of a transport marked
// degrade_when_all_open refuses attempts. Routes marked shed_when_degraded
// then answer 503 at once; the others keep being served (from the stale
// cache when their upstream fails).
//
// The operator's switch is process state, not configuration: it survives
// config reloads and is off after a restart.
type degradedMode struct {
	manual atomic.Bool

	mu      sync.RWMutex
	watched map[*breakerSet]struct{}
}

var degraded = &degradedMode{watched: map[*breakerSet]struct{}{}}

// active reports whether the gateway is degraded now.
func (d *degradedMode) active() bool {
	return d.manual.Load() || d.automatic()
}

// automatic reports whether some watched transport has all its breakers
// refusing attempts.
func (d *degradedMode) automatic() bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for s := range d.watched {
		if s.allBlocking() {
			return true
		}
	}
	return false
}

func (d *degradedMode) watch(s *breakerSet) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.watched[s] = struct{}{}
}

func (d *degradedMode) unwatch(s *breakerSet) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.watched, s)
}
