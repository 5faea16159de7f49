// Package testkit is what every test of the gateway shares: polling with a
// generous deadline instead of sleeping, a fake clock (code that reads the
// time takes a now func() time.Time; tests pass Clock.Now), metric reading
// through prometheus/testutil, and YAML fixtures. Its sub-packages are the harnesses:
// a real Caddy in the test process (caddytest), a real Redis (redistest) and
// the PromQL checks of rules and dashboards (promcheck). Nothing here ships.
package testkit

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"
)

// Wait bounds every Eventually: far above what any condition needs on an idle
// machine, so that a loaded 2-core CI runner fails only what is really broken.
const Wait = 30 * time.Second

// pollEvery is how often Eventually looks again.
const pollEvery = 10 * time.Millisecond

// Eventually polls cond until it holds (true, or a nil error), failing the
// test with what, and the last error if any, when it still does not after
// Wait.
func Eventually[C func() bool | func() error](t testing.TB, what string, cond C) {
	t.Helper()
	EventuallyWithin(t, Wait, what, cond)
}

// EventuallyWithin is Eventually with a wait of its own, for conditions
// that take longer than Wait by nature (a Redis cluster forming, a
// Sentinel failover).
func EventuallyWithin[C func() bool | func() error](t testing.TB, wait time.Duration, what string, cond C) {
	t.Helper()
	check := func() error {
		switch c := any(cond).(type) {
		case func() bool:
			if !c() {
				return errors.New("the condition does not hold")
			}
			return nil
		case func() error:
			return c()
		}
		return nil
	}
	deadline := time.Now().Add(wait)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", wait, what, err)
		}
		time.Sleep(pollEvery)
	}
}

// FreeAddr returns 127.0.0.1:<port> for a port that was free a moment ago.
// The port is drawn below the kernel's ephemeral range, which the kernel
// also hands out as the source port of outgoing connections: a test that
// stops a server and starts it again on the same address (Redis down, then
// back) would otherwise find it taken by any connection on the machine,
// such as another test run's.
func FreeAddr(t testing.TB) string {
	t.Helper()
	low, high := 10000, ephemeralLow()-1
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", low+rand.IntN(high-low+1))
		if l, err := net.Listen("tcp", addr); err == nil {
			_ = l.Close()
			return addr
		}
	}
	t.Fatalf("no free port in %d-%d after 100 tries", low, high)
	return ""
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read, the usual default).
func ephemeralLow() int {
	var low, high int
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	if n, _ := fmt.Sscan(string(b), &low, &high); n != 2 || low <= 11000 {
		return 32768
	}
	return low
}

// Epoch is where fake clocks start unless a test needs another instant.
var Epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Clock is a fake clock, safe for concurrent use, that stands still until
// Advance: module tests drive it instead of sleeping.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a fake clock showing start.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Value reads a collector holding exactly one counter or gauge, such as a
// vector's child (testutil.ToFloat64).
func Value(c prometheus.Collector) float64 {
	return testutil.ToFloat64(c)
}

// Series reads collector c as a scrape does (registered alone in a registry)
// and returns the value of its counter or gauge series called name (any name
// when empty) whose labels include labels, and whether there is one: for
// collectors that report several series, where Value needs exactly one, and
// for asking whether a series exists at all.
func Series(t testing.TB, c prometheus.Collector, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("registering a collector to read it: %v", err)
	}
	return Gathered(t, reg, name, labels)
}

// Gathered is Series for what g gathers, such as the registry a module
// registered its metrics into.
func Gathered(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, f := range families {
		if name != "" && f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			if m.Counter != nil {
				return m.Counter.GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	found := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			found++
		}
	}
	return found == len(want)
}

// HistogramCount is the number of observations of a histogram's child.
func HistogramCount(t testing.TB, o prometheus.Observer) uint64 {
	t.Helper()
	var m dto.Metric
	if err := o.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// ReadYAML decodes the YAML file at path into v.
func ReadYAML(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
