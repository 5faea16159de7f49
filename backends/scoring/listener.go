package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// newHTTPServer returns an http.Server for h with the timeouts both ports use.
// There is no write timeout: injected latency and slow bodies must be able to
// outlast any gateway timeout under test.
func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// apiServer serves the public API on a fixed address and can stop and restart
// listening at run time. Stopping is a hard outage: the port refuses new
// connections and open ones are dropped, which is what a crashed backend looks
// like to the gateway, as opposed to an error response.
type apiServer struct {
	addr    string // the bound address; restarting reuses it
	handler http.Handler
	logger  *slog.Logger
	// failed receives the first unexpected Serve error.
	failed chan error

	mu      sync.Mutex
	ln      net.Listener  // listener being served, or bound and not yet served
	srv     *http.Server  // nil while not serving
	done    chan struct{} // closed when srv's Serve returns
	stopped bool          // after shutdown: never serve again
}

// newAPIServer binds addr. Serving starts with start.
func newAPIServer(addr string, h http.Handler, logger *slog.Logger) (*apiServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return &apiServer{
		addr:    ln.Addr().String(),
		handler: h,
		logger:  logger,
		failed:  make(chan error, 1),
		ln:      ln,
	}, nil
}

// start serves the API, first binding the address again if stop closed it.
// It does nothing while serving or after shutdown.
func (a *apiServer) start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv != nil || a.stopped {
		return nil
	}
	if a.ln == nil {
		ln, err := net.Listen("tcp", a.addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", a.addr, err)
		}
		a.ln = ln
	}
	srv, ln, done := newHTTPServer(a.handler, a.logger), a.ln, make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			select {
			case a.failed <- fmt.Errorf("serve api on %s: %w", a.addr, err):
			default:
			}
		}
	}()
	a.srv, a.done = srv, done
	return nil
}

// stop closes the listener and every connection, without waiting for
// requests. When it returns, connections to the address are refused.
func (a *apiServer) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv == nil {
		if a.ln != nil {
			_ = a.ln.Close()
			a.ln = nil
		}
		return
	}
	// Close only closes the listener once Serve has registered it; closing
	// it here too makes the port refuse connections when stop returns even
	// if the Serve goroutine has not run yet. The second close is harmless.
	_ = a.srv.Close()
	_ = a.ln.Close()
	<-a.done
	a.srv, a.ln, a.done = nil, nil, nil
}

// shutdown stops serving for good, letting requests in progress finish until
// ctx is done and then dropping them.
func (a *apiServer) shutdown(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	if a.srv == nil {
		if a.ln != nil {
			_ = a.ln.Close()
			a.ln = nil
		}
		return nil
	}
	err := a.srv.Shutdown(ctx)
	if err != nil {
		_ = a.srv.Close()
		err = fmt.Errorf("shut down api: %w", err)
	}
	<-a.done
	a.srv, a.ln, a.done = nil, nil, nil
	return err
}
