package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// headerFlags collects repeated -header "Name: value" flags.
type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

// loadConfig is what one load run sends.
type loadConfig struct {
	url, method, body string
	headers           http.Header
	// idempotencyKey gives every request an Idempotency-Key of its own, which
	// makes Go's client resend a request whose connection closed under it.
	idempotencyKey string
	workers        int
	// Either a number of requests in all, or a duration to keep sending.
	count    int
	duration time.Duration
	// pace is the least time between two requests of one worker: a fault
	// answered in a millisecond must not turn the run into a flood that
	// takes the machine's CPU from the process under test.
	pace    time.Duration
	timeout time.Duration
	http1   bool
}

func runLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var cfg loadConfig
	var headers headerFlags
	var logPath string
	fs.StringVar(&cfg.url, "url", "", "request URL (required)")
	fs.StringVar(&cfg.method, "method", http.MethodGet, "request method")
	fs.StringVar(&cfg.body, "body", "", "request body")
	fs.Var(&headers, "header", `request header "Name: value" (repeatable)`)
	fs.StringVar(&cfg.idempotencyKey, "idempotency-key", "", "prefix of an Idempotency-Key unique to each request; empty: none")
	fs.IntVar(&cfg.workers, "c", 4, "concurrent workers, each with one request in flight")
	fs.IntVar(&cfg.count, "n", 0, "requests in all; 0: send for -d")
	fs.DurationVar(&cfg.duration, "d", 10*time.Second, "how long to keep sending when -n is 0")
	fs.DurationVar(&cfg.pace, "pace", 0, "least time between two requests of one worker")
	fs.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "per request, from sending to the end of the body")
	fs.BoolVar(&cfg.http1, "http1", false, "HTTP/1.1 only (default: HTTP/2 when the server offers it)")
	fs.StringVar(&logPath, "log", "", "file that gets one line per request (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.url == "" || logPath == "" {
		return errors.New("load needs -url and -log")
	}
	if cfg.workers < 1 || (cfg.count == 0 && cfg.duration <= 0) {
		return fmt.Errorf("load needs -c ≥ 1 and -n or a positive -d, got -c %d -n %d -d %s", cfg.workers, cfg.count, cfg.duration)
	}
	cfg.headers = http.Header{}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("-header %q: want \"Name: value\"", h)
		}
		cfg.headers.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	f, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("creating the request log: %w", err)
	}
	w := bufio.NewWriter(f)
	load(newClient(cfg), cfg, w)
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing the request log %s: %w", logPath, err)
	}
	return f.Close()
}

// newClient is Go's standard client, TLS unverified (the gateway's
// certificate comes from a throwaway local CA), with an idle connection
// kept per worker.
func newClient(cfg loadConfig) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback benchmark against a throwaway CA
	tr.MaxIdleConnsPerHost = cfg.workers
	if cfg.http1 {
		tr.ForceAttemptHTTP2 = false
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	return &http.Client{Transport: tr, Timeout: cfg.timeout}
}

// load runs the workers and writes a record per request to w.
func load(client *http.Client, cfg loadConfig, w io.Writer) {
	var mu sync.Mutex
	var seq atomic.Int64
	deadline := time.Now().Add(cfg.duration)
	var wg sync.WaitGroup
	for range cfg.workers {
		wg.Go(func() {
			for {
				n := seq.Add(1)
				if cfg.count > 0 && n > int64(cfg.count) {
					return
				}
				start := time.Now()
				if cfg.count == 0 && !start.Before(deadline) {
					return
				}
				rec := send(client, cfg, n, start)
				mu.Lock()
				fmt.Fprintln(w, rec.String())
				mu.Unlock()
				if wait := cfg.pace - time.Since(start); wait > 0 {
					time.Sleep(wait)
				}
			}
		})
	}
	wg.Wait()
}

// send makes request number n and tells what came back.
func send(client *http.Client, cfg loadConfig, n int64, start time.Time) record {
	rec := record{start: start, outcome: outcomeOK}
	var body io.Reader
	if cfg.body != "" {
		body = strings.NewReader(cfg.body)
	}
	req, err := http.NewRequestWithContext(context.Background(), cfg.method, cfg.url, body)
	if err != nil {
		rec.outcome = outcomeError
		rec.duration = time.Since(start)
		return rec
	}
	req.Header = cfg.headers.Clone()
	if cfg.idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", cfg.idempotencyKey+"-"+strconv.FormatInt(n, 10))
	}
	resp, err := client.Do(req)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		rec.status = resp.StatusCode
		rec.problem = problemType(resp.Header.Get("Content-Type"), b)
	}
	rec.duration = time.Since(start)
	var ne net.Error
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		rec.outcome = outcomeTimeout
	default:
		rec.outcome = outcomeError
	}
	return rec
}

// problemType is the short name of an RFC 9457 problem document's type (the
// URL's fragment, else its last path segment), "" for any other body.
func problemType(contentType string, body []byte) string {
	if mt, _, _ := mime.ParseMediaType(contentType); mt != "application/problem+json" {
		return ""
	}
	var p struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(body, &p) != nil || p.Type == "" {
		return "about:blank"
	}
	if _, frag, ok := strings.Cut(p.Type, "#"); ok && frag != "" {
		return frag
	}
	return p.Type[strings.LastIndex(p.Type, "/")+1:]
}
