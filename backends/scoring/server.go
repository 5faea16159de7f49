package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/lexiscore/gateway/internal/httpsig"
)

// shutdownTimeout bounds the graceful shutdown: requests still running after
// it (such as ones delayed by injected latency) are dropped.
const shutdownTimeout = 5 * time.Second

// server is the demo scoring backend: the public API on one port and the
// fault-injection admin API on another.
type server struct {
	logger   *slog.Logger
	store    *store
	stats    *stats
	requests *requestLog
	faults   faultState
	// faultsMu serializes fault changes so that the stored faults always
	// agree with the state of the API listener.
	faultsMu sync.Mutex
	// v1 routes the /v1 API; observe asks it for the route of a request.
	v1 *http.ServeMux
	// verifier checks the gateway's signature on /v1 requests; nil when
	// no signing key is configured.
	verifier *httpsig.Verifier

	api     *apiServer
	admin   *http.Server
	adminLn net.Listener
}

// newServer binds both ports of cfg; serve then serves them.
func newServer(cfg config, logger *slog.Logger) (*server, error) {
	s := &server{
		logger:   logger,
		store:    newStore(maxScores),
		stats:    newStats(),
		requests: newRequestLog(requestLogSize),
	}
	// Bound first: the default authority is the bound address.
	api, err := newAPIServer(cfg.addr, nil, logger)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if s.verifier, err = newVerifier(cfg, api.addr, logger); err != nil {
		_ = api.shutdown(context.Background())
		return nil, err
	}
	api.handler = s.apiHandler()
	adminLn, err := net.Listen("tcp", cfg.adminAddr)
	if err != nil {
		_ = api.shutdown(context.Background())
		return nil, fmt.Errorf("admin: listen on %s: %w", cfg.adminAddr, err)
	}
	s.api, s.adminLn = api, adminLn
	s.admin = newHTTPServer(s.adminHandler(), logger)
	return s, nil
}

// newVerifier returns the verifier of the gateway's signatures, or nil when
// no signing keys are configured. apiAddr is the bound API address, the
// authority when cfg names none.
func newVerifier(cfg config, apiAddr string, logger *slog.Logger) (*httpsig.Verifier, error) {
	if cfg.signingKeys == "" {
		logger.Warn("no signing keys: /v1 requests are not checked for the gateway's signature")
		return nil, nil
	}
	keys, err := httpsig.ParseKeyFiles(cfg.signingKeys)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	var authorities []string
	if cfg.authorities != "" {
		authorities = strings.Split(cfg.authorities, ",")
	} else if host, _, _ := net.SplitHostPort(apiAddr); net.ParseIP(host).IsUnspecified() {
		logger.Warn("listening on every address and no -authorities: signatures are not checked against the upstream they were made for", "api", apiAddr)
	} else {
		authorities = []string{apiAddr}
	}
	v, err := httpsig.NewVerifier(keys, httpsig.Options{Authorities: authorities})
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	return v, nil
}

// apiAddr is the bound address of the public API.
func (s *server) apiAddr() string { return s.api.addr }

// adminAddr is the bound address of the admin API.
func (s *server) adminAddr() string { return s.adminLn.Addr().String() }

// apiHandler routes the public API. Health checks and the OpenAPI document
// bypass the /v1 middleware, so injected latency and errors never reach them.
func (s *server) apiHandler() http.Handler {
	s.v1 = http.NewServeMux()
	s.v1.HandleFunc(routeCreateScore, s.createScore)
	s.v1.HandleFunc(routeGetScore, s.getScore)
	s.v1.HandleFunc(routeUserScores, s.listUserScores)
	v1 := chain(withProblems(s.v1), v1Middleware(s)...)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /openapi.yaml", s.openAPI)
	// Both patterns, or the mux would redirect /v1 to /v1/.
	mux.Handle("/v1", v1)
	mux.Handle("/v1/", v1)
	return echoRequestID(withProblems(mux))
}

// serve serves both ports until ctx is done or a server fails, then shuts
// both down gracefully. It returns only server failures: a shutdown that has
// to drop requests is logged, not failed.
func (s *server) serve(ctx context.Context) error {
	// The API starts first: once the admin API is up, an outage may stop it.
	err := s.api.start()
	adminFailed := make(chan error, 1)
	go func() {
		if err := s.admin.Serve(s.adminLn); !errors.Is(err, http.ErrServerClosed) {
			adminFailed <- fmt.Errorf("serve admin on %s: %w", s.adminAddr(), err)
		}
	}()
	if err == nil {
		select {
		case <-ctx.Done():
		case err = <-s.api.failed:
		case err = <-adminFailed:
		}
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if serr := s.api.shutdown(shutdownCtx); serr != nil {
		s.logger.Warn("dropped requests at shutdown", "error", serr)
	}
	if serr := s.admin.Shutdown(shutdownCtx); serr != nil {
		_ = s.admin.Close()
		s.logger.Warn("dropped admin requests at shutdown", "error", fmt.Errorf("shut down admin: %w", serr))
	}
	return err
}

// setFaults replaces the faults, closing or reopening the API listener when
// the outage flag changes. If the listener cannot be reopened the faults are
// left unchanged.
func (s *server) setFaults(f faults) error {
	s.faultsMu.Lock()
	defer s.faultsMu.Unlock()
	if f.Outage {
		s.api.stop()
	} else if err := s.api.start(); err != nil {
		return fmt.Errorf("end outage: %w", err)
	}
	s.faults.store(f)
	return nil
}
