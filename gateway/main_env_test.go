package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"

	"github.com/lexiscore/gateway/internal/testkit"
)

func TestNameTheService(t *testing.T) {
	cases := []struct {
		name, serviceName, resourceAttrs, want string
	}{
		{name: "nothing set", want: "lexiscore-gateway"},
		{name: "OTEL_SERVICE_NAME wins", serviceName: "edge-eu", want: "edge-eu"},
		{name: "service.name in the resource attributes wins", resourceAttrs: "deployment.environment=prod,service.name=edge", want: ""},
		{name: "other resource attributes", resourceAttrs: "deployment.environment=prod", want: "lexiscore-gateway"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_SERVICE_NAME", tc.serviceName)
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", tc.resourceAttrs)
			nameTheService()
			if got := os.Getenv("OTEL_SERVICE_NAME"); got != tc.want {
				t.Errorf("OTEL_SERVICE_NAME = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestGCPercentFor(t *testing.T) {
	cases := []struct {
		scanned uint64
		want    int
	}{
		{scanned: 0, want: 400},
		{scanned: 8 << 20, want: 400},  // a few connections: the heap may grow by 8 times
		{scanned: 16 << 20, want: 400}, // exactly the ceiling
		{scanned: 32 << 20, want: 200}, // +64 MiB
		{scanned: 64 << 20, want: 100}, // +64 MiB, Go's default
		{scanned: 80 << 20, want: 80},  // +64 MiB: a thousand connections
		{scanned: 128 << 20, want: 50}, // +64 MiB, the floor
		{scanned: 512 << 20, want: 50}, // never below half Go's default
	}
	for _, tc := range cases {
		if got := gcPercentFor(tc.scanned); got != tc.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", tc.scanned>>20, got, tc.want)
		}
	}
}

// gcPercent reads GOGC as the runtime applies it.
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

func TestGCForAProxy(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, gogc := range []string{"50", "off"} {
		t.Run("GOGC="+gogc+": left to the runtime", func(t *testing.T) {
			t.Setenv("GOGC", gogc)
			debug.SetGCPercent(123) // stands for what the runtime took from GOGC
			gcForAProxy()
			runtime.GC()
			if got := gcPercent(); got != 123 {
				t.Errorf("GC percent %d, want 123", got)
			}
		})
	}
	// Last: from here on, every collection of this test process retunes GOGC.
	t.Run("GOGC unset: the headroom follows the live heap", func(t *testing.T) {
		t.Setenv("GOGC", "")
		os.Unsetenv("GOGC")
		debug.SetGCPercent(123)
		gcForAProxy()
		if got := gcPercent(); got != gcMaxPercent {
			t.Errorf("GC percent at start %d, want %d", got, gcMaxPercent)
		}
		live := make([]byte, 2*gcHeadroom)
		for i := range live {
			live[i] = 1
		}
		testkit.Eventually(t, "GOGC 50 with a live heap twice the headroom", func() error {
			runtime.GC()
			if got := gcPercent(); got != gcMinPercent {
				return fmt.Errorf("GC percent %d with %d MiB live", got, len(live)>>20)
			}
			return nil
		})
		runtime.KeepAlive(live)
		live = nil
		testkit.Eventually(t, "GOGC 400 again once the heap is small", func() error {
			runtime.GC()
			if got := gcPercent(); got != gcMaxPercent {
				return fmt.Errorf("GC percent %d", got)
			}
			return nil
		})

		// Goroutine stacks, a thousand connections' worth, with a small
		// heap: the runtime applies GOGC to them as well.
		release := make(chan struct{})
		var parked sync.WaitGroup
		for range 64 {
			parked.Add(1)
			go deepStack(1<<20, &parked, release)
		}
		parked.Wait()
		testkit.Eventually(t, "GOGC at most 100 with stacks as large as the headroom", func() error {
			runtime.GC()
			if got := gcPercent(); got > 100 {
				return fmt.Errorf("GC percent %d with 64 MiB of stacks", got)
			}
			return nil
		})
		close(release)
	})
}

// deepStack uses about n bytes of its goroutine's stack, then waits for
// release.
func deepStack(n int, parked *sync.WaitGroup, release <-chan struct{}) {
	var frame [4096]byte
	frame[0] = byte(n)
	if n > len(frame) {
		deepStack(n-len(frame), parked, release)
	} else {
		parked.Done()
		<-release
	}
	runtime.KeepAlive(&frame)
}
