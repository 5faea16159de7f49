// Package dashboards holds the gateway's Grafana dashboards and their
// provisioning files. Its tests check that every dashboard is well formed,
// offers the instance and upstream variables, and that every PromQL query of
// every panel and variable parses and names only metrics and labels the
// gateway really exposes or a recording rule produces.
package dashboards

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/promcheck"
)

func load(t *testing.T) map[string]promcheck.Dashboard {
	t.Helper()
	dashboards, err := promcheck.LoadDashboards(".")
	if err != nil {
		t.Fatal(err)
	}
	return dashboards
}

func TestDashboardsWellFormed(t *testing.T) {
	dashboards := load(t)
	if len(dashboards) < 4 {
		t.Fatalf("%d dashboards, want overview, resilience, access and runtime", len(dashboards))
	}
	uids := map[string]string{}
	for file, d := range dashboards {
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: uid %q, title %q: both are needed for stable links", file, d.UID, d.Title)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s share uid %s", file, other, d.UID)
		}
		uids[d.UID] = file
		var vars []string
		for _, v := range d.Templating.List {
			vars = append(vars, v.Name)
		}
		for _, want := range []string{"datasource", "instance", "upstream"} {
			if !slices.Contains(vars, want) {
				t.Errorf("%s: no %q template variable", file, want)
			}
		}
		ids := map[int]bool{}
		for _, p := range d.AllPanels() {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d used twice", file, p.ID)
			}
			ids[p.ID] = true
			if p.Title == "" || p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
				t.Errorf("%s: panel %d (%q) lacks a title or a grid position", file, p.ID, p.Title)
			}
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID == "" {
				t.Errorf("%s: panel %q has no datasource", file, p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, p.Title)
			}
			refs := map[string]bool{}
			for _, q := range p.Targets {
				if refs[q.RefID] || q.RefID == "" {
					t.Errorf("%s: panel %q: refId %q missing or repeated", file, p.Title, q.RefID)
				}
				refs[q.RefID] = true
			}
		}
	}
}

// TestQueriesNameRealMetrics parses every Prometheus query of every panel
// and variable, and checks its metrics and labels against a real scrape of
// the gateway (alerts/testdata/metric-names.txt) plus the recording rules.
func TestQueriesNameRealMetrics(t *testing.T) {
	known, err := promcheck.KnownFromList("..")
	if err != nil {
		t.Fatal(err)
	}
	exprs, err := promcheck.DashboardExprs(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) < 50 {
		t.Fatalf("only %d queries found: is the dashboard parser missing panels?", len(exprs))
	}
	for _, err := range promcheck.Check(exprs, known) {
		t.Error(err)
	}
}

// TestProvisioning checks the provisioning files Grafana loads: the
// datasource uids the dashboards and exemplar links use, and the dashboards
// provider.
func TestProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, URL string
			JSONData             map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	testkit.ReadYAML(t, filepath.Join("provisioning", "datasources", "lexiscore-gateway.yml"), &ds)
	byUID := map[string]string{}
	for _, d := range ds.Datasources {
		byUID[d.UID] = d.Type
		if d.URL == "" {
			t.Errorf("datasource %s has no url", d.Name)
		}
	}
	for uid, typ := range map[string]string{"prometheus": "prometheus", "tempo": "tempo", "pyroscope": "grafana-pyroscope-datasource"} {
		if byUID[uid] != typ {
			t.Errorf("datasource uid %s: type %q, want %q", uid, byUID[uid], typ)
		}
	}
	// internal/telemetry.Observe names the exemplar label trace_id.
	for _, d := range ds.Datasources {
		if d.UID != "prometheus" {
			continue
		}
		dest, _ := d.JSONData["exemplarTraceIdDestinations"].([]any)
		if len(dest) != 1 || dest[0].(map[string]any)["name"] != "trace_id" || dest[0].(map[string]any)["datasourceUid"] != "tempo" {
			t.Errorf("prometheus exemplarTraceIdDestinations = %v, want trace_id → tempo", dest)
		}
	}

	var prov struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Type string
			Options    struct{ Path string }
		} `yaml:"providers"`
	}
	testkit.ReadYAML(t, filepath.Join("provisioning", "dashboards", "lexiscore-gateway.yml"), &prov)
	if prov.APIVersion != 1 || len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options.Path == "" {
		t.Errorf("dashboards provider = %+v, want one file provider with a path", prov)
	}
}
