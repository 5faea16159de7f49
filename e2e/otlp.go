package e2e

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Span is one span received over OTLP, flattened for assertions.
type Span struct {
	Service      string
	Name         string
	TraceID      string
	SpanID       string
	ParentSpanID string
	Kind         tracepb.Span_SpanKind
	Attributes   map[string]string
	Events       []string
	StatusError  bool
}

// OTLPReceiver is a real OTLP trace endpoint, over OTLP/HTTP (protobuf
// encoding) or OTLP/gRPC, that keeps every span it is sent.
type OTLPReceiver struct {
	// URL is the value for OTEL_EXPORTER_OTLP_ENDPOINT, Protocol the one for
	// OTEL_EXPORTER_OTLP_PROTOCOL.
	URL, Protocol string
	mu            sync.Mutex
	spans         []Span
}

// StartOTLPReceiver serves OTLP/HTTP until the test ends.
func StartOTLPReceiver(t testing.TB) *OTLPReceiver {
	t.Helper()
	rcv := &OTLPReceiver{Protocol: "http/protobuf"}
	srv := httptest.NewServer(http.HandlerFunc(rcv.serveHTTP))
	t.Cleanup(srv.Close)
	rcv.URL = srv.URL
	return rcv
}

// StartOTLPGRPCReceiver serves OTLP/gRPC in plaintext until the test ends.
// Its URL has the http scheme, which is what tells the exporter not to use
// TLS (OTEL_EXPORTER_OTLP_INSECURE is not needed).
func StartOTLPGRPCReceiver(t testing.TB) *OTLPReceiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening for OTLP/gRPC: %v", err)
	}
	rcv := &OTLPReceiver{URL: "http://" + l.Addr().String(), Protocol: "grpc"}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, traceService{rcv: rcv})
	served := make(chan struct{})
	go func() { _ = srv.Serve(l); close(served) }()
	t.Cleanup(func() { srv.Stop(); <-served })
	return rcv
}

// Env is the environment that sends a process's traces here, batched quickly.
func (rcv *OTLPReceiver) Env(service string) map[string]string {
	return map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL": rcv.Protocol,
		"OTEL_TRACES_EXPORTER":        "otlp",
		"OTEL_BSP_SCHEDULE_DELAY":     "100",
		"OTEL_SERVICE_NAME":           service,
	}
}

func (rcv *OTLPReceiver) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rcv.add(&req)
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

// traceService is the OTLP/gRPC transport of an OTLPReceiver.
type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	rcv *OTLPReceiver
}

func (s traceService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.rcv.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// add keeps the spans of one export, whichever transport brought it.
func (rcv *OTLPReceiver) add(req *coltracepb.ExportTraceServiceRequest) {
	var got []Span
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				sp := Span{
					Service:      service,
					Name:         s.Name,
					TraceID:      hex.EncodeToString(s.TraceId),
					SpanID:       hex.EncodeToString(s.SpanId),
					ParentSpanID: hex.EncodeToString(s.ParentSpanId),
					Kind:         s.Kind,
					Attributes:   map[string]string{},
					StatusError:  s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
				}
				for _, kv := range s.Attributes {
					sp.Attributes[kv.Key] = anyValueString(kv.GetValue())
				}
				for _, ev := range s.Events {
					sp.Events = append(sp.Events, ev.Name)
				}
				got = append(got, sp)
			}
		}
	}
	rcv.mu.Lock()
	rcv.spans = append(rcv.spans, got...)
	rcv.mu.Unlock()
}

// anyValueString renders the scalar attribute values the assertions need.
func anyValueString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	}
	return ""
}

// Trace returns the spans received so far that belong to traceID.
func (rcv *OTLPReceiver) Trace(traceID string) []Span {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	var out []Span
	for _, s := range rcv.spans {
		if s.TraceID == traceID {
			out = append(out, s)
		}
	}
	return out
}
