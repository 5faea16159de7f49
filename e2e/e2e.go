// Package e2e holds the end-to-end tests and their harness: the real gateway
// binary, configured by the real Caddyfile, in front of a real scoring
// backend process, talked to over real TLS. Every process the harness starts
// is stopped when the test ends, whether it passed or not.
package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit"
)

// Binaries are the programs under test, built once per test binary.
type Binaries struct {
	Gateway string
	Scoring string
	// Root is the repository root; the Caddyfile lives there.
	Root string
}

// Build compiles the gateway (with the race detector) and the scoring
// backend into dir. Call it from TestMain.
func Build(dir string) (Binaries, error) {
	root, err := repoRoot()
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{Gateway: filepath.Join(dir, "gateway"), Scoring: filepath.Join(dir, "scoring"), Root: root}
	for _, step := range [][]string{
		{"build", "-race", "-buildvcs=auto", "-o", b.Gateway, "./gateway"},
		{"build", "-o", b.Scoring, "./backends/scoring"},
	} {
		cmd := exec.Command("go", step...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go %s: %w\n%s", strings.Join(step, " "), err, out)
		}
	}
	return b, nil
}

func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("locating the repository root: no caller information")
	}
	return filepath.Abs(filepath.Join(filepath.Dir(file), ".."))
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// Process is a program started for a test.
type Process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// start runs bin with env added to this process's environment; the process
// is stopped (SIGTERM, then SIGKILL) when the test ends, and its output is
// logged if the test failed.
func start(t testing.TB, name, bin string, env map[string]string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &Process{cmd: cmd, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- %s output (last 8 KiB) ---\n%s", name, tail(out.String(), 8192))
		}
	})
	return p
}

// Stop ends the process and waits for it; calling it twice is harmless.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Signal sends sig to the process (not its group), as an orchestrator does.
func (p *Process) Signal(sig syscall.Signal) error {
	return p.cmd.Process.Signal(sig)
}

// WaitExit waits up to timeout for the process to end and reports whether it did.
func (p *Process) WaitExit(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Backend is a running scoring backend.
type Backend struct {
	*Process
	// Addr is the API address (host:port), AdminAddr the fault-injection port.
	Addr, AdminAddr string
}

// StartBackend starts the scoring backend on free ports and waits until it answers.
func StartBackend(t testing.TB, b Binaries, env map[string]string) *Backend {
	t.Helper()
	be := &Backend{Addr: testkit.FreeAddr(t), AdminAddr: testkit.FreeAddr(t)}
	full := map[string]string{"SCORING_SIGNING_KEYS": SigningKeyID + ":" + writeSecret(t, signingSecret)}
	for k, v := range env {
		full[k] = v
	}
	be.Process = start(t, "scoring", b.Scoring, full, "-addr", be.Addr, "-admin-addr", be.AdminAddr)
	testkit.Eventually(t, "the scoring backend", func() error {
		return ExpectStatus(http.DefaultClient, "http://"+be.Addr+"/healthz", http.StatusOK)
	})
	return be
}

// SetFaults replaces the backend's injected faults (see backends/scoring).
func (be *Backend) SetFaults(t testing.TB, faults map[string]any) {
	t.Helper()
	body, _ := json.Marshal(faults)
	req, _ := http.NewRequest(http.MethodPut, "http://"+be.AdminAddr+"/faults", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("setting faults: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("setting faults: %s: %s", resp.Status, msg)
	}
}

// Admin decodes the JSON answer of GET on the backend's admin path into v.
func (be *Backend) Admin(t testing.TB, path string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + be.AdminAddr + path)
	if err != nil {
		t.Fatalf("GET admin %s: %v", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decoding admin %s: %v", path, err)
	}
}

// Gateway is a running gateway binary.
type Gateway struct {
	*Process
	// BaseURL is https://localhost:<port>; HTTPURL the plain-HTTP port.
	BaseURL, HTTPURL string
	// MetricsURL is the Prometheus scrape URL; AdminURL Caddy's admin API.
	MetricsURL, AdminURL string
	// Env is the environment the gateway was started with.
	Env map[string]string
	// Client trusts the gateway's local CA and does not follow redirects.
	Client    *http.Client
	dataDir   string
	caddyfile string
}

// StartGateway runs the gateway with the repository's Caddyfile on free
// ports in front of upstreams; env overrides or extends the defaults.
func StartGateway(t testing.TB, b Binaries, upstreams []string, env map[string]string) *Gateway {
	t.Helper()
	return StartGatewayConfig(t, b, filepath.Join(b.Root, "Caddyfile"), upstreams, env)
}

// StartGatewayConfig is StartGateway with another Caddyfile, for tests of a
// setup the shipped Caddyfile does not have (e.g. two replicas keyed on a
// header). It reads the same environment variables.
func StartGatewayConfig(t testing.TB, b Binaries, caddyfile string, upstreams []string, env map[string]string) *Gateway {
	t.Helper()
	dir := t.TempDir()
	httpsAddr, httpAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)
	metricsAddr, adminAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)
	full := map[string]string{
		"GATEWAY_JWT_SECRET":        randomSecret(),
		"GATEWAY_SIGNING_KEY_ID":    SigningKeyID,
		"GATEWAY_SIGNING_SECRET":    signingSecret,
		"SCORING_UPSTREAMS":         strings.Join(upstreams, " "),
		"GATEWAY_HTTPS_PORT":        port(httpsAddr),
		"GATEWAY_PUBLIC_HTTPS_PORT": port(httpsAddr),
		"GATEWAY_HTTP_PORT":         port(httpAddr),
		"GATEWAY_METRICS_ADDR":      metricsAddr,
		"GATEWAY_ADMIN_ADDR":        adminAddr,
		"GATEWAY_HEALTH_INTERVAL":   "200ms",
		"XDG_DATA_HOME":             filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME":           filepath.Join(dir, "config"),
		// No load balancer watches a test's /readyz: stop at once.
		"GATEWAY_SHUTDOWN_DELAY": "0s",
		// A loaded test machine can take seconds for a TLS handshake or to
		// start reading a body; the tests of these bounds set the shipped ones.
		"GATEWAY_READ_HEADER_TIMEOUT": "30s",
		"GATEWAY_READ_BODY_GRACE":     "30s",
		// Every test client is 127.0.0.1: the per-IP limits would make
		// one client of all of them. Tests of those limits set their own.
		"GATEWAY_RATE_IP_CEILING":       "1000000/s",
		"GATEWAY_RATE_IP_AUTH_FAILURES": "1000000/m",
	}
	for k, v := range env {
		full[k] = v
	}
	g := &Gateway{
		BaseURL:    "https://localhost:" + full["GATEWAY_HTTPS_PORT"],
		HTTPURL:    "http://localhost:" + full["GATEWAY_HTTP_PORT"],
		MetricsURL: "http://" + full["GATEWAY_METRICS_ADDR"] + "/metrics",
		AdminURL:   "http://" + full["GATEWAY_ADMIN_ADDR"],
		Env:        full,
		dataDir:    full["XDG_DATA_HOME"],
		caddyfile:  caddyfile,
	}
	g.Process = start(t, "gateway", b.Gateway, full, "run", "--config", caddyfile, "--adapter", "caddyfile")
	testkit.Eventually(t, "the gateway's local CA", func() error {
		if g.Exited() {
			return fmt.Errorf("gateway exited")
		}
		pool, err := g.rootPool()
		if err != nil {
			return err
		}
		g.Client = NewClient(pool)
		return ExpectStatus(g.Client, g.BaseURL+"/healthz", http.StatusOK)
	})
	return g
}

