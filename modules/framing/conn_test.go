package framing

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// scriptedConn is a net.Conn whose reads return in, n bytes at a time, then
// io.EOF; writes are recorded.
type scriptedConn struct {
	net.Conn
	in      []byte
	n       int
	written bytes.Buffer
}

func (c *scriptedConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.in))
	copy(p, c.in[:k])
	c.in = c.in[k:]
	return k, nil
}

func (c *scriptedConn) Write(p []byte) (int, error) { return c.written.Write(p) }

// relay reads everything a conn over in delivers, the underlying reads
// returning chunk bytes at a time, and the reasons of its refusals.
func relay(t testing.TB, in string, chunk int) (string, []string) {
	t.Helper()
	var reasons []string
	c := wrapConn(&scriptedConn{in: []byte(in), n: chunk}, 0, func(r string) { reasons = append(reasons, r) })
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	return string(out), reasons
}

// standInFor is the stand-in the tracker makes for head, refused for reason.
func standInFor(t testing.TB, head, reason string) string {
	t.Helper()
	var tr tracker
	tr.scanHead([]byte(head))
	tr.reason = reason
	return string(tr.standIn())
}

const (
	get     = "GET /v1/users/u1/scores HTTP/1.1\r\nHost: localhost\r\n\r\n"
	post    = "POST /v1/scores HTTP/1.1\r\nHost: localhost\r\nContent-Length: 40\r\n\r\nGET /x HTTP/1.1\r\nTransfer-Encoding: a\r\r\n"
	chunked = "POST /v1/scores HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5;ext=\"q\"\r\nhello\r\n1A \r\nGET / HTTP/1.1\r\nContent-Le\r\n0\r\nX-Trailer: 1\r\n\r\n"
	smuggled = "GET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n"
	clte     = "POST /v1/scores HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
)

func TestFraming(t *testing.T) {
	tests := []struct {
		name string
		in   string
		// out is what net/http reads; "" means in, unchanged.
		out    string
		reason string
		// ends: out is a prefix of in that begins with out: net/http fails
		// on a body before the end of what it reads, at a point that
		// depends on how the bytes arrived.
		ends bool
	}{
		{name: "keep-alive requests", in: get + get + get},
		{name: "Content-Length body with CRs and request lines in it", in: post + get},
		{name: "chunked body with extensions, whitespace and a trailer", in: chunked + get},
		{name: "obs-fold and bare LF line ends", in: "GET / HTTP/1.1\nHost: localhost\nX-A: a\n\tb\n\n" + get},
		{name: "equal Content-Lengths", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx" + get},
		{name: "Expect: 100-continue", in: "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab" + get},
		{name: "chunk size of 16 hex digits", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000003\r\nabc\r\n0\r\n\r\n" + get},
		{name: "HTTP/2 preface passes untouched", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00\r\x00"},
		{
			name: "CL and TE", in: get + clte + smuggled,
			out:    get + standInFor(t, clte, ReasonCLTE),
			reason: ReasonCLTE,
		},
		{
			name: "CL and TE gzip, chunked", in: strings.Replace(clte, "chunked", "gzip, chunked", 1) + smuggled,
			out:    standInFor(t, clte, ReasonCLTE),
			reason: ReasonCLTE,
		},
		{
			name: "CL and TE hidden in obs-fold", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled,
			out:    standInFor(t, "POST / HTTP/1.1\r\nHost: h\r\n\r\n", ReasonCLTE),
			reason: ReasonCLTE,
		},
		{
			name: "TE in HTTP/1.0", in: "POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			out:    standInFor(t, "POST / HTTP/1.0\r\n\r\n", ReasonTEHTTP10),
			reason: ReasonTEHTTP10,
		},
		{
			// net/http ignores Transfer-Encoding below HTTP/1.1, not only
			// in HTTP/1.0.
			name: "TE in HTTP/0.9", in: "POST / HTTP/0.9\r\nTransfer-Encoding: x\r\n\r\n\r\n" + smuggled,
			out:    standInFor(t, "POST / HTTP/0.9\r\n\r\n", ReasonTEHTTP10),
			reason: ReasonTEHTTP10,
		},
		{
			name: "bare CR ending a header", in: get + "GET /a HTTP/1.1\r\nHost: localhost\r\nX-A: b\rX-B: c\r\r",
			out:    get + standInFor(t, "GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n", ReasonBareCR),
			reason: ReasonBareCR,
		},
		{
			name: "bare CR in the request line", in: "GET /a\rHTTP/1.1",
			out:    standInFor(t, "", ReasonBareCR),
			reason: ReasonBareCR,
		},
		{
			name: "head over 1 MiB", in: "GET / HTTP/1.1\r\nX-A: " + strings.Repeat("a", maxHead) + "\r\n\r\n",
			out:    standInFor(t, "GET / HTTP/1.1\r\n\r\n", ReasonHeadTooLarge),
			reason: ReasonHeadTooLarge,
		},
		// net/http refuses these by itself and closes: delivered, and the
		// stream ends after them.
		{name: "TE gzip", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n" + smuggled, out: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"},
		{name: "differing Content-Lengths", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab" + smuggled, out: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"},
		{
			name: "chunk size of 17 hex digits",
			in:   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n" + smuggled,
			out:  "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
			ends: true,
		},
		{
			name: "chunk data not ended by CRLF",
			in:   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n" + smuggled,
			out:  "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na",
			ends: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.out
			if want == "" {
				want = tt.in
			}
			for _, chunk := range []int{1, 3, 7, 4096, len(tt.in)} {
				out, reasons := relay(t, tt.in, chunk)
				if tt.ends {
					if !strings.HasPrefix(out, want) || !strings.HasPrefix(tt.in, out) || strings.Contains(out, smuggled) {
						t.Fatalf("reads of %d bytes delivered\n%q\nwant a prefix of the input from\n%q", chunk, out, want)
					}
				} else if out != want {
					t.Fatalf("reads of %d bytes delivered\n%q\nwant\n%q", chunk, out, want)
				}
				if got := strings.Join(reasons, ","); got != tt.reason {
					t.Fatalf("reads of %d bytes: refused for %q, want %q", chunk, got, tt.reason)
				}
			}
		})
	}
}

// TestStandInIsReadAsMarkedRequest: net/http reads the stand-in as a request
// without a body that carries the marker and asks to close the connection.
func TestStandInIsReadAsMarkedRequest(t *testing.T) {
	out, _ := relay(t, "POST /v1/scores?x=1 HTTP/1.1\r\nHost: localhost:8443\r\nX-Request-ID: abc-1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", 4096)
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(out)))
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "POST" || req.RequestURI != "/v1/scores?x=1" || req.Host != "localhost:8443" || req.Header.Get("X-Request-Id") != "abc-1" {
		t.Errorf("stand-in %s %s Host %q ID %q: want the refused request's", req.Method, req.RequestURI, req.Host, req.Header.Get("X-Request-Id"))
	}
	if req.Header.Get(MarkerHeader) != ReasonCLTE+" "+nonce || !req.Close || req.ContentLength != 0 {
		t.Errorf("marker %q, close %v, length %d", req.Header.Get(MarkerHeader), req.Close, req.ContentLength)
	}
}

