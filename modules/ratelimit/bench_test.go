package ratelimit

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/lexiscore/gateway/internal/redistest"
)

// BenchmarkRateLimit measures the handler as Caddy calls it, with requests
// of 256 users per goroutine from 8×GOMAXPROCS goroutines (many requests in
// flight, as in a server; ns/op is the inverse of throughput), against a
// handler that only calls the next one. Limits are high enough that every
// request is allowed, so each one costs two store calls (burst and
// sustained), the headers, and the span.
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
		run(b, benchHandler(b, &StoreConfig{URL: srv.URL()}))
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
