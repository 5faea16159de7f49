package ratelimit

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/redis/go-redis/v9"

	"github.com/lexiscore/gateway/internal/testkit/redistest"
)

// BenchmarkRateLimit measures the handler as Caddy calls it, with requests
// of 256 users per goroutine from 8×GOMAXPROCS goroutines (many requests in
// flight, as in a server; ns/op is the inverse of throughput), against a
// handler that only calls the next one. Limits are high enough that every
// request is allowed, so each one counts two policies (burst and
// sustained), and sets the headers and the span.
//
// Wall time per op mostly measures waiting on Redis; what a request costs
// the machine is reported as cpu-ns/op (this process, user+system) and, for
// Redis, redis-cpu-ns/op (the server's own CPU, from INFO).
//
//	go test -run '^$' -bench BenchmarkRateLimit -benchmem ./modules/ratelimit/
func BenchmarkRateLimit(b *testing.B) {
	b.Run("noop", func(b *testing.B) {
		run(b, noop{})
	})
	b.Run("memory", func(b *testing.B) {
		run(b, benchHandler(b, nil))
	})
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		h := benchHandler(b, &StoreConfig{URL: srv.URL()})
		redisCPU := srv.Client(b)
		before := redisCPUSeconds(b, redisCPU)
		run(b, h)
		b.ReportMetric((redisCPUSeconds(b, redisCPU)-before)*1e9/float64(b.N), "redis-cpu-ns/op")
	})
}

func benchHandler(b *testing.B, store *StoreConfig) *RateLimit {
	b.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: b.Context()})
	b.Cleanup(cancel)
	h := &RateLimit{
		Key: "{http.request.header.X-User}",
		Policies: []PolicyConfig{
			{Name: "bench_burst", Rate: "1000000000/s"},
			{Name: "bench_sustained", Rate: "1000000000/m"},
		},
		Store: store,
	}
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Cleanup() })
	return h
}

func run(b *testing.B, h caddyhttp.MiddlewareHandler) {
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	b.ReportAllocs()
	b.SetParallelism(8) // many requests in flight, as in a server
	cpu := processCPU(b)
	defer func() { b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op") }()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{header: http.Header{}}
		reqs := make([]*http.Request, 256)
		for i := range reqs {
			r := httptest.NewRequest(http.MethodGet, "/v1/scores", nil)
			r.Header.Set("X-User", fmt.Sprintf("user-%p-%d", w, i))
			reqs[i] = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, nil)
		}
		for i := 0; pb.Next(); i++ {
			if err := h.ServeHTTP(w, reqs[i%len(reqs)], next); err != nil || w.status != http.StatusOK {
				b.Errorf("status %d, error %v", w.status, err)
				return
			}
		}
	})
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPUSeconds is the CPU time the Redis server has used, user and
// system, from INFO cpu.
func redisCPUSeconds(b *testing.B, c *redis.Client) float64 {
	info, err := c.Info(b.Context(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	total := 0.0
	for line := range strings.Lines(info) {
		name, value, _ := strings.Cut(strings.TrimSpace(line), ":")
		if name == "used_cpu_sys" || name == "used_cpu_user" {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				b.Fatalf("INFO cpu: %s: %v", line, err)
			}
			total += v
		}
	}
	return total
}

// noop only calls the next handler: the cost of being a handler at all.
type noop struct{}

func (noop) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}

type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
