package profiling

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/pyroscope-go"
)

// profiler is what the manager needs of *pyroscope.Profiler.
type profiler interface {
	// Flush uploads what was collected so far; with wait, it returns once
	// the uploads are done.
	Flush(wait bool)
	// Stop ends profiling. pyroscope-go panics when it is called twice, and
	// Flush hangs after it.
	Stop() error
}

// startPyroscope is the production startFunc.
func startPyroscope(cfg pyroscope.Config) (profiler, error) {
	return pyroscope.Start(cfg)
}

// manager owns the process's single profiler. pyroscope-go allows one per
// process (it takes over the runtime's CPU profiler), while Caddy runs two
// configurations side by side during a reload: the new one starts before
// the old one stops. The manager counts holders: a configuration that asks
// for the profiler already running shares it, and the profiler is flushed
// and stopped when its last holder lets go, which only happens when the
// process exits or a reload drops profiling.
type manager struct {
	start startFunc
	// stopTimeout bounds how long flushing and stopping may block a
	// shutdown, e.g. when the profiling server does not answer.
	stopTimeout time.Duration
	log         func(msg string, err error)

	mu      sync.Mutex
	current profiler
	key     string // identity of the running profiler's configuration
	gen     uint64 // incremented at each start; old holders' releases are ignored
	holders int
	active  atomic.Bool
}

type startFunc func(pyroscope.Config) (profiler, error)

// acquire makes sure a profiler with configuration cfg, identified by key,
// is running and returns the function that gives up this hold on it;
// calling that function more than once is harmless. A running profiler with
// another configuration is flushed and stopped first: there is never more
// than one.
func (m *manager) acquire(key string, cfg pyroscope.Config) (release func(), err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.current != nil && m.key == key {
		m.holders++
		return m.releaser(m.gen), nil
	}
	if m.current != nil {
		m.stopLocked()
	}
	p, err := m.start(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting the profiler: %w", err)
	}
	m.current, m.key, m.holders = p, key, 1
	m.gen++
	m.active.Store(true)
	return m.releaser(m.gen), nil
}

func (m *manager) releaser(gen uint64) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if gen != m.gen || m.current == nil {
				return // a profiler with another configuration replaced this one
			}
			if m.holders--; m.holders == 0 {
				m.stopLocked()
			}
		})
	}
}

// stopLocked flushes the profiler, waiting for the uploads, then stops it,
// giving up waiting after stopTimeout.
func (m *manager) stopLocked() {
	p := m.current
	m.current, m.key, m.holders = nil, "", 0
	m.active.Store(false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Flush(true)
		if err := p.Stop(); err != nil {
			m.log("stopping the profiler", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(m.stopTimeout):
		m.log("stopping the profiler", fmt.Errorf("not done after %v; continuing without waiting for the last uploads", m.stopTimeout))
	}
}

// running reports whether a profiler is running.
func (m *manager) running() bool { return m.active.Load() }
