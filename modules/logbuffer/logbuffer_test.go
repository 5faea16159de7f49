package logbuffer

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/lexiscore/gateway/internal/testkit"
)

// sink is a destination that records every write and can be made to block
// or fail.
type sink struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	closed bool
	err    error
	// entered, when set, receives once per write; release, when set, is
	// waited on before the write completes.
	entered chan struct{}
	release chan struct{}
}

func (s *sink) Write(p []byte) (int, error) {
	if s.entered != nil {
		s.entered <- struct{}{}
	}
	if s.release != nil {
		<-s.release
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	s.writes++
	return s.buf.Write(p)
}

func (s *sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *sink) state() (string, int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String(), s.writes, s.closed
}

func line(i int) []byte { return fmt.Appendf(nil, `{"n":%d,"pad":"xxxxxxxx"}`+"\n", i) }

func TestLinesWaitForTheIntervalOrTheSize(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cases := []struct {
		name      string
		interval  time.Duration
		flushSize int
		lines     int
		// held: nothing may reach the destination before Close.
		held bool
	}{
		{name: "below flush_size, long interval: held until close", interval: time.Hour, flushSize: 1 << 10, lines: 3, held: true},
		{name: "flush_size reached: written without the interval", interval: time.Hour, flushSize: 64, lines: 10},
		{name: "interval passed: written", interval: 10 * time.Millisecond, flushSize: 1 << 20, lines: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dest := &sink{}
			w := newWriter(dest, "test-"+tc.name, tc.interval, tc.flushSize, 1<<20)
			var want bytes.Buffer
			for i := range tc.lines {
				if _, err := w.Write(line(i)); err != nil {
					t.Fatal(err)
				}
				want.Write(line(i))
			}
			if tc.held {
				if got, _, _ := dest.state(); got != "" {
					t.Fatalf("written before the interval or the size: %q", got)
				}
			} else {
				testkit.Eventually(t, "a flush", func() error {
					if _, n, _ := dest.state(); n == 0 {
						return errors.New("nothing written yet")
					}
					return nil
				})
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got, writes, closed := dest.state()
			if got != want.String() || !closed {
				t.Fatalf("after close: closed=%v, got %q, want %q", closed, got, want.String())
			}
			if writes >= tc.lines {
				t.Errorf("%d lines took %d writes: not batched", tc.lines, writes)
			}
		})
	}
}

// A destination that stops taking writes costs at most max_buffer of memory;
// the lines beyond it are dropped and counted, and requests never block.
func TestFullBufferDropsAndCounts(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dest := &sink{entered: make(chan struct{}, 1), release: make(chan struct{})}
	const label = "stalled"
	l := line(0)
	w := newWriter(dest, label, time.Hour, len(l), 5*len(l))
	if _, err := w.Write(l); err != nil { // reaches flush_size: the flush starts and stalls
		t.Fatal(err)
	}
	<-dest.entered
	dest.entered = nil
	for i := 1; i <= 7; i++ { // five fit in max_buffer, two do not
		if _, err := w.Write(line(i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(droppedLines.WithLabelValues(label, "buffer_full")); got != 2 {
		t.Errorf("dropped lines = %v, want 2", got)
	}
	close(dest.release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, _ := dest.state()
	if n := strings.Count(got, "\n"); n != 6 {
		t.Errorf("destination got %d lines, want 6 (the first and the five that fit): %q", n, got)
	}
}

func TestWriteErrorsAreCounted(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const label = "refusing"
	dest := &sink{err: errors.New("no space left on device")}
	w := newWriter(dest, label, time.Hour, 1<<10, 1<<20)
	for i := range 3 {
		if _, err := w.Write(line(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(droppedLines.WithLabelValues(label, "write_error")); got != 3 {
		t.Errorf("write_error lines = %v, want 3", got)
	}
}

// Lines logged after Close (a request that finished after the config
// stopped) go straight to the destination instead of into a buffer nobody
// flushes.
func TestWritesAfterCloseGoThrough(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dest := &sink{}
	w := newWriter(dest, "after-close", time.Hour, 1<<10, 1<<20)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(line(1)); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := dest.state(); got != string(line(1)) {
		t.Errorf("destination got %q", got)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

// Many goroutines logging while batches are written: every line arrives
// whole, exactly once.
func TestConcurrentWritersLoseNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dest := &sink{}
	w := newWriter(dest, "concurrent", time.Millisecond, 256, 1<<24)
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if _, err := w.Write(line(g*each + i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, _ := dest.state()
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		if seen[l] {
			t.Fatalf("line twice: %s", l)
		}
		seen[l] = true
	}
	for i := range goroutines * each {
		if !seen[strings.TrimSuffix(string(line(i)), "\n")] {
			t.Fatalf("line %d missing", i)
		}
	}
}
