package e2e

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
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/promcheck"
	"github.com/lexiscore/gateway/internal/testkit/redistest"
)

// speedUp divides every duration of the shipped rules by this factor in
// the end-to-end copy: windows, "for:", keep_firing_for and group
// intervals (an hour becomes a minute), and Alertmanager's grouping delays.
const speedUp = 60

// grafanaURL is the external label the rules build dashboard links from.
const grafanaURL = "https://grafana.e2e.example"

// TestOnCallScenario runs the whole alerting loop for real, the way an SRE
// tried it for issue 16: Debian's Prometheus scrapes the gateway every
// second with a sped-up copy of the shipped rules (generated from them, see
// speedUpRules), a real Alertmanager runs the shipped routing and
// inhibition with every receiver pointed at a webhook in this test, and
// traffic mixes successes, 401s (a scanner without credentials), 429s and
// 400s. Then the faults, one after the other: the backend answers half of
// the requests with 500, the backend goes dead, Redis is killed, a config
// reload fails, the gateway is killed. The test asserts which pages and
// tickets arrive, in what order, that none arrives that should not (the
// scanner never pages, the store's ticket is inhibited while users are not
// limited), and, before the gateway dies, that every dashboard panel shows
// data (TestDashboards' allow-list aside). It logs the time from each fault
// to its first notification.
func TestOnCallScenario(t *testing.T) {
	promBin := alertingTool(t, "prometheus")
	amBin := alertingTool(t, "prometheus-alertmanager", "alertmanager")

	redis := redistest.Start(t)
	be := StartBackend(t, bins, nil)
	// Active health checks are slowed to one at start-up, so that the dead
	// backend reaches the circuit breaker (the page on-call gets) instead
	// of taking the upstream out of rotation first. A small burst limit
	// makes a few 429s cheap. A store timeout ten times the shipped one
	// keeps a busy machine's slow Redis round trips from failing open before
	// Redis is killed (the sped-up fail-open ticket needs only seconds of
	// them); longer, a dead Redis's retries slow the decisions so much that
	// the store ticket comes before the fail-open one that inhibits it.
	gw := StartGateway(t, bins, []string{be.Addr}, map[string]string{
		"GATEWAY_HEALTH_INTERVAL":    "1h",
		"REDIS_URL":                  redis.URL(),
		"GATEWAY_RATE_BURST":         "5/s",
		"GATEWAY_RATE_STORE_TIMEOUT": "500ms",
	})
	hook := newAlertWebhook(t)
	amAddr := startAlertmanager(t, amBin, hook.URL)
	prom := startPrometheus(t, promBin, gw.MetricsURL, amAddr)
	scenarioTraffic(t, gw)

	// A quiet start: the SLO windows fill with good traffic, the scanner's
	// ticket comes (2 failed authentications/s, all of provider "none").
	scanner := hook.waitFor(t, 2*time.Minute, "ticket", "firing", map[string]string{
		"alertname": "GatewayAuthFailuresHigh", "provider": "none", "severity": "warning"})
	checkLinks(t, scanner)

	type fault struct {
		name     string
		inject   func()
		receiver string
		want     map[string]string
		recover  func()
	}
	faults := []fault{
		{"backend answers half with 500", func() {
			be.SetFaults(t, map[string]any{"error_rate": 0.5, "error_status": 500})
		}, "pagerduty", map[string]string{"alertname": "GatewayAvailabilityBudgetFastBurn", "severity": "critical"}, func() {
			be.SetFaults(t, map[string]any{})
		}},
		{"backend dead", func() {
			be.SetFaults(t, map[string]any{"outage": true})
		}, "pagerduty", map[string]string{"alertname": "GatewayCircuitBreakerOpen", "severity": "critical", "upstream": be.Addr}, func() {
			be.SetFaults(t, map[string]any{})
			testkit.Eventually(t, "the breaker closed again", func() error {
				if !strings.Contains(gw.Metrics(t), `gateway_circuit_breaker_state{state="closed",upstream="`+be.Addr+`"} 1`) {
					return fmt.Errorf("breaker of %s not closed", be.Addr)
				}
				return nil
			})
		}},
		{"Redis killed", func() {
			redis.Kill()
		}, "ticket", map[string]string{"alertname": "GatewayRateLimitFailOpen", "severity": "warning"}, func() {
			redis.Restart(t)
		}},
		{"bad config reload", func() {
			resp, err := http.Post(gw.AdminURL+"/load", "application/json", strings.NewReader(`{"apps":{"no_such_app":{}}}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Fatalf("loading a bad config: %s, want an error", resp.Status)
			}
		}, "ticket", map[string]string{"alertname": "GatewayConfigReloadFailed", "severity": "warning"}, nil},
	}
	var injected []time.Time
	for _, f := range faults {
		at := time.Now()
		injected = append(injected, at)
		f.inject()
		got := hook.waitFor(t, 2*time.Minute, f.receiver, "firing", f.want)
		checkLinks(t, got)
		first := hook.firstArrival(f.receiver, f.want)
		if first.Before(at) {
			t.Errorf("%s: %v arrived at %v, before the fault", f.name, f.want, first)
		}
		t.Logf("%s: %s %s after %.1fs", f.name, f.receiver, f.want["alertname"], first.Sub(at).Seconds())
		if f.recover != nil {
			f.recover()
		}
	}

	checkDashboards(t, prom)

	at := time.Now()
	gw.Stop()
	down := map[string]string{"alertname": "GatewayDown", "severity": "critical"}
	checkLinks(t, hook.waitFor(t, 2*time.Minute, "pagerduty", "firing", down))
	t.Logf("gateway killed: pagerduty GatewayDown after %.1fs", hook.firstArrival("pagerduty", down).Sub(at).Seconds())

	// What must never arrive: a page for failed logins (the scanner), the
	// store's ticket while users are not limited (inhibited), the
	// heartbeat at a human.
	for _, r := range hook.all() {
		switch {
		case r.receiver == "pagerduty" && r.alert.Labels["alertname"] == "GatewayAuthFailuresHigh":
			t.Errorf("the scanner paged: %v", r.alert.Labels)
		case r.alert.Labels["alertname"] == "GatewayRateLimitStoreFailing":
			t.Errorf("the store ticket arrived though GatewayRateLimitFailOpen inhibits it: %v", r.alert.Labels)
		case r.alert.Labels["alertname"] == "Watchdog" && r.receiver != "heartbeat":
			t.Errorf("Watchdog reached %s", r.receiver)
		case r.receiver == "pagerduty" && r.alert.Labels["severity"] != "critical":
			t.Errorf("a %s alert paged: %v", r.alert.Labels["severity"], r.alert.Labels)
		}
	}
}

// checkLinks: a delivered alert's runbook exists in the repository and its
// dashboard link is built on Prometheus' grafana_url external label.
func checkLinks(t *testing.T, a deliveredAlert) {
	t.Helper()
	name := a.Labels["alertname"]
	runbook := strings.TrimPrefix(a.Annotations["runbook_url"], "https://github.com/lexiscore/gateway/blob/main/")
	if _, err := os.Stat(filepath.Join(bins.Root, runbook)); err != nil || runbook == a.Annotations["runbook_url"] {
		t.Errorf("%s: runbook_url %q is no file of the repository", name, a.Annotations["runbook_url"])
	}
	if d := a.Annotations["dashboard_url"]; !strings.HasPrefix(d, grafanaURL+"/d/") {
		t.Errorf("%s: dashboard_url %q does not start with the configured %s/d/", name, d, grafanaURL)
	}
}

// emptyPanelsAllowed are the panels the scenario cannot fill, by source,
// with the reason. Empty today: counters exist at 0 from the first scrape
// (modules' metrics.go), so a panel is empty only when its query is wrong.
var emptyPanelsAllowed = map[string]string{}

// checkDashboards runs every panel query of dashboards/ against the
// scenario's Prometheus and fails on those that return nothing.
func checkDashboards(t *testing.T, promAddr string) {
	t.Helper()
	exprs, err := promcheck.PanelQueries(filepath.Join(bins.Root, "dashboards"))
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) == 0 {
		t.Fatal("no panel queries in dashboards/")
	}
	for _, e := range exprs {
		n, err := promQuery(promAddr, e.Query)
		switch {
		case err != nil:
			t.Errorf("%s: %v", e.Source, err)
		case n == 0 && emptyPanelsAllowed[e.Source] == "":
			t.Errorf("%s: empty after the scenario: %s", e.Source, e.Query)
		}
	}
}

// promQuery runs an instant query and returns the number of results.
func promQuery(addr, q string) (int, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query failed: %s", r.Error)
	}
	if r.Data.ResultType != "vector" {
		return 0, fmt.Errorf("result type %s, want a vector", r.Data.ResultType)
	}
	vector := r.Data.Result
	return len(vector), nil
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

// scenarioTraffic keeps a mix flowing until the test ends: reads of ever
// new URLs (so no stale answer hides a failure) at 4/s, a scanner without
// credentials at 2/s (401), a user over the burst limit (429) and an
// invalid query (400) now and then.
func scenarioTraffic(t *testing.T, gw *Gateway) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	send := func(path string, header http.Header) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.BaseURL+path, nil)
		req.Header = header.Clone()
		if resp, err := gw.Client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	every := func(d time.Duration, do func(n int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(d)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				do(n)
			}
		}()
	}
	// Users read only their own scores (authorize): a new user each time.
	every(250*time.Millisecond, func(n int) {
		user := fmt.Sprintf("oncall-u%d", n)
		send("/v1/users/"+user+"/scores", gw.Bearer(t, user, "free"))
	})
	every(500*time.Millisecond, func(int) { send("/v1/users/oncall-u0/scores", nil) })
	greedy := gw.Bearer(t, "oncall-greedy", "free")
	invalid := gw.Bearer(t, "oncall-invalid", "free")
	every(3*time.Second, func(int) {
		for range 6 {
			send("/v1/users/oncall-greedy/scores", greedy)
		}
		// Its own user: the greedy one is refused before validation.
		send("/v1/users/oncall-invalid/scores?limit=many", invalid)
	})
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
	received []delivery
	changed  chan struct{}
}

// delivery is one alert as one receiver got it.
type delivery struct {
	receiver string
	at       time.Time
	alert    deliveredAlert
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
		now := time.Now()
		h.mu.Lock()
		for _, a := range n.Alerts {
			h.received = append(h.received, delivery{n.Receiver, now, a})
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

// firstArrival is when receiver first got a firing alert with want's labels.
func (h *alertWebhook) firstArrival(receiver string, want map[string]string) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.received {
		if r.receiver == receiver && r.alert.Status == "firing" && alertHasLabels(r.alert.Labels, want) {
			return r.at
		}
	}
	return time.Time{}
}

// all returns every delivery so far.
func (h *alertWebhook) all() []delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.received)
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
	testkit.ReadYAML(t, filepath.Join(bins.Root, "alerts", "alertmanager.yml"), &cfg)
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

	addr = testkit.FreeAddr(t)
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
	for _, k := range []string{"repeat_interval"} {
		if v, ok := route[k].(string); ok {
			d, _ := model.ParseDuration(v)
			route[k] = model.Duration(max(time.Duration(d)/speedUp, time.Second)).String()
		}
	}
	if children, ok := route["routes"].([]any); ok {
		for _, c := range children {
			shortenAlertRoute(c)
		}
	}
}

// startPrometheus scrapes the gateway every second and evaluates the
// sped-up copy of the shipped rules every second; it returns its address.
func startPrometheus(t *testing.T, bin, metricsURL, amAddr string) (addr string) {
	t.Helper()
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	if err := os.Mkdir(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(bins.Root, "alerts", "rules", "*.yml"))
	for _, f := range files {
		var rf map[string]any
		testkit.ReadYAML(t, f, &rf)
		speedUpRules(t, rf)
		writeAlertingYAML(t, filepath.Join(rulesDir, filepath.Base(f)), rf)
	}
	target, err := url.Parse(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"global": map[string]any{
			"scrape_interval": "1s", "evaluation_interval": "1s",
			"external_labels": map[string]any{"grafana_url": grafanaURL},
		},
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
	addr = testkit.FreeAddr(t)
	startAlertingTool(t, "prometheus", bin,
		"--config.file="+path, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--rules.alert.resend-delay=1s")
	waitAlertingToolReady(t, "prometheus", "http://"+addr+"/-/ready")
	return addr
}

// rangeRE finds the range of a range selector, e.g. [5m].
var rangeRE = regexp.MustCompile(`\[(\d+[smhdwy])\]`)

// speedUpRules divides every duration of a rules file by speedUp: group
// intervals, "for:", keep_firing_for, and the ranges in expressions (never
// under 2s, two scrapes, so that rate() has two samples).
func speedUpRules(t *testing.T, rf map[string]any) {
	t.Helper()
	for _, g := range rf["groups"].([]any) {
		group := g.(map[string]any)
		shortenRuleDuration(t, group, "interval")
		for _, r := range group["rules"].([]any) {
			rule := r.(map[string]any)
			shortenRuleDuration(t, rule, "for")
			shortenRuleDuration(t, rule, "keep_firing_for")
			rule["expr"] = rangeRE.ReplaceAllStringFunc(rule["expr"].(string), func(m string) string {
				d, err := model.ParseDuration(m[1 : len(m)-1])
				if err != nil {
					t.Fatalf("range %s: %v", m, err)
				}
				return "[" + model.Duration(max(time.Duration(d)/speedUp, 2*time.Second)).String() + "]"
			})
		}
	}
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
	m[key] = model.Duration(max(time.Duration(d)/speedUp, time.Second)).String()
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
	testkit.Eventually(t, name, func() error {
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
