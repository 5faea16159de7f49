// Package slowclient answers a client whose request body did not arrive in
// time with a 408 problem. The server's timeouts (the Caddyfile's
// `servers { timeouts { … } }`) cut the body; whichever handler was reading
// it then fails in its own way (a 400 from validation; reverse_proxy takes
// it for a client that went away and answers 499). This handler sees the
// body fail on its deadline and tells the client what happened.
package slowclient

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/lexiscore/gateway/modules/problem"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler turns an error of the handlers after it into a 408 problem
// (type "request-timeout") when the request body hit its read deadline. It
// has no settings: the deadlines are the server's. Put it before every
// handler that reads the body.
type Handler struct{}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.slow_client",
		New: func() caddy.Module { return new(Handler) },
	}
}

// ServeHTTP watches the body for its deadline while the next handlers run.
func (Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.Body == nil || r.Body == http.NoBody {
		return next.ServeHTTP(w, r)
	}
	body := &deadlineBody{ReadCloser: r.Body, reading: make(chan struct{}, 1)}
	r.Body = body
	cw := &clientGoneWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, body: body}
	err := next.ServeHTTP(cw, r)
	if err != nil && r.Context().Err() != nil {
		// The connection's read failed, which cancels the request at once:
		// the handlers may have returned before the read that failed did.
		body.settle()
	}
	if (err != nil || cw.suppressed) && body.expired.Load() {
		// The handlers' error only as text: caddyhttp.Error would take the
		// status of a HandlerError found in the cause (reverse_proxy's 504).
		cause := fmt.Errorf("request body past its read deadline (handlers: %v): %w", err, os.ErrDeadlineExceeded)
		return problem.New(http.StatusRequestTimeout, "request-timeout", "The request body did not arrive in time.", cause)
	}
	return err
}

// statusClientClosed is the status reverse_proxy writes, and returns no
// error, when the request's context is canceled: what a body read past its
// deadline does to the request.
const statusClientClosed = 499

// clientGoneWriter holds back reverse_proxy's 499 when the body timed out,
// so that the 408 can be written instead.
type clientGoneWriter struct {
	*caddyhttp.ResponseWriterWrapper
	body       *deadlineBody
	suppressed bool
}

func (w *clientGoneWriter) WriteHeader(status int) {
	if status == statusClientClosed {
		w.body.settle()
		if w.body.expired.Load() {
			w.suppressed = true
			return
		}
	}
	w.ResponseWriterWrapper.WriteHeader(status)
}

// deadlineBody records whether a read failed because the read deadline
// passed; nothing else a body read returns means the client was too slow.
type deadlineBody struct {
	io.ReadCloser
	expired atomic.Bool
	// reading holds a token while a Read is in progress.
	reading chan struct{}
}

// settleWait bounds the wait for a read in progress: one whose connection
// already failed returns at once.
const settleWait = time.Second

// settle waits for a Read in progress to return.
func (b *deadlineBody) settle() {
	select {
	case b.reading <- struct{}{}:
		<-b.reading
	case <-time.After(settleWait):
	}
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	b.reading <- struct{}{}
	defer func() { <-b.reading }()
	n, err := b.ReadCloser.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		b.expired.Store(true)
	}
	return n, err
}

// Interface guard
var _ caddyhttp.MiddlewareHandler = (*Handler)(nil)
