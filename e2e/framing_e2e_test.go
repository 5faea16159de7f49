package e2e

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit/rawhttp"
)

// framingBound is how long a test waits for an answer: generous on a loaded
// machine, and far below the 30 s header timeout the harness gives the
// gateway, so a bare CR waiting for that timeout fails the test.
const framingBound = 10 * time.Second

// rawExchange writes raw on a new connection to the gateway's address of
// base (TLS for https, HTTP/1.1 only) and reads answers until the gateway
// closes the connection or framingBound passes; closed reports the former.
func rawExchange(t *testing.T, gw *Gateway, base, raw string) (resps []*http.Response, bodies []string, closed bool) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+u.Port(), framingBound)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(framingBound)); err != nil {
		t.Fatal(err)
	}
	if u.Scheme == "https" {
		pool, err := gw.rootPool()
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}})
		if err := tc.HandshakeContext(t.Context()); err != nil {
			t.Fatal(err)
		}
		conn = tc
	}
	resps, bodies, closed, err = rawhttp.Answers(conn, raw, framingBound)
	if err != nil {
		t.Fatal(err)
	}
	return resps, bodies, closed
}

// TestAmbiguousFramingRefused (issue 11): on the TLS and the HTTP port, a
// request with Content-Length and Transfer-Encoding gets a 400 problem with
// the request ID and the security headers, and the connection is closed
// after it, so the request smuggled in its body is never answered; the
// request pipelined before it is served. A bare CR in a header gets its 400
// at once instead of after the header timeout.
func TestAmbiguousFramingRefused(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, nil)
	const (
		healthz  = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
		clte     = "POST /v1/scores HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 41\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
		smuggled = "GET /healthz?smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
	)
	for _, base := range []string{gw.BaseURL, gw.HTTPURL} {
		t.Run(base[:strings.Index(base, ":")], func(t *testing.T) {
			resps, bodies, closed := rawExchange(t, gw, base, healthz+clte+smuggled)
			if len(resps) != 2 || !closed {
				t.Fatalf("%d answers %q, closed %v: want 2, then the connection closed", len(resps), bodies, closed)
			}
			if base == gw.BaseURL && resps[0].StatusCode != http.StatusOK || base == gw.HTTPURL && resps[0].StatusCode != http.StatusPermanentRedirect {
				t.Errorf("request before: %s", resps[0].Status)
			}
			refused := resps[1]
			var doc map[string]any
			if err := json.Unmarshal([]byte(bodies[1]), &doc); err != nil {
				t.Fatalf("refusal %q: %v", bodies[1], err)
			}
			id := refused.Header.Get("X-Request-ID")
			if refused.StatusCode != http.StatusBadRequest || refused.Header.Get("Content-Type") != "application/problem+json" ||
				!refused.Close || id == "" || doc["request_id"] != id || refused.Header.Get("Server") != "" ||
				!strings.HasSuffix(doc["type"].(string), "#bad-framing") {
				t.Errorf("refusal: %s, headers %v, document %v", refused.Status, refused.Header, doc)
			}
			if base == gw.BaseURL && refused.Header.Get("Strict-Transport-Security") == "" {
				t.Errorf("refusal without the security headers: %v", refused.Header)
			}
		})
	}
	t.Run("bare CR", func(t *testing.T) {
		start := time.Now()
		resps, bodies, closed := rawExchange(t, gw, gw.BaseURL, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-A: b\rX-B: c")
		if len(resps) != 1 || !closed || resps[0].StatusCode != http.StatusBadRequest || !strings.Contains(bodies[0], "bad-framing") {
			t.Fatalf("%d answers %q, closed %v after %v: want one 400 problem, then the connection closed", len(resps), bodies, closed, time.Since(start))
		}
		t.Logf("bare CR answered in %v", time.Since(start).Round(time.Millisecond))
	})
	if m := gw.Metrics(t); !strings.Contains(m, `gateway_framing_refusals_total{reason="cl_te"} 2`) || !strings.Contains(m, `gateway_framing_refusals_total{reason="bare_cr"} 1`) {
		t.Errorf("refusals not counted:\n%s", grepLines(m, "gateway_framing"))
	}
}

// TestSoundFramingUnaffected: pipelined keep-alive requests, a chunked body
// and HTTP/2 pass the listener wrapper as before.
func TestSoundFramingUnaffected(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, nil)
	chunkedBody := "POST /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nGET \r\n0\r\n\r\n"
	healthz := "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
	resps, bodies, _ := rawExchange(t, gw, gw.BaseURL, healthz+chunkedBody+healthz+healthz)
	if len(resps) != 4 {
		t.Fatalf("pipelined: %d answers %q, want 4", len(resps), bodies)
	}
	for i, r := range resps {
		if r.StatusCode != http.StatusOK || r.Close {
			t.Errorf("pipelined request %d: %s, close %v", i, r.Status, r.Close)
		}
	}
	resp := gw.Do(t, http.MethodGet, "/healthz", nil, nil)
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || resp.TLS == nil {
		t.Errorf("HTTP/2: %s over %s", resp.Status, resp.Proto)
	}
	if m := gw.Metrics(t); strings.Contains(m, "gateway_framing_refusals_total{") {
		t.Errorf("sound requests refused:\n%s", grepLines(m, "gateway_framing"))
	}
}

// TestPlainHTTPOnTLSPortAnswered: a client speaking plain HTTP to the TLS
// port gets net/http's plaintext 400 saying so, although the listener
// wrappers hide from net/http the *tls.Conn it answers that on.
func TestPlainHTTPOnTLSPortAnswered(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, nil)
	plain := strings.Replace(gw.BaseURL, "https://", "http://", 1)
	resps, bodies, closed := rawExchange(t, gw, plain, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
	if len(resps) != 1 || !closed || resps[0].StatusCode != http.StatusBadRequest || !strings.Contains(bodies[0], "HTTP request to an HTTPS server") {
		t.Fatalf("%d answers %q, closed %v: want net/http's 400, then the connection closed", len(resps), bodies, closed)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
