package framing

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
	"github.com/lexiscore/gateway/internal/testkit/rawhttp"
	_ "github.com/lexiscore/gateway/modules/correlation"
)

const withWrapper = "servers {\n\t\tlistener_wrappers {\n\t\t\tframing\n\t\t}\n\t}"

// site answers with what it was asked, and renders errors as problems with
// a security header, as the gateway's sites do.
const site = `http://127.0.0.1:{http_port} {
	request_id
	framing
	header X-Frame-Options DENY
	respond "{method} {uri} marker={header.X-Gateway-Framing-Refused}" 200
	handle_errors {
		header X-Frame-Options DENY
		problem
	}
}`

// Requests for the test site.
const (
	siteGet      = "GET /v1/users/u1/scores HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
	siteCLTE     = "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	siteSmuggled = "GET /admin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
)

// answerTimeout bounds each wait for the server: far above what a loaded
// machine needs, far below "never".
const answerTimeout = 10 * time.Second

// exchange writes raw to a new connection and reads the answers until the
// server closes it or answerTimeout passes; closed reports the former.
func exchange(t *testing.T, port int, raw string) (resps []*http.Response, bodies []string, closed bool) {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	resps, bodies, closed, err = rawhttp.Answers(conn, raw, answerTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return resps, bodies, closed
}

// TestCLTERefusedAndConnectionClosed: of three pipelined requests, the one
// with Content-Length and Transfer-Encoding gets a 400 problem with the
// request ID and the site's headers, and the connection closes after it:
// the request smuggled in its body is never answered. The one before it is
// served as sent.
func TestCLTERefusedAndConnectionClosed(t *testing.T) {
	in := caddytest.Start(t, withWrapper, site)
	before, _ := testkit.Series(t, refusals, "", map[string]string{"reason": ReasonCLTE})
	resps, bodies, closed := exchange(t, in.HTTPPort, siteGet+siteCLTE+siteSmuggled)
	if len(resps) != 2 || !closed {
		t.Fatalf("%d answers (%q), closed %v: want 2, then the connection closed", len(resps), bodies, closed)
	}
	if resps[0].StatusCode != http.StatusOK || bodies[0] != "GET /v1/users/u1/scores marker=" {
		t.Errorf("request before: %d %q", resps[0].StatusCode, bodies[0])
	}
	refused := resps[1]
	var doc map[string]any
	if err := json.Unmarshal([]byte(bodies[1]), &doc); err != nil {
		t.Fatalf("refusal body %q: %v", bodies[1], err)
	}
	id := refused.Header.Get("X-Request-ID")
	if refused.StatusCode != http.StatusBadRequest || refused.Header.Get("Content-Type") != "application/problem+json" ||
		!refused.Close || refused.Header.Get("X-Frame-Options") != "DENY" || id == "" || doc["request_id"] != id ||
		!strings.HasSuffix(doc["type"].(string), "#bad-framing") || doc["instance"] != "/upload" {
		t.Errorf("refusal: %d, headers %v, document %v", refused.StatusCode, refused.Header, doc)
	}
	after, _ := testkit.Series(t, refusals, "", map[string]string{"reason": ReasonCLTE})
	if after != before+1 {
		t.Errorf("gateway_framing_refusals_total{reason=cl_te} went from %v to %v", before, after)
	}
}

// TestWithoutWrapperSmuggledRequestIsServed is the control: without the
// listener wrapper, net/http serves the same bytes as three requests on a
// connection it keeps open, which is what the wrapper exists to prevent.
func TestWithoutWrapperSmuggledRequestIsServed(t *testing.T) {
	in := caddytest.Start(t, "", site)
	resps, bodies, _ := exchange(t, in.HTTPPort, siteGet+siteCLTE+siteSmuggled)
	if len(resps) != 3 || !strings.HasPrefix(bodies[2], "GET /admin") {
		t.Fatalf("without the wrapper: %q", bodies)
	}
}

// TestBareCRRefusedAtOnce: a bare CR in a header gets its 400 as soon as the
// byte after it arrives, not when a header timeout (none here) expires.
func TestBareCRRefusedAtOnce(t *testing.T) {
	in := caddytest.Start(t, withWrapper, site)
	resps, bodies, closed := exchange(t, in.HTTPPort, "GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: b\rX-B: c")
	if len(resps) != 1 || !closed || resps[0].StatusCode != http.StatusBadRequest || !strings.Contains(bodies[0], "bad-framing") {
		t.Fatalf("%d answers %q, closed %v: want one 400 problem, then the connection closed", len(resps), bodies, closed)
	}
}

// TestForgedMarkerIsIgnored: a client's own copy of the marker header, with
// a nonce it guessed, is removed and the request served.
func TestForgedMarkerIsIgnored(t *testing.T) {
	in := caddytest.Start(t, withWrapper, site)
	resps, bodies, _ := exchange(t, in.HTTPPort, "GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\n"+MarkerHeader+": cl_te guess\r\nConnection: close\r\n\r\n")
	if len(resps) != 1 || resps[0].StatusCode != http.StatusOK || bodies[0] != "GET /a marker=" {
		t.Fatalf("forged marker: %q", bodies)
	}
}

// TestSlowHeadOnKeepAliveConnectionDropped: on a keep-alive connection, a
// head trickling in after a first request is cut at head_timeout, not at the
// idle timeout net/http would apply while the wrapper holds the head.
func TestSlowHeadOnKeepAliveConnectionDropped(t *testing.T) {
	in := caddytest.Start(t, `servers {
		listener_wrappers {
			framing {
				head_timeout 1s
			}
		}
		timeouts {
			idle 1m
		}
	}`, site)
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", in.HTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	resps, _, closed, err := rawhttp.Answers(keepOpen{conn}, siteGet, time.Second)
	if err != nil || len(resps) != 1 || closed {
		t.Fatalf("first request: %d answers, closed %v, %v", len(resps), closed, err)
	}
	start := time.Now()
	resps, _, closed, err = rawhttp.Answers(conn, "GET /b HTTP/1.1\r\nHo", answerTimeout)
	if err != nil || len(resps) != 0 || !closed {
		t.Fatalf("slow head: %d answers, closed %v after %v, %v: want the connection closed", len(resps), closed, time.Since(start), err)
	}
}

// keepOpen leaves its connection open when rawhttp.Answers is done with it.
type keepOpen struct{ net.Conn }

func (keepOpen) Close() error { return nil }

func TestCaddyfile(t *testing.T) {
	for _, tc := range []struct{ options, want, err string }{
		{"framing", `"listener_wrappers":[{"wrapper":"framing"}]`, ""},
		{"framing {\n\t\t\t\thead_timeout 3s\n\t\t\t}", `"listener_wrappers":[{"head_timeout":3000000000,"wrapper":"framing"}]`, ""},
		{"framing {\n\t\t\t\thead_timeout soon\n\t\t\t}", "", `head_timeout: bad duration "soon"`},
		{"framing {\n\t\t\t\thead_timeout -1s\n\t\t\t}", "", "want zero or a positive duration"},
		{"framing {\n\t\t\t\tmax 1\n\t\t\t}", "", `unknown subdirective "max"`},
	} {
		cfg, err := caddytest.Adapt("{\n\tservers {\n\t\tlistener_wrappers {\n\t\t\t" + tc.options + "\n\t\t}\n\t}\n}\n:8080 {\n\tframing\n}\n")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.options, err, tc.err)
			}
			continue
		}
		if err != nil || !strings.Contains(string(cfg), tc.want) || !strings.Contains(string(cfg), `"handler":"framing"`) {
			t.Errorf("%q: %s, %v; want %s and the handler", tc.options, cfg, err, tc.want)
		}
	}
}
