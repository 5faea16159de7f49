package framing

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/url"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// MarkerHeader is the header of the request that stands in for a refused
// one. Its value is "<reason> <nonce>": only this process knows the nonce, so
// a client cannot make a request look refused, and the handler removes any
// copy a client sends.
const MarkerHeader = "X-Gateway-Framing-Refused"

// nonce authenticates MarkerHeader values made by this process.
var nonce = rand.Text()

type mode int

const (
	// modeTrack: every byte goes through the tracker.
	modeTrack mode = iota
	// modeOpaque: not HTTP/1.x any more (HTTP/2, a WebSocket after its 101):
	// bytes pass untouched.
	modeOpaque
	// modeDrain: a request was refused and its stand-in delivered; later
	// bytes are read and dropped, so a pending read waits as it would on a
	// quiet client until net/http closes the connection after its answer.
	modeDrain
	// modeEnd: net/http refuses the last message delivered by itself; the
	// stream ends after it.
	modeEnd
)

// conn is a server connection whose HTTP/1.x requests are checked for
// ambiguous framing before net/http reads them. Reads come from net/http's
// serving goroutine (one at a time); Write may run concurrently with them.
type conn struct {
	net.Conn
	t    tracker
	mode mode
	// pend[pendOff:] are bytes ready for net/http ahead of anything read
	// next; pend is emptied once they are all delivered.
	pend    []byte
	pendOff int
	// readErr is an error of the underlying Read held back until pend is
	// delivered.
	readErr error
	// tunnel: the last request asked for an upgrade; switched: its answer
	// accepted it, so the bytes are no longer HTTP/1.x.
	tunnel, switched atomic.Bool
	refused          func(reason string)

	// headTimeout bounds how long a request head may take from its first
	// byte. net/http starts its header timeout when it sees that byte, which
	// it does not while the head is held: on a keep-alive connection it
	// would wait for the whole head under its idle timeout instead.
	headTimeout time.Duration
	// deadlineMu guards the read deadlines: net/http sets them from other
	// goroutines while a read waits.
	deadlineMu sync.Mutex
	// readDeadline is the one net/http set; headDeadline the head's, zero
	// while no head is under way.
	readDeadline, headDeadline time.Time
}

// tlsConn is a conn over TLS: Caddy and net/http read the TLS state through
// ConnectionState.
type tlsConn struct {
	*conn
	tls interface{ ConnectionState() tls.ConnectionState }
}

// ConnectionState returns the state of the underlying TLS connection.
func (c tlsConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// Read is conn's, and answers a client that speaks plain HTTP to the TLS
// port as net/http does (it answers only on a connection it sees as a
// *tls.Conn): a 400 in plaintext, then the connection closed.
func (c tlsConn) Read(p []byte) (int, error) {
	n, err := c.conn.Read(p)
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) && rhe.Conn != nil && plainHTTP(rhe.RecordHeader) {
		_, _ = io.WriteString(rhe.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		_ = rhe.Conn.Close()
	}
	return n, err
}

// plainHTTP reports whether the first bytes of a connection, read as a TLS
// record header, are an HTTP request's (net/http's own test).
func plainHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

func wrapConn(c net.Conn, headTimeout time.Duration, refused func(string)) net.Conn {
	fc := &conn{Conn: c, headTimeout: headTimeout, refused: refused}
	// A *tls.Conn, or a wrapper over one (handoff_requests).
	if tc, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return tlsConn{conn: fc, tls: tc}
	}
	return fc
}

// Read returns the client's bytes, except that the head of a request whose
// framing is refused is replaced by a stand-in request closing the
// connection, and nothing after it is ever returned.
func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(c.pend) > 0 {
			n := copy(p, c.pend[c.pendOff:])
			if c.pendOff += n; c.pendOff == len(c.pend) {
				c.pend, c.pendOff = c.pend[:0], 0
				if cap(c.pend) > 64<<10 {
					c.pend = nil
				}
			}
			return n, nil
		}
		if c.readErr != nil {
			err := c.readErr
			c.readErr = nil
			return 0, err
		}
		if c.mode == modeTrack && c.switched.Load() {
			c.mode = modeOpaque
			c.pend = append(c.pend, c.t.takeHead()...)
			// Bytes the client sent before the 101 are the tunnel's, not
			// a head: their bound must not cut the tunnel.
			if c.headStarted() {
				c.setHeadDeadline(false)
			}
			continue
		}
		switch c.mode {
		case modeOpaque:
			return c.Conn.Read(p)
		case modeEnd:
			return 0, io.EOF
		}
		n, err := c.Conn.Read(p)
		inPlace := 0
		if n > 0 {
			inPlace = c.process(p[:n])
			if headUnderway := c.headTimeout > 0 && c.mode == modeTrack && c.t.phase == phaseHead && len(c.t.head) > 0; headUnderway != c.headStarted() {
				c.setHeadDeadline(headUnderway)
			}
		}
		if err == io.EOF && c.mode == modeTrack {
			// The client is done sending: what it sent of a head is not
			// a request either way, and net/http says so.
			c.pend = append(c.pend, c.t.takeHead()...)
		}
		if inPlace > 0 {
			c.readErr = err
			return inPlace, nil
		}
		if err != nil {
			if len(c.pend) > 0 {
				c.readErr = err
				continue
			}
			return 0, err
		}
	}
}

