package profiling

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/pyroscope-go"

	"github.com/lexiscore/gateway/internal/testkit"
)

// recorder is a fake pyroscope-go: it records what the manager does to the
// profilers it starts.
type recorder struct {
	mu       sync.Mutex
	events   []string
	starts   int
	startErr error
	// flushGate, when set, holds every Flush until it is closed.
	flushGate chan struct{}
	logged    []string
}

func (r *recorder) record(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) Events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) start(cfg pyroscope.Config) (profiler, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.startErr != nil {
		return nil, r.startErr
	}
	r.starts++
	name := fmt.Sprintf("%s#%d", cfg.ApplicationName, r.starts)
	r.events = append(r.events, "start "+name)
	return &fakeProfiler{name: name, r: r}, nil
}

func (r *recorder) manager(stopTimeout time.Duration) *manager {
	return &manager{start: r.start, stopTimeout: stopTimeout, log: func(msg string, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.logged = append(r.logged, msg+": "+err.Error())
	}}
}

type fakeProfiler struct {
	name    string
	r       *recorder
	stopped bool
}

func (p *fakeProfiler) Flush(wait bool) {
	if gate := p.r.flushGate; gate != nil {
		<-gate
	}
	p.r.record(fmt.Sprintf("flush %s wait=%v", p.name, wait))
}

// Stop panics when called twice, as pyroscope-go's does.
func (p *fakeProfiler) Stop() error {
	if p.stopped {
		panic("Stop called twice")
	}
	p.stopped = true
	p.r.record("stop " + p.name)
	return nil
}

func cfg(name string) pyroscope.Config { return pyroscope.Config{ApplicationName: name} }

func mustAcquire(t *testing.T, m *manager, key string) func() {
	t.Helper()
	release, err := m.acquire(key, cfg(key))
	if err != nil {
		t.Fatal(err)
	}
	return release
}

func wantEvents(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	if got := r.Events(); !slices.Equal(got, want) {
		t.Fatalf("events:\n  got  %q\n  want %q", got, want)
	}
}

func TestManager(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, m *manager)
		want []string
	}{
		{
			name: "a reload with the same settings keeps the profiler; the last release flushes then stops it",
			run: func(t *testing.T, m *manager) {
				old := mustAcquire(t, m, "a")
				reloaded := mustAcquire(t, m, "a") // the new config starts before the old one stops
				old()
				if !m.running() {
					t.Fatal("the profiler stopped when the old configuration did")
				}
				reloaded()
			},
			want: []string{"start a#1", "flush a#1 wait=true", "stop a#1"},
		},
		{
			name: "changed settings stop the old profiler before the new one starts",
			run: func(t *testing.T, m *manager) {
				old := mustAcquire(t, m, "a")
				reloaded := mustAcquire(t, m, "b")
				old() // superseded: must not stop b
				if !m.running() {
					t.Fatal("the old configuration's release stopped the new profiler")
				}
				reloaded()
			},
			want: []string{"start a#1", "flush a#1 wait=true", "stop a#1", "start b#2", "flush b#2 wait=true", "stop b#2"},
		},
		{
			name: "releasing twice stops once",
			run: func(t *testing.T, m *manager) {
				release := mustAcquire(t, m, "a")
				release()
				release()
			},
			want: []string{"start a#1", "flush a#1 wait=true", "stop a#1"},
		},
		{
			name: "a double release does not steal another holder's share",
			run: func(t *testing.T, m *manager) {
				first := mustAcquire(t, m, "a")
				second := mustAcquire(t, m, "a")
				first()
				first()
				if !m.running() {
					t.Fatal("a repeated release stopped a profiler still held")
				}
				second()
			},
			want: []string{"start a#1", "flush a#1 wait=true", "stop a#1"},
		},
		{
			name: "after a stop, the next acquire starts a fresh profiler",
			run: func(t *testing.T, m *manager) {
				mustAcquire(t, m, "a")()
				mustAcquire(t, m, "a")()
			},
			want: []string{"start a#1", "flush a#1 wait=true", "stop a#1", "start a#2", "flush a#2 wait=true", "stop a#2"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			m := r.manager(time.Minute)
			tc.run(t, m)
			wantEvents(t, r, tc.want...)
			if m.running() {
				t.Fatal("still running after every holder released")
			}
		})
	}
}

func TestManagerStartError(t *testing.T) {
	r := &recorder{startErr: errors.New("bad address")}
	m := r.manager(time.Minute)
	if _, err := m.acquire("a", cfg("a")); err == nil || !strings.Contains(err.Error(), "bad address") {
		t.Fatalf("acquire: %v, want the start error", err)
	}
	if m.running() {
		t.Fatal("running after a failed start")
	}
	r.startErr = nil
	mustAcquire(t, m, "a")()
	wantEvents(t, r, "start a#1", "flush a#1 wait=true", "stop a#1")
}

// A profiling server that does not answer must not hold a shutdown for
// longer than stopTimeout.
func TestManagerStopTimeout(t *testing.T) {
	r := &recorder{flushGate: make(chan struct{})}
	m := r.manager(50 * time.Millisecond)
	release := mustAcquire(t, m, "a")
	returned := make(chan struct{})
	go func() { release(); close(returned) }()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("release blocked on a flush that never ends")
	}
	r.mu.Lock()
	logged := slices.Clone(r.logged)
	r.mu.Unlock()
	if len(logged) != 1 || !strings.Contains(logged[0], "not done after 50ms") {
		t.Fatalf("logged %q, want the timeout", logged)
	}
	close(r.flushGate)
	testkit.Eventually(t, "the profiler to be stopped", func() error {
		if events := r.Events(); !slices.Contains(events, "stop a#1") {
			return fmt.Errorf("events %q", events)
		}
		return nil
	})
}
