// Command scoring is the demo LexiScore scoring backend that the gateway is
// demonstrated and tested against. It serves the scoring API (see
// api/scoring.yaml at the repository root) with deterministic fake scores kept in memory, and an
// admin API that injects faults (latency, errors, outages, slow bodies) at
// run time and reports what the scoring API received.
//
// Usage:
//
//	scoring [-addr 127.0.0.1:9001] [-admin-addr 127.0.0.1:9002] [-signing-keys keyid:secret_file,...] [-authorities host:port,...]
//
// The environment variables SCORING_ADDR, SCORING_ADMIN_ADDR,
// SCORING_SIGNING_KEYS and SCORING_AUTHORITIES replace the defaults; flags
// win over both. With signing keys, /v1 requests must carry the gateway's
// signature (see internal/httpsig), made for one of the authorities;
// health checks and the OpenAPI document never do.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/lexiscore/gateway/internal/httpsig"
)

const (
	defaultAddr      = "127.0.0.1:9001"
	defaultAdminAddr = "127.0.0.1:9002"
)

// config is the command line of the backend.
type config struct {
	addr      string // public API
	adminAddr string // fault-injection admin API
	// signingKeys lists the gateway's signing keys as keyid:secret_file
	// pairs, several during a rotation. Empty: signatures are not checked.
	signingKeys string
	// authorities are the host:port values the gateway reaches this
	// backend by, comma-separated: a signature made for another upstream
	// is refused. Empty: the bound API address.
	authorities string
}

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		os.Exit(2) // the flag package has printed the error and the usage
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, os.Stdout, logger)
	stop()
	if err != nil {
		logger.Error("scoring backend failed", "error", err)
		os.Exit(1)
	}
}

// parseConfig reads the flags in args, with defaults taken from the
// environment through getenv. Usage and errors go to output.
func parseConfig(args []string, getenv func(string) string, output io.Writer) (config, error) {
	fs := flag.NewFlagSet("scoring", flag.ContinueOnError)
	fs.SetOutput(output)
	var cfg config
	fs.StringVar(&cfg.addr, "addr", envOr(getenv, "SCORING_ADDR", defaultAddr), "`address` of the scoring API (env SCORING_ADDR)")
	fs.StringVar(&cfg.adminAddr, "admin-addr", envOr(getenv, "SCORING_ADMIN_ADDR", defaultAdminAddr), "`address` of the fault-injection admin API (env SCORING_ADMIN_ADDR)")
	fs.StringVar(&cfg.signingKeys, "signing-keys", getenv("SCORING_SIGNING_KEYS"), "comma-separated `keyid:secret_file` pairs; /v1 requests must be signed by the gateway with one of them (env SCORING_SIGNING_KEYS; empty: unchecked)")
	fs.StringVar(&cfg.authorities, "authorities", getenv("SCORING_AUTHORITIES"), "comma-separated `host:port` values the gateway reaches this backend by; a signature made for another upstream is refused (env SCORING_AUTHORITIES; empty: the API address, unchecked if it is unspecified such as :9001)")
	if err := fs.Parse(args); err != nil {
		return config{}, fmt.Errorf("parse flags: %w", err)
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected arguments: %q", fs.Args())
		fmt.Fprintln(output, err)
		fs.Usage()
		return config{}, err
	}
	return cfg, nil
}

// envOr returns the environment variable key, or def when it is unset or empty.
func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// run serves until ctx is done. Once both ports are bound it prints one line
// with their addresses to stdout, which scripts and tests wait for (and read
// the ports from when given port 0).
func run(ctx context.Context, cfg config, stdout io.Writer, logger *slog.Logger) error {
	shutdownTracing, err := setupTracing(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err := shutdownTracing(context.Background()); err != nil {
			logger.Warn("flushing traces", "error", err)
		}
	}()
	s, err := newServer(cfg, logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "scoring: api on %s, admin on %s\n", s.apiAddr(), s.adminAddr())
	logger.Info("scoring backend started", "api", s.apiAddr(), "admin", s.adminAddr())
	err = s.serve(ctx)
	logger.Info("scoring backend stopped")
	return err
}

// v1Middleware lists the middleware every /v1 request passes through,
// outermost first. Cross-cutting concerns such as signature verification or
// tracing are added here; observe stays first so that statistics and the
// request log see every request, including rejected ones.
func v1Middleware(s *server) []middleware {
	mws := []middleware{s.observe, s.traced}
	if s.verifier != nil {
		// After observe and traced, so that refused requests are counted,
		// logged and traced too.
		mws = append(mws, httpsig.VerifyMiddleware(s.verifier, nil))
	}
	return append(mws, s.injectFaults)
}
