package promcheck

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Dashboard is the part of a Grafana dashboard JSON model the checks read.
type Dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// Panel is a dashboard panel; a row keeps its panels inside while collapsed.
type Panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *Datasource `json:"datasource"`
	Targets    []Target    `json:"targets"`
	Panels     []Panel     `json:"panels"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
}

// Target is one query of a panel.
type Target struct {
	RefID      string      `json:"refId"`
	Datasource *Datasource `json:"datasource"`
	Expr       string      `json:"expr"`
}

// Datasource references a Grafana datasource.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Variable is a dashboard template variable.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource *Datasource     `json:"datasource"`
	Query      json.RawMessage `json:"query"`
}

// LoadDashboards reads every *.json dashboard in dir, in name order.
func LoadDashboards(dir string) (map[string]Dashboard, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("listing dashboards: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no dashboards in %s", dir)
	}
	out := map[string]Dashboard{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading dashboard: %w", err)
		}
		var d Dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out, nil
}

// AllPanels returns the dashboard's panels, rows' nested panels included.
func (d Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// DashboardExprs returns the PromQL of every Prometheus panel query and
// query variable of the dashboards in dir, Grafana variables substituted.
func DashboardExprs(dir string) ([]Expr, error) {
	dashboards, err := LoadDashboards(dir)
	if err != nil {
		return nil, err
	}
	exprs := panelExprs(dashboards, SubstituteVariables)
	for file, d := range dashboards {
		for _, v := range d.Templating.List {
			if v.Type != "query" || (v.Datasource != nil && v.Datasource.Type != "prometheus") {
				continue
			}
			e, ok, err := variableExpr(v)
			if err != nil {
				return nil, fmt.Errorf("%s variable %s: %w", file, v.Name, err)
			}
			if ok {
				e.Source = fmt.Sprintf("%s variable %s", file, v.Name)
				exprs = append(exprs, e)
			}
		}
	}
	return exprs, nil
}

// PanelQueries returns the PromQL of every Prometheus panel query of the
// dashboards in dir, ready to run on a real Prometheus: intervals become
// 1m and every other variable matches anything (".*"), as "All" does.
func PanelQueries(dir string) ([]Expr, error) {
	dashboards, err := LoadDashboards(dir)
	if err != nil {
		return nil, err
	}
	return panelExprs(dashboards, func(q string) string {
		q = builtinNumberRE.ReplaceAllString(q, "60")
		q = builtinDurationRE.ReplaceAllString(q, "1m")
		return variableRE.ReplaceAllString(q, ".*")
	}), nil
}

// panelExprs returns the Prometheus queries of every panel, each passed
// through substitute.
func panelExprs(dashboards map[string]Dashboard, substitute func(string) string) []Expr {
	var exprs []Expr
	for file, d := range dashboards {
		for _, p := range d.AllPanels() {
			for _, t := range p.Targets {
				ds := t.Datasource
				if ds == nil {
					ds = p.Datasource
				}
				if t.Expr == "" || (ds != nil && ds.Type != "prometheus") {
					continue
				}
				exprs = append(exprs, Expr{
					Source: fmt.Sprintf("%s panel %q query %s", file, p.Title, t.RefID),
					Query:  substitute(t.Expr),
				})
			}
		}
	}
	return exprs
}

var (
	labelValuesRE = regexp.MustCompile(`(?s)^label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$`)
	queryResultRE = regexp.MustCompile(`(?s)^query_result\((.*)\)$`)
	// Queries that name no metric: nothing to check.
	metricFreeRE = regexp.MustCompile(`^(label_names\(\)|label_values\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)|metrics\(.*\))$`)
)

// variableExpr turns a Prometheus query variable into the PromQL it runs.
func variableExpr(v Variable) (Expr, bool, error) {
	var q string
	if err := json.Unmarshal(v.Query, &q); err != nil {
		var obj struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &obj); err != nil {
			return Expr{}, false, fmt.Errorf("query is neither a string nor an object: %w", err)
		}
		q = obj.Query
	}
	q = strings.TrimSpace(SubstituteVariables(q))
	if m := labelValuesRE.FindStringSubmatch(q); m != nil {
		return Expr{Query: m[1], Labels: []string{m[2]}}, true, nil
	}
	if m := queryResultRE.FindStringSubmatch(q); m != nil {
		return Expr{Query: m[1]}, true, nil
	}
	if metricFreeRE.MatchString(q) {
		return Expr{}, false, nil
	}
	return Expr{}, false, fmt.Errorf("unsupported variable query %q", q)
}

var (
	// Grafana's interval variables become a plausible duration, its other
	// variables a plain word: both keep the expression parseable.
	builtinDurationRE = regexp.MustCompile(`\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}`)
	builtinNumberRE   = regexp.MustCompile(`\$(__interval_ms|__range_ms|__range_s)\b|\$\{(__interval_ms|__range_ms|__range_s)\}`)
	variableRE        = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*(:[^}]*)?\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[A-Za-z_][A-Za-z0-9_]*\]\]`)
)

// SubstituteVariables replaces Grafana variables in a query so that it can
// be parsed as PromQL: intervals by 5m, numbers by 300, others by a word.
func SubstituteVariables(q string) string {
	q = builtinNumberRE.ReplaceAllString(q, "300")
	q = builtinDurationRE.ReplaceAllString(q, "5m")
	return variableRE.ReplaceAllString(q, "var")
}
