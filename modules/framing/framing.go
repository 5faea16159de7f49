// Package framing refuses HTTP/1.x requests whose framing is ambiguous:
// Content-Length together with Transfer-Encoding, Transfer-Encoding in
// HTTP/1.0 (RFC 9112 §6.1) and bare CRs in the request line or headers
// (§2.2). net/http cannot: it drops Content-Length when a request is chunked
// before any handler sees the request, keeps the connection open, and waits
// for the LF after a bare CR until the header timeout.
//
// The listener wrapper (caddy.listeners.framing) reads the raw bytes after
// TLS, follows each request's framing as net/http will read it, and holds
// each request head until it is judged. A refused head never reaches
// net/http: a stand-in request takes its place, carrying Connection: close
// and a marker, and nothing after it is ever read. The handler
// (http.handlers.framing) answers the stand-in with a problem through the
// site's usual routes, so the refusal carries the request ID and the
// security headers. HTTP/2 connections, and tunnels after their 101, pass
// untouched.
package framing

import (
	"fmt"
	"net"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(ListenerWrapper{})
}

// ListenerWrapper checks the framing of every HTTP/1.x request on the
// server's connections. Put it after TLS (the default position in
// listener_wrappers), so that it reads plaintext, on every server whose sites
// have the framing handler.
type ListenerWrapper struct {
	// HeadTimeout bounds the time from the first byte of a request head to
	// its end; set it to the server's read_header timeout. The wrapper holds
	// each head until it is complete, so net/http, which starts its header
	// timeout on a keep-alive connection only when it sees the first byte,
	// would otherwise give a slow head the idle timeout. Default: 5s; 0
	// leaves heads bounded by the server's timeouts alone.
	HeadTimeout *caddy.Duration `json:"head_timeout,omitempty"`

	headTimeout time.Duration
	logger      *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (ListenerWrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.framing",
		New: func() caddy.Module { return new(ListenerWrapper) },
	}
}

// defaultHeadTimeout is the shipped read_header timeout.
const defaultHeadTimeout = 5 * time.Second

// Provision sets the default and registers the metric.
func (lw *ListenerWrapper) Provision(ctx caddy.Context) error {
	lw.logger = ctx.Logger()
	lw.headTimeout = defaultHeadTimeout
	if lw.HeadTimeout != nil {
		lw.headTimeout = time.Duration(*lw.HeadTimeout)
	}
	return registerMetrics(ctx.GetMetricsRegistry())
}

// Validate refuses a negative head timeout.
func (lw *ListenerWrapper) Validate() error {
	if lw.HeadTimeout != nil && *lw.HeadTimeout < 0 {
		return fmt.Errorf("framing: head_timeout %v is negative", time.Duration(*lw.HeadTimeout))
	}
	return nil
}

// WrapListener returns ln with its connections checked.
func (lw *ListenerWrapper) WrapListener(ln net.Listener) net.Listener {
	return &listener{Listener: ln, headTimeout: lw.headTimeout, refused: lw.refused}
}

// refused counts and logs a refused request; the handler's problem is what
// the client and the error log see, so this stays at debug.
func (lw *ListenerWrapper) refused(reason string) {
	refusals.WithLabelValues(reason).Inc()
	lw.logger.Debug("request framing refused", zap.String("reason", reason))
}

type listener struct {
	net.Listener
	headTimeout time.Duration
	refused     func(string)
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return wrapConn(c, l.headTimeout, l.refused), nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*ListenerWrapper)(nil)
	_ caddy.Validator       = (*ListenerWrapper)(nil)
	_ caddy.ListenerWrapper = (*ListenerWrapper)(nil)
)
