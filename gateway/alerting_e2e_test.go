package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/lexiscore/gateway/internal/e2e"
)

// TestBackendOutagePagesAndResolves runs the whole alerting path for real:
// Debian's Prometheus scrapes the gateway every second and evaluates the
// shipped rules (with their "for:" durations shortened), a real Alertmanager
// runs the shipped routing and inhibition with every receiver pointed at a
// webhook in this test. The scoring backend goes hard down; the circuit
// breaker alert must arrive as a page with its labels and runbook link, and
// resolve once the backend is back.
func TestBackendOutagePagesAndResolves(t *testing.T) {
	promBin := alertingTool(t, "prometheus")
	amBin := alertingTool(t, "prometheus-alertmanager", "alertmanager")

	be := e2e.StartBackend(t, bins, nil)
	// Active health checks are slowed to one at start-up, so that the
	// outage reaches the breaker instead of taking the upstream out of
	// rotation before the breaker has seen a failure.
	gw := e2e.StartGateway(t, bins, []string{be.Addr}, map[string]string{"GATEWAY_HEALTH_INTERVAL": "1h"})
	alertingTraffic(t, gw, gw.Bearer(t, "alerting-e2e", "free"))

	e2e.WaitFor(t, 30*time.Second, "gateway_circuit_breaker_state in the gateway's scrape", func() error {
		if !strings.Contains(gw.Metrics(t), "gateway_circuit_breaker_state{") {
			return fmt.Errorf("not exposed: the resilient transport (modules/resilience) is not in the shipped Caddyfile")
		}
		return nil
	})

	hook := newAlertWebhook(t)
	amAddr := startAlertmanager(t, amBin, hook.URL)
	startPrometheus(t, promBin, gw.MetricsURL, amAddr)

	be.SetFaults(t, map[string]any{"outage": true})
	runbook := "https://github.com/lexiscore/gateway/blob/main/alerts/runbooks/GatewayCircuitBreakerOpen.md"
	want := map[string]string{
		"alertname": "GatewayCircuitBreakerOpen",
		"severity":  "critical",
		"class":     "cause",
		"job":       "gateway",
		"upstream":  be.Addr,
	}
	page := hook.waitFor(t, 2*time.Minute, "pagerduty", "firing", want)
	if got := page.Annotations["runbook_url"]; got != runbook {
		t.Errorf("runbook_url = %q, want %q", got, runbook)
	}
	for _, a := range []string{"summary", "description", "dashboard_url"} {
		if page.Annotations[a] == "" {
			t.Errorf("the page has no %s annotation: %v", a, page.Annotations)
		}
	}

	be.SetFaults(t, map[string]any{"outage": false})
	hook.waitFor(t, 3*time.Minute, "pagerduty", "resolved", want)
}

// alertingTool finds the first of names on PATH; without any the test is
// skipped, except in CI.
func alertingTool(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" {
		t.Fatalf("%s not installed and CI=%s: run deploy/install-deps.sh", names[0], ci)
	}
	t.Skipf("%s not installed (deploy/install-deps.sh installs it); skipped outside CI", names[0])
	return ""
}

// alertingTraffic keeps authenticated scoring requests flowing through the
// gateway until the test ends, so that the breaker sees the outage and,
// later, the recovery.
func alertingTraffic(t *testing.T, gw *e2e.Gateway, auth http.Header) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(150 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.BaseURL+"/v1/users/alerting-e2e/scores", nil)
			req.Header = auth.Clone()
			if resp, err := gw.Client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// deliveredAlert is one alert of an Alertmanager webhook notification.
type deliveredAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// alertWebhook receives Alertmanager notifications.
type alertWebhook struct {
	URL string

	mu       sync.Mutex
	received []struct {
		receiver string
		alert    deliveredAlert
	}
	changed chan struct{}
}

