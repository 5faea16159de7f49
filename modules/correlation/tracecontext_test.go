package correlation

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/tracing"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
)

// TestTraceContextWithoutExporter: with no span exported, every request still
// carries a trace: the client's continued, or a new one; its IDs in the access
// log, and a traceparent upstream whose parent is the span the log names.
func TestTraceContextWithoutExporter(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	var mu sync.Mutex
	upstreamSaw := map[string]string{} // X-Request-ID → traceparent
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		upstreamSaw[r.Header.Get("X-Request-ID")] = r.Header.Get("traceparent")
	}))
	defer upstream.Close()
	accessLog := filepath.Join(t.TempDir(), "access.log")
	in := caddytest.Start(t, "", `
http://127.0.0.1:{http_port} {
	request_id
	trace_context {
		span "{http.request.method}"
	}
	log {
		output file `+accessLog+`
		format json
	}
	header X-Trace-Var "{http.vars.trace_id}"
	reverse_proxy `+strings.TrimPrefix(upstream.URL, "http://")+`
}`)
	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	cases := []struct{ requestID, traceparent, wantTrace string }{
		{"continued", "00-" + clientTrace + "-00f067aa0ba902b7-01", clientTrace},
		{"started", "", ""},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(http.MethodGet, in.URL("/"), nil)
		req.Header.Set("X-Request-ID", tc.requestID)
		if tc.traceparent != "" {
			req.Header.Set("traceparent", tc.traceparent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", tc.requestID, resp.StatusCode)
		}
		mu.Lock()
		sent := upstreamSaw[tc.requestID]
		mu.Unlock()
		parts := strings.Split(sent, "-")
		if len(parts) != 4 || len(parts[1]) != 32 || len(parts[2]) != 16 {
			t.Fatalf("%s: upstream traceparent %q", tc.requestID, sent)
		}
		traceID, spanID := parts[1], parts[2]
		if tc.wantTrace != "" && traceID != tc.wantTrace {
			t.Errorf("%s: upstream trace %s, want the client's %s", tc.requestID, traceID, tc.wantTrace)
		}
		if spanID == "00f067aa0ba902b7" {
			t.Errorf("%s: upstream parent is the client's span, want the gateway's", tc.requestID)
		}
		if got := resp.Header.Get("X-Trace-Var"); got != traceID {
			t.Errorf("%s: {http.vars.trace_id} = %q, want %s", tc.requestID, got, traceID)
		}
		testkit.Eventually(t, tc.requestID+" access log line", func() error {
			for _, line := range caddytest.ReadJSONLines(t, accessLog) {
				if line["request_id"] != tc.requestID {
					continue
				}
				if line["traceID"] != traceID || line["spanID"] != spanID {
					return fmt.Errorf("logged trace %v span %v, upstream got %s", line["traceID"], line["spanID"], sent)
				}
				return nil
			}
			return fmt.Errorf("no line yet")
		})
	}
}

// BenchmarkTraceContext compares Caddy's tracing handler with trace_context,
// both with no span exported and none sampled (the gateway's default):
// go test -run '^$' -bench TraceContext -benchmem ./modules/correlation
func BenchmarkTraceContext(b *testing.B) {
	b.Setenv("OTEL_TRACES_EXPORTER", "none")
	b.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	handlers := []struct {
		name string
		h    caddyhttp.MiddlewareHandler
	}{
		// The benchmark's own request, context and recorder.
		{"baseline", passThrough{}},
		{"caddy_tracing", &tracing.Tracing{SpanName: "{http.request.method}"}},
		{"trace_context", &TraceContext{Tracing: tracing.Tracing{SpanName: "{http.request.method}"}}},
	}
	for _, hc := range handlers {
		b.Run(hc.name, func(b *testing.B) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			if p, ok := hc.h.(caddy.Provisioner); ok {
				if err := p.Provision(ctx); err != nil {
					b.Fatal(err)
				}
				defer p.(caddy.CleanerUpper).Cleanup()
			}
			next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodGet, "/v1/scores/sc_1", nil)
				r.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
				c := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
				c = context.WithValue(c, caddyhttp.VarsCtxKey, map[string]any{})
				c = context.WithValue(c, caddyhttp.ExtraLogFieldsCtxKey, new(caddyhttp.ExtraLogFields))
				if err := hc.h.ServeHTTP(httptest.NewRecorder(), r.WithContext(c), next); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type passThrough struct{}

func (passThrough) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}