// TestUpgradedConnectionPassesUntouched: after a 101, the bytes are the
// tunnel's, bare CRs and all.
func TestUpgradedConnectionPassesUntouched(t *testing.T) {
	upgrade := "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	frames := "\x81\x05a\rb\r\x00" + clte
	sc := &scriptedConn{in: []byte(upgrade), n: 4096}
	c := wrapConn(sc, 0, func(r string) { t.Errorf("refused %s", r) })
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != upgrade {
		t.Fatalf("upgrade request: %q, %v", buf[:n], err)
	}
	if _, err := c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	sc.in = []byte(frames)
	out, err := io.ReadAll(c)
	if err != nil || string(out) != frames {
		t.Fatalf("after the 101: %q, %v; want %q", out, err, frames)
	}
}

// deadlineConn records the read deadline set on it.
type deadlineConn struct {
	*scriptedConn
	readDeadline time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.readDeadline = t
	return nil
}

// TestTunnelNotBoundByHeadTimeout: bytes sent after an upgrade request and
// before its 101 are held as the start of a head, bounded by head_timeout;
// once the 101 makes them the tunnel's, that bound no longer cuts the
// tunnel's reads.
func TestTunnelNotBoundByHeadTimeout(t *testing.T) {
	upgrade := "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	dc := &deadlineConn{scriptedConn: &scriptedConn{in: []byte(upgrade + "early"), n: 4096}}
	c := wrapConn(dc, time.Minute, func(r string) { t.Errorf("refused %s", r) })
	buf := make([]byte, 4096)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != upgrade {
		t.Fatalf("upgrade request: %q, %v", buf[:n], err)
	}
	if dc.readDeadline.IsZero() {
		t.Fatal("the bytes after the upgrade request are not bounded as a head")
	}
	if _, err := c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "early" {
		t.Fatalf("after the 101: %q, %v", buf[:n], err)
	}
	if !dc.readDeadline.IsZero() {
		t.Fatalf("the tunnel's reads end at %v", dc.readDeadline)
	}
}

// TestNoTunnelKeepsChecking: an upgrade answered without a 101 (a site
// that ignores Upgrade answers 200), or a CONNECT answered 200 (a handler
// answering any method, with no tunnel), leaves the connection HTTP/1.1:
// net/http goes on reading requests on it, and the wrapper checking them.
func TestNoTunnelKeepsChecking(t *testing.T) {
	for _, first := range []string{
		"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
		"CONNECT /healthz HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		sc := &scriptedConn{in: []byte(first), n: 4096}
		var reasons []string
		c := wrapConn(sc, 0, func(r string) { reasons = append(reasons, r) })
		buf := make([]byte, 4096)
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		sc.in = []byte(clte)
		if _, err := io.ReadAll(c); err != nil {
			t.Fatal(err)
		}
		if len(reasons) != 1 || reasons[0] != ReasonCLTE {
			t.Fatalf("after %q answered 200: refusals %v, want [cl_te]", first, reasons)
		}
	}
}

// blockingConn returns its bytes, then blocks until its read deadline.
type blockingConn struct {
	net.Conn
	in       []byte
	deadline chan time.Time
}

func (c *blockingConn) Read(p []byte) (int, error) {
	if len(c.in) > 0 {
		n := copy(p, c.in)
		c.in = c.in[n:]
		return n, nil
	}
	d := <-c.deadline
	time.Sleep(time.Until(d))
	return 0, timeoutError{}
}

func (c *blockingConn) SetReadDeadline(d time.Time) error {
	c.deadline <- d
	return nil
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// TestAfterRefusalReadsWait: after the stand-in, a read waits for the
// client (net/http's background read while the answer is written) and ends
// on the read deadline, never returning what the client sent after the
// refused head.
func TestAfterRefusalReadsWait(t *testing.T) {
	bc := &blockingConn{in: []byte(clte + smuggled), deadline: make(chan time.Time, 1)}
	c := wrapConn(bc, 0, func(string) {})
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), MarkerHeader) {
		t.Fatalf("first read: %q, %v; want the stand-in", buf[:n], err)
	}
	if err := c.SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	n, err = c.Read(buf)
	var ne net.Error
	if n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("second read: %d bytes, %v; want a timeout and nothing", n, err)
	}
}
