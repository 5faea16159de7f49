package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lexiscore/gateway/internal/testkit"
)

// TestTraceReachesBackend sends a request inside a client trace and finds the
// gateway's server span and the backend's span in that trace, received by a
// real OTLP receiver over each protocol the OTel autoexport offers (the
// production collector's usual one, gRPC on :4317, included), with the
// backend's span a child of a gateway span; the access log line of the
// request carries the same trace and request IDs.
func TestTraceReachesBackend(t *testing.T) {
	for _, tc := range []struct {
		protocol string
		start    func(testing.TB) *OTLPReceiver
	}{
		{"http/protobuf", StartOTLPReceiver},
		{"grpc", StartOTLPGRPCReceiver},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			rcv := tc.start(t)
			sampled := map[string]string{"OTEL_TRACES_SAMPLER": "always_on"}
			be := StartBackend(t, bins, mergeEnv(rcv.Env("scoring"), sampled))
			gw := StartGateway(t, bins, []string{be.Addr}, mergeEnv(rcv.Env("gateway"), sampled))
			checkTraceReachesBackend(t, rcv, gw)
		})
	}
}

// checkTraceReachesBackend sends one traced request through gw and checks
// its spans from the gateway and the backend arrived at rcv.
func checkTraceReachesBackend(t *testing.T, rcv *OTLPReceiver, gw *Gateway) {
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	h := gw.Bearer(t, "u1", "free")
	h.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	h.Set("X-Request-ID", "trace-test-1")
	if resp := gw.Do(t, http.MethodGet, "/v1/users/u1/scores", nil, h); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}

	// Spans arrive in batches from two processes: wait until the backend's
	// span and its parent in the gateway have both arrived.
	var backend, parent Span
	testkit.Eventually(t, "the backend span and its gateway parent", func() error {
		spans := rcv.Trace(traceID)
		byID := map[string]Span{}
		for _, s := range spans {
			byID[s.SpanID] = s
		}
		for _, s := range spans {
			if s.Service != "scoring" {
				continue
			}
			p, ok := byID[s.ParentSpanID]
			if !ok || p.Service != "gateway" {
				return fmt.Errorf("backend span %s: parent %s not received from the gateway yet", s.Name, s.ParentSpanID)
			}
			backend, parent = s, p
			return nil
		}
		return fmt.Errorf("no backend span yet among %d spans", len(spans))
	})
	if backend.Name != "GET /v1/users/{id}/scores" {
		t.Errorf("backend span name %q", backend.Name)
	}
	t.Logf("backend span's parent: gateway span %q", parent.Name)
	testkit.Eventually(t, "the gateway server span", func() error {
		for _, s := range rcv.Trace(traceID) {
			if s.Service == "gateway" && s.ParentSpanID == "00f067aa0ba902b7" {
				if s.Kind != tracepb.Span_SPAN_KIND_SERVER {
					return fmt.Errorf("the client's child span %q is of kind %v, want server", s.Name, s.Kind)
				}
				if got := s.Attributes["http.request.header.x-request-id"]; got != "trace-test-1" {
					return fmt.Errorf("server span request ID attribute %q", got)
				}
				return nil
			}
		}
		return fmt.Errorf("no gateway span is a child of the client's span")
	})

	entry := accessLogEntry(t, gw, "trace-test-1")
	if entry["traceID"] != traceID {
		t.Errorf("access log traceID %v, want %s", entry["traceID"], traceID)
	}
}

// TestTraceIDsWithoutExporter: with no exporter configured (the default, where
// trace_context does no span work), a request still continues the client's
// trace, or starts one: its IDs are in the access log, and the backend gets a
// traceparent in that trace whose parent is the span the log names.
func TestTraceIDsWithoutExporter(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, nil)
	const clientTrace = "0af7651916cd43dd8448eb211c80319c"
	for _, tc := range []struct{ requestID, traceparent string }{
		{"no-exporter-continued", "00-" + clientTrace + "-00f067aa0ba902b7-01"},
		{"no-exporter-started", ""},
	} {
		h := gw.Bearer(t, "u1", "free")
		h.Set("X-Request-ID", tc.requestID)
		if tc.traceparent != "" {
			h.Set("traceparent", tc.traceparent)
		}
		if resp := gw.Do(t, http.MethodGet, "/v1/users/u1/scores", nil, h); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", tc.requestID, resp.StatusCode)
		}
		var seen []struct {
			Headers map[string][]string `json:"headers"`
		}
		be.Admin(t, "/requests", &seen)
		var sent []string
		for _, r := range seen {
			if id := r.Headers["X-Request-Id"]; len(id) == 1 && id[0] == tc.requestID {
				sent = r.Headers["Traceparent"]
			}
		}
		parts := strings.Split(strings.Join(sent, ","), "-")
		if len(sent) != 1 || len(parts) != 4 || len(parts[1]) != 32 || len(parts[2]) != 16 {
			t.Fatalf("%s: the backend received traceparent %v", tc.requestID, sent)
		}
		if tc.traceparent != "" && parts[1] != clientTrace {
			t.Errorf("%s: the backend received trace %s, want the client's %s", tc.requestID, parts[1], clientTrace)
		}
		entry := accessLogEntry(t, gw, tc.requestID)
		if entry["traceID"] != parts[1] || entry["spanID"] != parts[2] {
			t.Errorf("%s: access log trace %v span %v, the backend received %s", tc.requestID, entry["traceID"], entry["spanID"], sent[0])
		}
	}
}