func (g *Gateway) rootPool() (*x509.CertPool, error) {
	pem, err := os.ReadFile(filepath.Join(g.dataDir, "caddy", "pki", "authorities", "local", "root.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in the local CA root")
	}
	return pool, nil
}

// NewClient returns a client that verifies TLS against roots and returns
// redirects instead of following them.
func NewClient(roots *x509.CertPool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	tr.MaxIdleConnsPerHost = 256
	tr.ForceAttemptHTTP2 = true
	return &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Bearer returns an Authorization header with a token for user of tier,
// signed with the gateway's JWT secret and valid for an hour.
func (g *Gateway) Bearer(t testing.TB, user, tier string) http.Header {
	t.Helper()
	return g.BearerWith(t, Claims{Subject: user, Tier: tier})
}

// BearerWith is Bearer for a token with the claims of c.
func (g *Gateway) BearerWith(t testing.TB, c Claims) http.Header {
	t.Helper()
	return SignedBearer(t, g.Env["GATEWAY_JWT_SECRET"], c)
}

// Do sends a request to the gateway; path is relative to BaseURL.
func (g *Gateway) Do(t testing.TB, method, path string, body io.Reader, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, g.BaseURL+path, body)
	if err != nil {
		t.Fatalf("building request: %v", err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := g.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// Reload makes the gateway load the Caddyfile it runs again through the
// admin API, as `gateway reload --force` does: a new config replaces the
// old one even though nothing changed.
func (g *Gateway) Reload(t testing.TB) {
	t.Helper()
	caddyfile, err := os.ReadFile(g.caddyfile)
	if err != nil {
		t.Fatalf("reading the Caddyfile: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPost, g.AdminURL+"/load", bytes.NewReader(caddyfile))
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("reloading: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("reloading: %s: %s", resp.Status, msg)
	}
}

// Metrics returns the text of one scrape of the gateway's /metrics.
func (g *Gateway) Metrics(t testing.TB) string {
	t.Helper()
	resp, err := http.Get(g.MetricsURL)
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Output returns everything the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// ExpectStatus reports an error unless GET url through c answers want.
func ExpectStatus(c *http.Client, url string, want int) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s: %s, want %d", url, resp.Status, want)
	}
	return nil
}
