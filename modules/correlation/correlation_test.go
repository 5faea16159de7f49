package correlation

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/lexiscore/gateway/internal/testkit/caddytest"
)

func TestResolve(t *testing.T) {
	m := RequestID{}
	if err := m.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		incoming []string
		kept     bool
	}{
		{"uuid", []string{"0f8fad5b-d9cb-469f-a165-70867728950e"}, true},
		{"ulid-like", []string{"01ARZ3NDEKTSV4RRFFQ69G5FAV"}, true},
		{"short token", []string{"abc"}, true},
		{"absent", nil, false},
		{"empty", []string{""}, false},
		{"space", []string{"a b"}, false},
		{"newline injection", []string{"abc\r\nX-Evil: 1"}, false},
		{"leading dash", []string{"-abc"}, false},
		{"129 chars", []string{strings.Repeat("a", 129)}, false},
		{"128 chars", []string{strings.Repeat("a", 128)}, true},
		{"duplicated header", []string{"abc", "def"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := m.Resolve(tc.incoming)
			if tc.kept && got != tc.incoming[0] {
				t.Fatalf("got %q, want the incoming ID kept", got)
			}
			if !tc.kept && (len(got) != 36 || (len(tc.incoming) > 0 && got == tc.incoming[0])) {
				t.Fatalf("got %q, want a fresh UUID", got)
			}
		})
	}
}

func TestProvisionRejectsBadConfig(t *testing.T) {
	m := RequestID{Pattern: "("}
	if err := m.Provision(caddy.Context{}); err == nil || !strings.Contains(err.Error(), "request_id: pattern") {
		t.Fatalf("bad pattern: %v", err)
	}
	m = RequestID{Header: "Bad Header"}
	if err := m.Validate(); err == nil {
		t.Fatal("bad header name accepted")
	}
}

// TestForwardedAndEchoed runs the directive in a real Caddy in front of a
// real upstream.
func TestForwardedAndEchoed(t *testing.T) {
	var upstreamSaw atomic.Value
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamSaw.Store(r.Header.Values("X-Correlation-ID"))
		// Echoed, as most services do: the client must still get one copy.
		w.Header().Set("X-Correlation-ID", r.Header.Get("X-Correlation-ID"))
		_, _ = w.Write([]byte("scored"))
	}))
	defer upstream.Close()
	in := caddytest.Start(t, "", `
http://127.0.0.1:{http_port} {
	request_id X-Correlation-ID
	reverse_proxy `+strings.TrimPrefix(upstream.URL, "http://")+`
}`)
	for _, sent := range []string{"keep-me-1", "not ok!"} {
		req, _ := http.NewRequest(http.MethodGet, in.URL("/"), nil)
		req.Header.Set("X-Correlation-ID", sent)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Values("X-Correlation-ID"); len(got) != 1 {
			t.Fatalf("sent %q: the response has %d X-Correlation-ID fields %v, want one", sent, len(got), got)
		}
		echoed := resp.Header.Get("X-Correlation-ID")
		saw, _ := upstreamSaw.Load().([]string)
		if len(saw) != 1 || saw[0] != echoed {
			t.Fatalf("sent %q: upstream saw %v, client got %q", sent, saw, echoed)
		}
		if (sent == "keep-me-1") != (echoed == sent) {
			t.Fatalf("sent %q, echoed %q", sent, echoed)
		}
	}
}
