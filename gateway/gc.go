package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// The garbage collector's target when GOGC is not set. A proxy's heap is
// mostly short-lived request garbage: letting it grow to several times what
// is live saves CPU on every request (fewer collections), but at a fixed GOGC
// the extra memory grows with the live heap, i.e. with concurrency (GOGC 400
// cost 150 MiB more than Go's default at 1000 connections, bench/README.md).
// So the headroom is bounded instead: after each collection GOGC is set so
// that the heap may grow by gcHeadroom over what is live, within
// [gcMinPercent, gcMaxPercent]. A small live heap (a few dozen connections)
// gets GOGC 400; a thousand connections' (50-60 MiB live, 15-25 MiB of
// stacks) get about 90, which kept the peak within 11 MiB of stock Caddy's
// (Go's default: 31-48 MiB over) for 10% more collections (bench/README.md);
// the floor, half Go's default, bounds that price for a very large live heap.
// The runtime applies GOGC to the goroutine stacks and globals as well as to
// the live heap (the heap goal is live + (live + stacks + globals) × GOGC/100),
// and at a thousand connections the stacks are as large as the live heap
// (about 50 MiB each, bench/README.md): they count in the headroom too.
// Caddy's `run` still sets GOMEMLIMIT from the cgroup's memory limit (or the
// machine's memory) unless GOMEMLIMIT is set, and the collector runs as often
// as it must to stay under that.
const (
	gcHeadroom   = 64 << 20
	gcMinPercent = 50
	gcMaxPercent = 400
)

// gcForAProxy bounds the collector's headroom (gcPercentFor) unless the
// standard GOGC variable says otherwise.
func gcForAProxy() {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(gcMaxPercent)
	scanned := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"},
	}
	afterEachGC(func() {
		metrics.Read(scanned)
		var roots uint64
		for _, s := range scanned {
			if s.Value.Kind() == metrics.KindUint64 {
				roots += s.Value.Uint64()
			}
		}
		debug.SetGCPercent(gcPercentFor(roots))
	})
}

// gcPercentFor is the GOGC that lets the heap grow by gcHeadroom when the
// runtime applies it to scanned bytes (live heap, stacks and globals), within
// [gcMinPercent, gcMaxPercent].
func gcPercentFor(scanned uint64) int {
	if scanned == 0 {
		return gcMaxPercent
	}
	return int(min(max(gcHeadroom*100/scanned, gcMinPercent), gcMaxPercent))
}

// gcSentinel is garbage whose finalizer marks the end of a collection; 64
// bytes, so that it is not batched with other small objects by the tiny
// allocator, whose finalizers may run late or never.
type gcSentinel [64]byte

// afterEachGC calls f after every garbage collection, on the runtime's
// finalizer goroutine, for as long as the process runs. A finalizer rather
// than a cleanup (runtime.AddCleanup): the scheduler runs the finalizer
// goroutine next on its processor, while cleanup goroutines wait in the
// global run queue behind every goroutine the network poller readied. At a
// thousand connections that wait lasted whole collections, and the GOGC of a
// small heap applied to a large one (bench/README.md).
func afterEachGC(f func()) {
	runtime.SetFinalizer(new(gcSentinel), func(*gcSentinel) {
		f()
		afterEachGC(f)
	})
}
