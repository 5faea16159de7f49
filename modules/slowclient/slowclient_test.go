package slowclient

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit/caddytest"
	_ "github.com/lexiscore/gateway/modules/problem"
)

// A body must start within 300 ms and then average 1000 bytes/s.
const serverTimeouts = `servers {
	timeouts {
		read_body_idle 300ms 1000
	}
}`

// site proxies to upstream, with slow_client or without it.
func site(upstream string, withHandler bool) string {
	handler := ""
	if withHandler {
		handler = "\tslow_client\n"
	}
	return fmt.Sprintf("http://127.0.0.1:{http_port} {\n%s\treverse_proxy %s\n\thandle_errors {\n\t\tproblem\n\t}\n}\n", handler, upstream)
}

// echo is an upstream that answers with the body it read.
func echo(t *testing.T) string {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(up.Close)
	return up.Listener.Addr().String()
}

// stalledPost sends a POST announcing 100 bytes, sends one, and reads the answer.
func stalledPost(t *testing.T, addr string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\na"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to a stalled body: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestStalledBodyIsRequestTimeout(t *testing.T) {
	up := echo(t)
	for _, tc := range []struct {
		name        string
		withHandler bool
		status      int
	}{
		// Without the handler, reverse_proxy takes it for a client gone
		// (499) or, when the read error reaches it first, the upstream's
		// timeout (504).
		{"without slow_client", false, 0},
		{"with slow_client", true, http.StatusRequestTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := caddytest.Start(t, serverTimeouts, site(up, tc.withHandler))
			resp := stalledPost(t, fmt.Sprintf("127.0.0.1:%d", in.HTTPPort))
			if !tc.withHandler {
				if resp.StatusCode == http.StatusRequestTimeout {
					t.Fatalf("stalled body without slow_client: %s", resp.Status)
				}
				return
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("stalled body: %s, want %d", resp.Status, tc.status)
			}
			var doc map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
				t.Fatal(err)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" || !strings.HasSuffix(doc["type"].(string), "#request-timeout") {
				t.Fatalf("Content-Type %q, problem %v", ct, doc)
			}
		})
	}
}

func TestOtherErrorsAndBodiesPassThrough(t *testing.T) {
	in := caddytest.Start(t, serverTimeouts, site(echo(t), true))
	resp, err := http.Post(in.URL("/x"), "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "hello" {
		t.Fatalf("a body in time: %s %q", resp.Status, b)
	}

	// An upstream that is down is still the upstream's fault.
	in.Load(t, site(caddytest.ClosedAddr(t), true))
	resp, err = http.Post(in.URL("/x"), "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("upstream down: %s, want 502", resp.Status)
	}
}