func newAlertWebhook(t *testing.T) *alertWebhook {
	h := &alertWebhook{changed: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n struct {
			Receiver string           `json:"receiver"`
			Alerts   []deliveredAlert `json:"alerts"`
		}
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		for _, a := range n.Alerts {
			h.received = append(h.received, struct {
				receiver string
				alert    deliveredAlert
			}{n.Receiver, a})
		}
		h.mu.Unlock()
		select {
		case h.changed <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}

// waitFor returns the first alert delivered to receiver with status and
// every label of want, failing the test after timeout.
func (h *alertWebhook) waitFor(t *testing.T, timeout time.Duration, receiver, status string, want map[string]string) deliveredAlert {
	t.Helper()
	deadline := time.After(timeout)
	for {
		h.mu.Lock()
		for _, r := range h.received {
			if r.receiver == receiver && r.alert.Status == status && alertHasLabels(r.alert.Labels, want) {
				h.mu.Unlock()
				return r.alert
			}
		}
		seen := fmt.Sprint(h.received)
		h.mu.Unlock()
		select {
		case <-h.changed:
		case <-deadline:
			t.Fatalf("no %s alert %v reached receiver %s within %v; received: %s", status, want, receiver, timeout, seen)
		}
	}
}

func alertHasLabels(got, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// startAlertmanager runs Alertmanager with the shipped routing and
// inhibition, every receiver replaced by the test's webhook and the
// grouping delays cut to a second.
func startAlertmanager(t *testing.T, bin, hookURL string) (addr string) {
	t.Helper()
	var cfg map[string]any
	readAlertingYAML(t, filepath.Join(bins.Root, "alerts", "alertmanager.yml"), &cfg)
	receivers, _ := cfg["receivers"].([]any)
	for i, r := range receivers {
		name := r.(map[string]any)["name"]
		receivers[i] = map[string]any{
			"name":            name,
			"webhook_configs": []any{map[string]any{"url": hookURL, "send_resolved": true}},
		}
	}
	shortenAlertRoute(cfg["route"])
	dir := t.TempDir()
	path := filepath.Join(dir, "alertmanager.yml")
	writeAlertingYAML(t, path, cfg)

	addr = e2e.FreeAddr(t)
	startAlertingTool(t, "alertmanager", bin,
		"--config.file="+path, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=")
	waitAlertingToolReady(t, "alertmanager", "http://"+addr+"/-/ready")
	return addr
}

func shortenAlertRoute(r any) {
	route, ok := r.(map[string]any)
	if !ok {
		return
	}
	route["group_wait"] = "1s"
	route["group_interval"] = "1s"
	if children, ok := route["routes"].([]any); ok {
		for _, c := range children {
			shortenAlertRoute(c)
		}
	}
}

// startPrometheus scrapes the gateway every second and evaluates the
// shipped rules every second, their "for:" durations and group intervals
// divided by 60 (a minute becomes a second).
func startPrometheus(t *testing.T, bin, metricsURL, amAddr string) {
	t.Helper()
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	if err := os.Mkdir(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(bins.Root, "alerts", "rules", "*.yml"))
	for _, f := range files {
		var rf map[string]any
		readAlertingYAML(t, f, &rf)
		for _, g := range rf["groups"].([]any) {
			group := g.(map[string]any)
			shortenRuleDuration(t, group, "interval")
			for _, r := range group["rules"].([]any) {
				shortenRuleDuration(t, r.(map[string]any), "for")
			}
		}
		writeAlertingYAML(t, filepath.Join(rulesDir, filepath.Base(f)), rf)
	}
	target, err := url.Parse(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"global":     map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"},
		"rule_files": []any{filepath.Join(rulesDir, "*.yml")},
		"alerting": map[string]any{"alertmanagers": []any{
			map[string]any{"static_configs": []any{map[string]any{"targets": []any{amAddr}}}},
		}},
		"scrape_configs": []any{map[string]any{
			"job_name":        "gateway",
			"metrics_path":    target.Path,
			"static_configs":  []any{map[string]any{"targets": []any{target.Host}}},
			"scrape_timeout":  "1s",
			"scrape_interval": "1s",
		}},
	}
	path := filepath.Join(dir, "prometheus.yml")
	writeAlertingYAML(t, path, cfg)
	addr := e2e.FreeAddr(t)
	startAlertingTool(t, "prometheus", bin,
		"--config.file="+path, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--rules.alert.resend-delay=1s")
	waitAlertingToolReady(t, "prometheus", "http://"+addr+"/-/ready")
}

func shortenRuleDuration(t *testing.T, m map[string]any, key string) {
	t.Helper()
	s, ok := m[key].(string)
	if !ok {
		return
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s %q: %v", key, s, err)
	}
	m[key] = model.Duration(max(time.Duration(d)/60, time.Second)).String()
}

// startAlertingTool runs a tool until the test ends.
func startAlertingTool(t *testing.T, name, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	var mu sync.Mutex
	cmd.Stdout = alertingToolOutput{&mu, &out}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("--- %s output ---\n%s", name, out.String())
			mu.Unlock()
		}
	})
}

type alertingToolOutput struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l alertingToolOutput) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func waitAlertingToolReady(t *testing.T, name, url string) {
	t.Helper()
	e2e.WaitFor(t, 30*time.Second, name, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
}

func readAlertingYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func writeAlertingYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