// process runs the tracker over p, fresh from the underlying connection. It
// returns how many of p's first bytes may be returned as they are; the other
// bytes to deliver are copied to c.pend.
func (c *conn) process(p []byte) (inPlace int) {
	deliver := func(from, to int) {
		if len(c.pend) == 0 && from == inPlace {
			inPlace = to
			return
		}
		c.pend = append(c.pend, p[from:to]...)
	}
	if c.mode == modeTrack && c.switched.Load() {
		c.mode = modeOpaque
		c.pend = append(c.pend, c.t.takeHead()...)
	}
	for off := 0; off < len(p); {
		switch c.mode {
		case modeOpaque:
			deliver(off, len(p))
			return inPlace
		case modeDrain, modeEnd:
			return inPlace
		}
		used, held, act := c.t.consume(p[off:])
		if !held {
			deliver(off, off+used)
		}
		off += used
		switch act {
		case actRelease:
			c.tunnel.Store(c.t.tunnel)
			c.pend = append(c.pend, c.t.takeHead()...)
		case actReject:
			c.pend = append(c.pend, c.t.standIn()...)
			c.refused(c.t.reason)
			c.t.resetHead()
			c.mode = modeDrain
		case actOpaque:
			c.pend = append(c.pend, c.t.takeHead()...)
			c.mode = modeOpaque
		case actEnd:
			if held {
				c.pend = append(c.pend, c.t.takeHead()...)
			}
			c.mode = modeEnd
		}
	}
	return inPlace
}

// SetDeadline sets both deadlines, the read one as net/http asks and the
// head's bound still applied.
func (c *conn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// SetReadDeadline sets the read deadline, the earlier of t and the bound of
// the head under way.
func (c *conn) SetReadDeadline(t time.Time) error {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	c.readDeadline = t
	return c.Conn.SetReadDeadline(c.effectiveDeadline())
}

func (c *conn) headStarted() bool {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	return !c.headDeadline.IsZero()
}

// setHeadDeadline starts or ends the bound of a head.
func (c *conn) setHeadDeadline(underway bool) {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	c.headDeadline = time.Time{}
	if underway && c.headTimeout > 0 {
		c.headDeadline = time.Now().Add(c.headTimeout)
	}
	_ = c.Conn.SetReadDeadline(c.effectiveDeadline())
}

func (c *conn) effectiveDeadline() time.Time {
	if c.headDeadline.IsZero() || !c.readDeadline.IsZero() && c.readDeadline.Before(c.headDeadline) {
		return c.readDeadline
	}
	return c.headDeadline
}

// Write notices the answer that turns the connection into a tunnel: a 101
// to an upgrade, which only reverse_proxy sends, then hijacking the
// connection. net/http writes a status line at the start of a Write, after
// the request was read. A 2xx to CONNECT is no tunnel here: no module of the
// gateway hijacks for it, so net/http goes on reading requests.
func (c *conn) Write(p []byte) (int, error) {
	if c.tunnel.Load() && bytes.HasPrefix(p, []byte("HTTP/1.1 101 ")) {
		c.switched.Store(true)
	}
	return c.Conn.Write(p)
}

var (
	methodPattern    = regexp.MustCompile(`^[A-Z]{1,20}$`)
	targetPattern    = regexp.MustCompile(`^/[!-~]*$`)
	requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
)

// standIn is the request net/http reads instead of a refused one: its method,
// target, Host and X-Request-ID when they are well-formed (so that the answer
// goes through the same site, and the logs say what was refused), no body,
// MarkerHeader, and Connection: close.
func (t *tracker) standIn() []byte {
	t.endField()
	method, target, proto := "GET", "/", "HTTP/1.0"
	if m := string(t.method); methodPattern.MatchString(m) && m != "CONNECT" && m != "PRI" {
		method = m
	}
	if tg := string(t.target); len(tg) <= 2048 && targetPattern.MatchString(tg) && parses(tg) {
		target = tg
	}
	var b bytes.Buffer
	host := t.hostCount == 1 && len(t.host) > 0 && len(t.host) <= 255 && httpguts.ValidHostHeader(string(t.host))
	if host {
		proto = "HTTP/1.1"
	}
	b.WriteString(method + " " + target + " " + proto + "\r\n")
	if host {
		b.WriteString("Host: " + string(t.host) + "\r\n")
	}
	if requestIDPattern.Match(t.requestID) {
		b.WriteString("X-Request-Id: " + string(t.requestID) + "\r\n")
	}
	b.WriteString(MarkerHeader + ": " + t.reason + " " + nonce + "\r\nConnection: close\r\n\r\n")
	return b.Bytes()
}

// parses reports whether net/http reads target as a request target.
func parses(target string) bool {
	_, err := url.ParseRequestURI(target)
	return err == nil
}
