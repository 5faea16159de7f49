package handoff

import (
	"errors"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

type accepted struct {
	conn net.Conn
	err  error
}

// listener accepts from the listener it wraps in a goroutine of its own,
// so that Close can stop that without closing the socket first, and takes
// the connections that closing listeners of the same stage and address
// hand over.
type listener struct {
	net.Listener
	key    string
	logger *zap.Logger
	// tcp is the socket, for the connections stage: its queue is handed
	// over at Close. Nil for the requests stage.
	tcp *net.TCPListener
	// wrap, when set, wraps each accepted connection.
	wrap func(net.Conn) net.Conn

	accepted chan accepted
	wake     chan struct{}
	closing  chan struct{}
	pumpDone chan struct{}

	mu        sync.Mutex
	handed    []net.Conn
	closeOnce sync.Once
	closeErr  error
}

func newListener(ln net.Listener, stage string, logger *zap.Logger, tcp *net.TCPListener, wrap func(net.Conn) net.Conn) *listener {
	l := &listener{
		Listener: ln,
		key:      stage + " " + ln.Addr().String(),
		logger:   logger,
		tcp:      tcp,
		wrap:     wrap,
		accepted: make(chan accepted),
		wake:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
		pumpDone: make(chan struct{}),
	}
	register(l)
	go l.pump()
	return l
}

// Accept returns the next connection, handed over or accepted.
func (l *listener) Accept() (net.Conn, error) {
	for {
		if c := l.nextHanded(); c != nil {
			return c, nil
		}
		select {
		case a := <-l.accepted:
			return a.conn, a.err
		case <-l.wake:
		case <-l.closing:
			return nil, net.ErrClosed
		}
	}
}

// pump accepts until Close stops it.
func (l *listener) pump() {
	defer close(l.pumpDone)
	for {
		c, err := l.Listener.Accept()
		if c != nil && l.wrap != nil {
			c = l.wrap(c)
			l.adopt(c)
		}
		select {
		case <-l.closing:
			if c != nil {
				handOff(l, []net.Conn{c})
			}
			return
		default:
		}
		select {
		case l.accepted <- accepted{c, err}:
		case <-l.closing:
			if c != nil {
				handOff(l, []net.Conn{c})
			}
			return
		}
		if err != nil && !isTemporary(err) {
			return
		}
	}
}

// isTemporary is what net/http's Serve retries after a pause.
func isTemporary(err error) bool {
	var ne interface{ Temporary() bool }
	return errors.As(err, &ne) && ne.Temporary()
}

// Close stops accepting and hands what the listener holds to the newest
// listener of its stage and address: for the connections stage, the
// connections queued on the socket, which it closes last; for both, those
// handed to it and not accepted yet. With no listener left there (the
// server stops), they are closed.
func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		unregister(l)
		close(l.closing)
		if l.tcp != nil {
			// Wakes the pump without closing the socket.
			_ = l.tcp.SetDeadline(time.Unix(1, 0))
		} else {
			// The stages below hand over what they hold.
			l.closeErr = l.Listener.Close()
		}
		<-l.pumpDone
		var conns []net.Conn
		if l.tcp != nil {
			_ = l.tcp.SetDeadline(time.Time{})
			queued, err := acceptQueued(l.tcp)
			if err != nil {
				l.logger.Warn("accepting the connections queued on a closing listener", zap.String("address", l.Addr().String()), zap.Error(err))
			}
			conns = queued
		}
		l.mu.Lock()
		conns = append(conns, l.handed...)
		l.handed = nil
		l.mu.Unlock()
		handOff(l, conns)
		if l.tcp != nil {
			l.closeErr = l.Listener.Close()
		}
	})
	return l.closeErr
}

func (l *listener) isClosing() bool {
	select {
	case <-l.closing:
		return true
	default:
		return false
	}
}

func (l *listener) nextHanded() net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.handed) == 0 {
		return nil
	}
	c := l.handed[0]
	l.handed = l.handed[1:]
	return c
}

// receive queues conns for Accept; false once the listener is closing.
func (l *listener) receive(conns []net.Conn) bool {
	l.mu.Lock()
	if l.isClosing() {
		l.mu.Unlock()
		return false
	}
	for _, c := range conns {
		l.adopt(c)
	}
	l.handed = append(l.handed, conns...)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return true
}

// adopt makes l the home of c: where c goes if l's server closes it unanswered.
func (l *listener) adopt(c net.Conn) {
	if u, ok := c.(interface{ rehome(*listener) }); ok {
		u.rehome(l)
	}
}

// The open listeners of each stage and address, oldest first.
var (
	registryMu sync.Mutex
	registry   = map[string][]*listener{}
)

func register(l *listener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry[l.key] = append(registry[l.key], l)
}

func unregister(l *listener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	ls := registry[l.key]
	for i, x := range ls {
		if x == l {
			ls = append(ls[:i:i], ls[i+1:]...)
			break
		}
	}
	if len(ls) == 0 {
		delete(registry, l.key)
		return
	}
	registry[l.key] = ls
}

// handOff gives conns to the newest open listener of from's stage and
// address, or closes them when there is none.
func handOff(from *listener, conns []net.Conn) {
	if len(conns) == 0 {
		return
	}
	for {
		registryMu.Lock()
		var to *listener
		if ls := registry[from.key]; len(ls) > 0 {
			to = ls[len(ls)-1]
		}
		registryMu.Unlock()
		if to == nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return
		}
		if to.receive(conns) {
			from.logger.Debug("handed connections to the newest listener",
				zap.String("listener", from.key), zap.Int("connections", len(conns)))
			return
		}
		// to started closing after the lookup: it has left the registry.
	}
}
