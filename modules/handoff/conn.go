package handoff

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// maxUnanswered bounds the bytes kept of a connection before its first
// answer: a request head and a small body.
const maxUnanswered = 64 << 10

// unanswered is a connection that keeps what its server reads from it
// until the server first writes to it. Closed before that by a server on
// its way out, it goes to the newest server instead, which reads the same
// bytes again and answers.
type unanswered struct {
	net.Conn
	home atomic.Pointer[listener]
	// done: tracking is over and the bytes to read again are delivered, so
	// reads and writes pass straight through without the lock (every
	// request after a connection's first).
	done atomic.Bool

	mu sync.Mutex
	// again is the part of a handed-over connection's bytes not read yet.
	again []byte
	// seen is every byte read while tracking.
	seen     []byte
	tracking bool
	// readFailed: the client's last read ended in an error (it closed,
	// reset or timed out), so there is nothing to hand over.
	readFailed bool
}

// unansweredTLS is an unanswered connection over TLS.
type unansweredTLS struct {
	*unanswered
	tls connectionStater
}

// ConnectionState returns the state of the underlying TLS connection.
func (c unansweredTLS) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// newUnanswered wraps c, whose server read seen from it and answered nothing.
func newUnanswered(c net.Conn, seen []byte) net.Conn {
	u := &unanswered{Conn: c, again: seen, seen: seen, tracking: true}
	if cs, ok := c.(connectionStater); ok {
		return unansweredTLS{unanswered: u, tls: cs}
	}
	return u
}

func (c *unanswered) rehome(l *listener) { c.home.Store(l) }

// stopTracking ends the tracking; c.mu is held.
func (c *unanswered) stopTracking() {
	c.tracking, c.seen = false, nil
	c.done.Store(len(c.again) == 0)
}

// Read returns the bytes a previous server read first, then the client's.
func (c *unanswered) Read(p []byte) (int, error) {
	if c.done.Load() {
		return c.Conn.Read(p)
	}
	c.mu.Lock()
	if len(c.again) > 0 {
		n := copy(p, c.again)
		c.again = c.again[n:]
		c.done.Store(!c.tracking && len(c.again) == 0)
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if c.tracking {
		if len(c.seen)+n > maxUnanswered {
			c.stopTracking()
		} else {
			c.seen = append(c.seen, p[:n]...)
		}
	}
	c.readFailed = err != nil
	c.mu.Unlock()
	return n, err
}

// Write ends the tracking: from its first answer on, a connection's
// requests are the server's to finish.
func (c *unanswered) Write(p []byte) (int, error) {
	if !c.done.Load() {
		c.mu.Lock()
		c.stopTracking()
		c.mu.Unlock()
	}
	return c.Conn.Write(p)
}

// Close hands the connection to the newest server when its closing server
// read a request from it and answered nothing.
func (c *unanswered) Close() error {
	c.mu.Lock()
	seen, unanswered := c.seen, c.tracking && len(c.seen) > 0 && !c.readFailed
	c.again = nil
	c.stopTracking()
	c.mu.Unlock()
	home := c.home.Load()
	if !unanswered || home == nil {
		return c.Conn.Close()
	}
	if home.isClosing() {
		c.handOff(home, seen)
		return nil
	}
	// net/http marks itself as shutting down a moment before it closes its
	// listeners, and drops a request it reads in between as well: wait for
	// the listener to close, far longer than that moment lasts. A client
	// that closed or timed out mid-request is closed at once (readFailed).
	go func() {
		t := time.NewTimer(closingWait)
		defer t.Stop()
		select {
		case <-home.closing:
			c.handOff(home, seen)
		case <-t.C:
			_ = c.Conn.Close()
		}
	}()
	return nil
}

// closingWait bounds how long a connection closed unanswered waits for its
// listener to close before it is closed for good.
const closingWait = time.Second

func (c *unanswered) handOff(home *listener, seen []byte) {
	// The next server sets its own.
	_ = c.Conn.SetDeadline(time.Time{})
	handOff(home, []net.Conn{newUnanswered(c.Conn, seen)})
}
