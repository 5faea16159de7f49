// Package alerts holds the gateway's Prometheus rules, their promtool unit
// tests, the Alertmanager configuration and the runbooks (see README.md).
// Its tests run promtool and amtool on them and check what the files promise
// each other: every alert tested both ways, documented by a runbook, and
// built on metrics the gateway really exposes.
package alerts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/promcheck"
)

const (
	runbookBase = "https://github.com/lexiscore/gateway/blob/main/alerts/runbooks/"
	// Prometheus' external label grafana_url names each deployment's Grafana.
	dashboardBase = "{{ $externalLabels.grafana_url }}/d/"
)

// tool returns the path of a Prometheus tool. Without it the test is
// skipped, except in CI, where a missing tool is a broken build.
func tool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" {
		t.Fatalf("%s is not installed and CI=%s: run deploy/install-deps.sh in the CI image", name, ci)
	}
	t.Skipf("%s is not installed (deploy/install-deps.sh installs it); skipped outside CI", name)
	return ""
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func glob(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s (%v)", pattern, err)
	}
	return files
}

func loadRules(t *testing.T) []promcheck.Rule {
	t.Helper()
	rules, err := promcheck.LoadRules("rules")
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// alertNames returns each alert name once, in file order.
func alertNames(rules []promcheck.Rule) []string {
	var names []string
	for _, r := range rules {
		if r.Alert != "" && !slices.Contains(names, r.Alert) {
			names = append(names, r.Alert)
		}
	}
	return names
}

func TestPromtoolCheckRules(t *testing.T) {
	out := run(t, "promtool", append([]string{"check", "rules"}, glob(t, "rules/*.yml")...)...)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules:\n%s", out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	run(t, "promtool", append([]string{"test", "rules"}, glob(t, "tests/*.yml")...)...)
}

func TestAmtoolCheckConfig(t *testing.T) {
	run(t, "amtool", "check-config", "alertmanager.yml")
}

// TestAlertmanagerRoutes checks where each severity ends up.
func TestAlertmanagerRoutes(t *testing.T) {
	cases := []struct {
		receiver string
		labels   []string
	}{
		{"pagerduty", []string{"alertname=GatewayDown", "severity=critical", "class=target"}},
		{"pagerduty", []string{"alertname=GatewayCircuitBreakerOpen", "severity=critical", "upstream=10.0.0.1:9001"}},
		{"ticket", []string{"alertname=GatewayCircuitBreakerOpen", "severity=warning", "upstream=10.0.0.1:9001"}},
		{"ticket", []string{"alertname=GatewayAvailabilityBudgetSlowBurn", "severity=warning", "class=slo"}},
		{"heartbeat", []string{"alertname=Watchdog", "severity=none"}},
		{"ticket", []string{"alertname=GatewayRateLimitFailOpen", "severity=warning", "class=cause", "policy=burst"}},
		{"pagerduty", []string{"alertname=GatewayRateLimitFailClosed", "severity=critical", "class=cause", "policy=burst"}},
		{"ticket", []string{"alertname=GatewayRateLimitRejectionsHigh", "severity=warning", "class=cause", "policy=burst"}},
		{"ticket", []string{"alertname=GatewayAuthFailuresHigh", "severity=warning", "class=cause", "provider=none"}},
		{"ticket", []string{"alertname=GatewayAvailabilityBudgetSlowBurn", "severity=warning", "class=slo", "window=1d"}},
		{"ticket", []string{"alertname=GatewayRestarting", "severity=warning", "class=cause"}},
	}
	for _, tc := range cases {
		args := append([]string{"config", "routes", "test", "--config.file=alertmanager.yml", "--verify.receivers=" + tc.receiver}, tc.labels...)
		run(t, "amtool", args...)
	}
}

// TestAlertsFollowConventions checks the labels and annotations on-call
// relies on, and that the links point at files and dashboards that exist.
func TestAlertsFollowConventions(t *testing.T) {
	dashboards, err := promcheck.LoadDashboards("../dashboards")
	if err != nil {
		t.Fatal(err)
	}
	uids := map[string]bool{}
	for _, d := range dashboards {
		uids[d.UID] = true
	}
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			continue
		}
		name := r.Alert
		sev := r.Labels["severity"]
		switch {
		case name == "Watchdog":
			if sev != "none" {
				t.Errorf("Watchdog: severity %q, want none (it must never page)", sev)
			}
		case sev != "critical" && sev != "warning":
			t.Errorf("%s: severity %q, want critical (page) or warning (ticket)", name, sev)
		}
		if !slices.Contains([]string{"slo", "cause", "target", "meta"}, r.Labels["class"]) {
			t.Errorf("%s: class %q, want slo, cause, target or meta (inhibition relies on it)", name, r.Labels["class"])
		}
		for _, a := range []string{"summary", "description", "runbook_url", "dashboard_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", name, a)
			}
		}
		if d := r.Annotations["description"]; name != "Watchdog" && !strings.Contains(d, "$value") && !strings.Contains(d, "$labels") {
			t.Errorf("%s: description %q shows neither the value nor the labels it fired for", name, d)
		}
		if got, want := r.Annotations["runbook_url"], runbookBase+name+".md"; got != want {
			t.Errorf("%s: runbook_url %q, want %q", name, got, want)
		}
		dash := strings.TrimPrefix(r.Annotations["dashboard_url"], dashboardBase)
		if uid, _, _ := strings.Cut(dash, "/"); !uids[uid] {
			t.Errorf("%s: dashboard_url %q names no dashboard in dashboards/", name, r.Annotations["dashboard_url"])
		}
	}
}

// TestRunbooks checks that every alert has a runbook with the four sections
// on-call reads, that every runbook belongs to an alert, and that the panels
// they send on-call to exist.
func TestRunbooks(t *testing.T) {
	names := alertNames(loadRules(t))
	panels := panelTitles(t)
	panelRef := regexp.MustCompile(`panel \*\*([^*]+)\*\*`)
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join("runbooks", name+".md"))
		if err != nil {
			t.Errorf("%s: no runbook: %v", name, err)
			continue
		}
		text := string(b)
		for _, section := range []string{"# " + name, "## Meaning", "## Confirm", "## Mitigate", "## Verify recovery"} {
			if !strings.Contains(text, "\n"+section+"\n") && !strings.HasPrefix(text, section+"\n") {
				t.Errorf("runbooks/%s.md: no %q section", name, section)
			}
		}
		for _, m := range panelRef.FindAllStringSubmatch(text, -1) {
			if title := strings.Join(strings.Fields(m[1]), " "); !panels[title] {
				t.Errorf("runbooks/%s.md: panel %q is on no dashboard", name, title)
			}
		}
	}
	for _, f := range glob(t, "runbooks/*.md") {
		if name := strings.TrimSuffix(filepath.Base(f), ".md"); !slices.Contains(names, name) {
			t.Errorf("%s documents no alert of rules/", f)
		}
	}
}

func panelTitles(t *testing.T) map[string]bool {
	t.Helper()
	dashboards, err := promcheck.LoadDashboards("../dashboards")
	if err != nil {
		t.Fatal(err)
	}
	titles := map[string]bool{}
	for _, d := range dashboards {
		for _, p := range d.AllPanels() {
			titles[p.Title] = true
		}
	}
	return titles
}

// unitTests is the layout of a promtool unit test file.
type unitTests struct {
	GroupEvalOrder []string `yaml:"group_eval_order"`
	Tests          []struct {
		Name       string `yaml:"name"`
		AlertTests []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlertIsTestedBothWays requires, for every alert, a promtool case
// where it fires and one where it stays silent; and a fixed group order in
// every test file, without which promtool evaluates groups in random order
// and an alert may see its recording rules one step late.
func TestEveryAlertIsTestedBothWays(t *testing.T) {
	rules := loadRules(t)
	var groups []string
	for _, r := range rules {
		if !slices.Contains(groups, r.Group) {
			groups = append(groups, r.Group)
		}
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, f := range glob(t, "tests/*.yml") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var ut unitTests
		if err := yaml.Unmarshal(b, &ut); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range groups {
			if !slices.Contains(ut.GroupEvalOrder, g) {
				t.Errorf("%s: group_eval_order lacks group %s", f, g)
			}
		}
		for _, tc := range ut.Tests {
			for _, at := range tc.AlertTests {
				if len(at.ExpAlerts) > 0 {
					fires[at.Alertname] = true
				} else {
					silent[at.Alertname] = true
				}
			}
		}
	}
	for _, name := range alertNames(rules) {
		if !fires[name] {
			t.Errorf("%s: no promtool test where it fires", name)
		}
		if !silent[name] && name != "Watchdog" {
			t.Errorf("%s: no promtool test where it stays silent", name)
		}
	}
}

// TestExpressionsNameRealMetrics checks every rule expression and every
// PromQL block of the runbooks against the metrics a real scrape of the
// gateway contains (testdata/metric-names.txt) and the recording rules
// produce.
func TestExpressionsNameRealMetrics(t *testing.T) {
	known, err := promcheck.KnownFromList("..")
	if err != nil {
		t.Fatal(err)
	}
	exprs := promcheck.RuleExprs(loadRules(t))
	block := regexp.MustCompile("(?s)```promql\n(.*?)```")
	for _, f := range glob(t, "runbooks/*.md") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range block.FindAllStringSubmatch(string(b), -1) {
			exprs = append(exprs, promcheck.Expr{Source: fmt.Sprintf("%s promql block %d", filepath.Base(f), i+1), Query: m[1]})
		}
	}
	for _, err := range promcheck.Check(exprs, known) {
		t.Error(err)
	}
}

// amConfig is the part of alertmanager.yml the tests below read.
type amConfig struct {
	Route struct {
		Routes []struct {
			Matchers       []string `yaml:"matchers"`
			GroupInterval  string   `yaml:"group_interval"`
			RepeatInterval string   `yaml:"repeat_interval"`
		} `yaml:"routes"`
	} `yaml:"route"`
	Receivers []struct {
		Name             string `yaml:"name"`
		PagerDutyConfigs []struct {
			Description string `yaml:"description"`
		} `yaml:"pagerduty_configs"`
	} `yaml:"receivers"`
}

func loadAMConfig(t *testing.T) amConfig {
	t.Helper()
	b, err := os.ReadFile("alertmanager.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c amConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPagerDutyTitleIsTheAlertsSummary renders the incident title with
// amtool for each shape of group: one alert, alerts with different
// summaries (where CommonAnnotations is empty), and a resolved group.
func TestPagerDutyTitleIsTheAlertsSummary(t *testing.T) {
	var title string
	for _, r := range loadAMConfig(t).Receivers {
		for _, pd := range r.PagerDutyConfigs {
			title = pd.Description
		}
	}
	if title == "" {
		t.Fatal("no pagerduty_configs description in alertmanager.yml")
	}
	alert := func(status, summary string) map[string]any {
		return map[string]any{"status": status, "labels": map[string]string{"alertname": "GatewayCircuitBreakerOpen"},
			"annotations": map[string]string{"summary": summary}}
	}
	cases := []struct {
		name   string
		status string
		alerts []map[string]any
		want   string
	}{
		{"one alert", "firing", []map[string]any{alert("firing", "Circuit breaker open for a:1")}, "[FIRING] Circuit breaker open for a:1"},
		{"different summaries", "firing", []map[string]any{alert("firing", "Circuit breaker open for a:1"), alert("firing", "Circuit breaker open for b:1")},
			"[FIRING] Circuit breaker open for a:1 (2 alerts)"},
		{"one resolved of two", "firing", []map[string]any{alert("resolved", "Circuit breaker open for a:1"), alert("firing", "Circuit breaker open for b:1")},
			"[FIRING] Circuit breaker open for b:1"},
		{"resolved", "resolved", []map[string]any{alert("resolved", "Circuit breaker open for a:1")}, "[RESOLVED] Circuit breaker open for a:1"},
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.tmpl")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		data, err := json.Marshal(map[string]any{"receiver": "pagerduty", "status": tc.status, "alerts": tc.alerts,
			"groupLabels": map[string]string{}, "commonLabels": map[string]string{}, "commonAnnotations": map[string]string{}})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "data.json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got := strings.TrimSpace(run(t, "amtool", "template", "render", "--template.glob="+empty, "--template.text="+title, "--template.data="+path))
		if got != tc.want {
			t.Errorf("%s: title %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestHeartbeatEveryMinute: Alertmanager re-sends on a group_interval tick
// only once more than repeat_interval has passed, so a repeat_interval equal
// to the tick skips every other one (a heartbeat every 2 minutes).
func TestHeartbeatEveryMinute(t *testing.T) {
	for _, r := range loadAMConfig(t).Route.Routes {
		if !slices.Contains(r.Matchers, `alertname="Watchdog"`) {
			continue
		}
		group, err1 := model.ParseDuration(r.GroupInterval)
		repeat, err2 := model.ParseDuration(r.RepeatInterval)
		if err1 != nil || err2 != nil {
			t.Fatalf("Watchdog route: group_interval %q, repeat_interval %q", r.GroupInterval, r.RepeatInterval)
		}
		if time.Duration(group) != time.Minute || repeat >= group {
			t.Errorf("Watchdog route: group_interval %s, repeat_interval %s: want a 1m tick and a repeat_interval under it", group, repeat)
		}
		return
	}
	t.Fatal("no Watchdog route in alertmanager.yml")
}

// TestAlertmanagerInhibitions posts alerts to a real Alertmanager running
// the shipped routing and inhibition (receivers emptied) and reads back
// which are suppressed. Each case uses its own instance so cases cannot
// inhibit each other.
func TestAlertmanagerInhibitions(t *testing.T) {
	bin := tool(t, "prometheus-alertmanager")
	type alert struct {
		labels     string // alertname severity class, then label=value pairs
		suppressed bool
	}
	cases := []struct {
		name   string
		alerts []alert
	}{
		{"Redis down: users not limited, the store ticket is inhibited", []alert{
			{"GatewayRateLimitFailOpen warning cause instance=gw-1 policy=burst", false},
			{"GatewayRateLimitStoreFailing warning cause instance=gw-1 store=redis", true},
		}},
		{"Redis down, failing closed: the page, not the store ticket", []alert{
			{"GatewayRateLimitFailClosed critical cause instance=gw-2 policy=score_burst", false},
			{"GatewayRateLimitStoreFailing warning cause instance=gw-2 store=redis", true},
		}},
		{"store failing with no policy affected arrives", []alert{
			{"GatewayRateLimitStoreFailing warning cause instance=gw-3 store=redis", false},
		}},
		{"a dead gateway's causes are inhibited", []alert{
			{"GatewayDown critical target instance=gw-4", false},
			{"GatewayCircuitBreakerOpen critical cause instance=gw-4 upstream=10.0.0.1:9001", true},
			{"GatewayRateLimitFailOpen warning cause instance=gw-4 policy=burst", true},
		}},
		{"every upstream unhealthy inhibits the breaker page", []alert{
			{"GatewayAllUpstreamsUnhealthy critical cause instance=gw-5", false},
			{"GatewayCircuitBreakerOpen critical cause instance=gw-5 upstream=10.0.0.1:9001", true},
		}},
		{"the page silences the ticket of the same alert", []alert{
			{"GatewayAuthFailuresHigh critical cause instance=gw-6 provider=jwt", false},
			{"GatewayAuthFailuresHigh warning cause instance=gw-6 provider=jwt", true},
			{"GatewayAuthFailuresHigh warning cause instance=gw-6 provider=none", false},
		}},
		{"a fast burn silences the slow-burn tickets of its SLO", []alert{
			{"GatewayAvailabilityBudgetFastBurn critical slo instance=gw-7 slo=availability window=1h", false},
			{"GatewayAvailabilityBudgetSlowBurn warning slo instance=gw-7 slo=availability window=1d", true},
			{"GatewayLatencyBudgetSlowBurn warning slo instance=gw-7 slo=latency window=1d", false},
		}},
	}
	addr := startAlertmanager(t, bin)
	want := map[string]bool{}
	var posted []map[string]any
	for _, tc := range cases {
		for _, a := range tc.alerts {
			f := strings.Fields(a.labels)
			labels := map[string]string{"alertname": f[0], "severity": f[1], "class": f[2], "job": "gateway"}
			for _, kv := range f[3:] {
				k, v, _ := strings.Cut(kv, "=")
				labels[k] = v
			}
			want[toLabelSet(labels).String()] = a.suppressed
			posted = append(posted, map[string]any{"labels": labels})
		}
	}
	body, err := json.Marshal(posted)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+addr+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("posting alerts: %s", resp.Status)
	}
	// The inhibitor learns of source alerts asynchronously: poll until
	// every alert has the expected state, and report the last difference.
	testkit.Eventually(t, "every alert in its expected inhibition state", func() error {
		if diff := inhibitionDiff(t, addr, want); len(diff) > 0 {
			return errors.New(strings.Join(diff, "; "))
		}
		return nil
	})
}

func toLabelSet(m map[string]string) model.LabelSet {
	ls := model.LabelSet{}
	for k, v := range m {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls
}

func inhibitionDiff(t *testing.T, addr string, want map[string]bool) []string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v2/alerts")
	if err != nil {
		return []string{err.Error()}
	}
	defer resp.Body.Close()
	var got []struct {
		Labels map[string]string `json:"labels"`
		Status struct {
			State       string   `json:"state"`
			InhibitedBy []string `json:"inhibitedBy"`
		} `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		return []string{err.Error()}
	}
	var diff []string
	seen := map[string]bool{}
	for _, a := range got {
		key := toLabelSet(a.Labels).String()
		seen[key] = true
		suppressed, ok := want[key]
		if !ok {
			continue
		}
		if inhibited := len(a.Status.InhibitedBy) > 0; inhibited != suppressed {
			diff = append(diff, fmt.Sprintf("%s: inhibited=%v (state %s), want %v", key, inhibited, a.Status.State, suppressed))
		}
	}
	for key := range want {
		if !seen[key] {
			diff = append(diff, key+": not in Alertmanager")
		}
	}
	return diff
}

// startAlertmanager runs the shipped alertmanager.yml with every receiver
// emptied (nothing leaves the machine) until the test ends.
func startAlertmanager(t *testing.T, bin string) (addr string) {
	t.Helper()
	b, err := os.ReadFile("alertmanager.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, r := range cfg["receivers"].([]any) {
		rm := r.(map[string]any)
		for k := range rm {
			if k != "name" {
				delete(rm, k)
			}
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "alertmanager.yml")
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	addr = testkit.FreeAddr(t)
	cmd := exec.Command(bin, "--config.file="+path, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", log.String())
		}
	})
	testkit.Eventually(t, "alertmanager ready", func() error {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s", resp.Status)
		}
		return nil
	})
	return addr
}
