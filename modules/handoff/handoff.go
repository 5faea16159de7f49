// Package handoff keeps a config reload from losing the requests of
// connections that clients have just opened.
//
// A reload starts the new config's servers, then shuts the old ones down,
// and two things lost requests there (TestReloadUnderLoadLosesNothing,
// under load, and TestReloadResetsNoConnection here, every run):
//
//   - On Linux, Caddy opens a new SO_REUSEPORT socket on each port for every
//     config and closes the old config's socket when its servers stop. The
//     kernel spreads new connections over every socket of a port, and
//     closing one resets the connections queued on it that its server had
//     not accepted yet: "connection reset by peer" on a fresh connection.
//   - net/http's Server, once shutting down, closes a connection without an
//     answer when it finishes reading a request on it: the client of a
//     connection accepted just before the reload reads EOF.
//
// No client resends a request after either on a fresh connection, since it
// cannot know the server did not process it. The gateway can: the
// `handoff` listener wrapper, on the raw socket, steers a port's new
// connections to its newest socket (a one-instruction classic BPF program
// on the port's reuseport group) and, when a socket closes, hands the
// connections still queued on it to the newest socket's server. The
// `handoff_requests` wrapper, after TLS, hands a connection that a
// closing server read from but never wrote to, with the bytes it read, to
// the newest server, which answers its request.
package handoff

import (
	"crypto/tls"
	"net"
	"reflect"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(ConnectionsWrapper{})
	caddy.RegisterModule(RequestsWrapper{})
}

// ConnectionsWrapper hands the connections queued on a closing listener
// socket to the newest socket on the same address. It has no settings. Put
// it first in listener_wrappers, before the `tls` placeholder: it needs the
// raw TCP listener, and it hands over raw connections, which the new
// server's TLS then handshakes. Elsewhere, it logs a warning and leaves the
// listener as it is. The gateway's listeners are plain TCP (GODEBUG
// multipathtcp=0, set in gateway/main.go): the kernel attaches no
// reuseport program to an MPTCP listener, Go's default, and without one
// only the connections that arrive between the last accept and the close
// can still be reset.
type ConnectionsWrapper struct {
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (ConnectionsWrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.handoff",
		New: func() caddy.Module { return new(ConnectionsWrapper) },
	}
}

// Provision keeps the logger.
func (lw *ConnectionsWrapper) Provision(ctx caddy.Context) error {
	lw.logger = ctx.Logger()
	return nil
}

// WrapListener steers ln's port to ln and returns ln, handing its queued
// connections over when it closes.
func (lw *ConnectionsWrapper) WrapListener(ln net.Listener) net.Listener {
	tcp := tcpListener(ln)
	if tcp == nil {
		lw.logger.Warn("not a TCP listener: connections queued at a reload may be reset (put handoff before tls in listener_wrappers)",
			zap.String("address", ln.Addr().String()))
		return ln
	}
	if err := steerToNewest(tcp); err != nil {
		lw.logger.Warn("cannot steer new connections to the newest listener: a reload may reset a connection",
			zap.String("address", ln.Addr().String()), zap.Error(err))
	}
	return newListener(ln, "connections", lw.logger, tcp, nil)
}

// tcpListener finds the TCP listener under Caddy's: on Unix, Caddy wraps
// it in a struct that embeds it as net.Listener.
func tcpListener(ln net.Listener) *net.TCPListener {
	for range 4 {
		if tcp, ok := ln.(*net.TCPListener); ok {
			return tcp
		}
		v := reflect.ValueOf(ln)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return nil
		}
		f := v.FieldByName("Listener")
		if !f.IsValid() || !f.CanInterface() {
			return nil
		}
		inner, ok := f.Interface().(net.Listener)
		if !ok || inner == nil {
			return nil
		}
		ln = inner
	}
	return nil
}

// RequestsWrapper hands a connection that a closing server read a request
// from and closed without writing anything to the newest server on the same
// address, with the bytes it read: net/http, once shutting down, drops a
// request it finishes reading. It has no settings. Put it right after
// `tls` in listener_wrappers: the wrappers after it see a connection it
// hands over as a new one and read its bytes again from the start. It
// keeps at most the first 64 KiB a connection sends before its first
// answer; a connection that sent more is closed as before. net/http marks
// itself as shutting down a moment before it closes its listeners, so a
// connection closed unanswered outside a shutdown, after a complete read, is
// closed up to a second later; one whose client closed or timed out
// mid-request is closed at once.
type RequestsWrapper struct {
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (RequestsWrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.handoff_requests",
		New: func() caddy.Module { return new(RequestsWrapper) },
	}
}

// Provision keeps the logger.
func (lw *RequestsWrapper) Provision(ctx caddy.Context) error {
	lw.logger = ctx.Logger()
	return nil
}

// WrapListener returns ln with its connections' unanswered first requests
// handed over when its server closes them on its way out.
func (lw *RequestsWrapper) WrapListener(ln net.Listener) net.Listener {
	return newListener(ln, "requests", lw.logger, nil, func(c net.Conn) net.Conn { return newUnanswered(c, nil) })
}

// connectionStater is a TLS connection, or one over TLS: Caddy reads its
// state through ConnectionState.
type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

// Interface guards
var (
	_ caddy.Provisioner     = (*ConnectionsWrapper)(nil)
	_ caddy.ListenerWrapper = (*ConnectionsWrapper)(nil)
	_ caddy.Provisioner     = (*RequestsWrapper)(nil)
	_ caddy.ListenerWrapper = (*RequestsWrapper)(nil)
)
