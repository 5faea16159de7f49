package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/e2e"
)

// TestTraceReachesBackend sends a request inside a client trace and finds the
// gateway's server span and the backend's span in that trace, received over
// real OTLP/HTTP, with the backend's span a child of a gateway span; the access
// log line of the request carries the same trace and request IDs.
func TestTraceReachesBackend(t *testing.T) {
	rcv := e2e.StartOTLPReceiver(t)
	be := e2e.StartBackend(t, bins, rcv.Env("scoring"))
	gw := e2e.StartGateway(t, bins, []string{be.Addr}, rcv.Env("gateway"))

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	h := gw.Bearer(t, "u1", "free")
	h.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	h.Set("X-Request-ID", "trace-test-1")
	if resp := gw.Do(t, http.MethodGet, "/v1/users/u1/scores", nil, h); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}

	// Spans arrive in batches from two processes: wait until the backend's
	// span and its parent in the gateway have both arrived.
	var backend, parent e2e.Span
	e2e.WaitFor(t, 15*time.Second, "the backend span and its gateway parent", func() error {
		spans := rcv.Trace(traceID)
		byID := map[string]e2e.Span{}
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
	e2e.WaitFor(t, 15*time.Second, "the gateway server span", func() error {
		for _, s := range rcv.Trace(traceID) {
			if s.Service == "gateway" && s.ParentSpanID == "00f067aa0ba902b7" {
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

// accessLogEntry returns the gateway's access log line for requestID.
func accessLogEntry(t *testing.T, gw *e2e.Gateway, requestID string) map[string]any {
	t.Helper()
	var found map[string]any
	e2e.WaitFor(t, 5*time.Second, "access log line", func() error {
		sc := bufio.NewScanner(strings.NewReader(gw.Output()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil || m["msg"] != "handled request" {
				continue
			}
			if m["request_id"] == requestID {
				found = m
				return nil
			}
		}
		return fmt.Errorf("no access log line with request_id %s", requestID)
	})
	return found
}