// accessLogEntry returns the gateway's access log line for requestID.
func accessLogEntry(t *testing.T, gw *Gateway, requestID string) map[string]any {
	t.Helper()
	return logEntry(t, gw, "handled request", requestID)
}

// logEntry waits for the JSON log line with message msg and requestID in the
// gateway's output: logs are written in batches, so it may take a flush
// interval to appear.
func logEntry(t *testing.T, gw *Gateway, msg, requestID string) map[string]any {
	t.Helper()
	var found map[string]any
	testkit.Eventually(t, msg+" log line", func() error {
		sc := bufio.NewScanner(strings.NewReader(gw.Output()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil || m["msg"] != msg {
				continue
			}
			if m["request_id"] == requestID {
				found = m
				return nil
			}
		}
		return fmt.Errorf("no %q log line with request_id %s", msg, requestID)
	})
	return found
}

// TestRetriedRequestSpanTree finds, among reads sent while half the backend's
// answers are 503, one that the gateway retried, and checks its whole trace:
// the gateway's server span with the authenticate and rate_limit spans under
// it, a failed first attempt and a successful retry as client spans, and the
// backend's span a child of the attempt that reached it.
func TestRetriedRequestSpanTree(t *testing.T) {
	rcv := StartOTLPReceiver(t)
	be := StartBackend(t, bins, rcv.Env("scoring"))
	gw := StartGateway(t, bins, []string{be.Addr}, mergeEnv(rcv.Env("gateway"), map[string]string{
		// Keep the breaker closed: this test is about retries.
		"GATEWAY_BREAKER_MIN_REQUESTS": "1000",
	}))
	be.SetFaults(t, map[string]any{"error_rate": 0.5, "error_status": 503})

	var traceIDs []string
	for i := 0; i < 20; i++ {
		traceID := fmt.Sprintf("%032x", i+1)
		user := fmt.Sprintf("span-user-%d", i)
		h := gw.Bearer(t, user, "free")
		h.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
		if resp := gw.Do(t, http.MethodGet, "/v1/users/"+user+"/scores", nil, h); resp.StatusCode == http.StatusOK {
			traceIDs = append(traceIDs, traceID)
		}
	}

	testkit.Eventually(t, "a retried request's complete trace", func() error {
		for _, id := range traceIDs {
			if err := checkRetriedTrace(rcv.Trace(id)); err == nil {
				return nil
			}
		}
		return fmt.Errorf("none of %d successful reads has a complete retried trace yet", len(traceIDs))
	})
}

// checkRetriedTrace says what a retried request's trace lacks, or nil.
func checkRetriedTrace(spans []Span) error {
	byID := map[string]Span{}
	var server Span
	for _, s := range spans {
		byID[s.SpanID] = s
		if s.Service == "gateway" && s.ParentSpanID == "00f067aa0ba902b7" {
			server = s
		}
	}
	if server.SpanID == "" {
		return fmt.Errorf("no server span")
	}
	var sawAuth, sawLimit bool
	var attempts []Span
	for _, s := range spans {
		if s.Service != "gateway" || s.TraceID != server.TraceID {
			continue
		}
		switch {
		case s.Name == "authenticate" && s.ParentSpanID == server.SpanID:
			sawAuth = true
		case s.Name == "rate_limit":
			sawLimit = true
		case s.Kind == tracepb.Span_SPAN_KIND_CLIENT: // one upstream attempt
			attempts = append(attempts, s)
		}
	}
	if !sawAuth || !sawLimit {
		return fmt.Errorf("authenticate span %v, rate_limit span %v", sawAuth, sawLimit)
	}
	if len(attempts) < 2 {
		return fmt.Errorf("%d attempts: not retried", len(attempts))
	}
	var failed, retriedOK bool
	for _, a := range attempts {
		if a.Attributes["http.response.status_code"] == "503" && a.StatusError {
			failed = true
		}
		if a.Attributes["http.request.resend_count"] != "" && a.Attributes["http.response.status_code"] == "200" {
			retriedOK = true
		}
	}
	if !failed || !retriedOK {
		return fmt.Errorf("attempts %+v: want a failed 503 and a successful resend", attempts)
	}
	for _, s := range spans {
		if s.Service == "scoring" {
			if p, ok := byID[s.ParentSpanID]; !ok || p.Kind != tracepb.Span_SPAN_KIND_CLIENT {
				return fmt.Errorf("backend span %s is not under an attempt span", s.Name)
			}
		}
	}
	return nil
}

func mergeEnv(maps ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range maps {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// TestDurationHistogramsCarryTraceExemplars: a sampled request's trace ID is
// the exemplar of the upstream latency bucket it landed in (OpenMetrics).
func TestDurationHistogramsCarryTraceExemplars(t *testing.T) {
	rcv := StartOTLPReceiver(t)
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, rcv.Env("gateway"))

	const traceID = "5b8aa5a2d2c872e8321cf37308d69df2"
	h := gw.Bearer(t, "u1", "free")
	h.Set("traceparent", "00-"+traceID+"-051581bf3cb55c13-01")
	if resp := gw.Do(t, http.MethodGet, "/v1/users/u1/scores", nil, h); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}

	req, _ := http.NewRequest(http.MethodGet, gw.MetricsURL, nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "gateway_upstream_duration_seconds_bucket{") &&
			strings.Contains(line, `# {trace_id="`+traceID+`"}`) {
			return
		}
	}
	t.Fatalf("no gateway_upstream_duration_seconds bucket has trace %s as its exemplar", traceID)
}
