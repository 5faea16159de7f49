// Package alerts holds the gateway's Prometheus rules, their promtool unit
// tests, the Alertmanager configuration and the runbooks (see README.md).
// Its tests run promtool and amtool on them and check what the files promise
// each other: every alert tested both ways, documented by a runbook, and
// built on metrics the gateway really exposes.
package alerts

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/lexiscore/gateway/internal/promcheck"
)

const (
	runbookBase   = "https://github.com/lexiscore/gateway/blob/main/alerts/runbooks/"
	dashboardBase = "https://grafana.lexiscore.example/d/"
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
	known := knownMetrics(t)
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

// knownMetrics is the allowlist: the checked-in list of scraped series plus
// what the recording rules produce. To check against a live scrape instead,
// build it with promcheck.FromScrape on the body of the gateway's /metrics.
func knownMetrics(t *testing.T) promcheck.Metrics {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "metric-names.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	scraped, err := promcheck.ReadNameList(f)
	if err != nil {
		t.Fatal(err)
	}
	known, err := promcheck.Known("..", scraped)
	if err != nil {
		t.Fatal(err)
	}
	return known
}
