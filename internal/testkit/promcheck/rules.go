package promcheck

import (
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// Rule is one alerting or recording rule of a Prometheus rule file.
type Rule struct {
	// File and Group say where the rule is.
	File, Group string
	// Exactly one of Alert and Record is set.
	Alert, Record string
	Expr, For     string
	Labels        map[string]string
	Annotations   map[string]string
}

// ruleFile is the layout of a Prometheus rule file.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// LoadRules reads every *.yml rule file in dir, in name order.
func LoadRules(dir string) ([]Rule, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		return nil, fmt.Errorf("listing rule files: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no rule files in %s", dir)
	}
	var rules []Rule
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading rules: %w", err)
		}
		var rf ruleFile
		if err := yaml.Unmarshal(b, &rf); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", f, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				rules = append(rules, Rule{
					File: filepath.Base(f), Group: g.Name, Alert: r.Alert, Record: r.Record,
					Expr: r.Expr, For: r.For, Labels: r.Labels, Annotations: r.Annotations,
				})
			}
		}
	}
	return rules, nil
}

// RuleExprs returns the expression of every rule.
func RuleExprs(rules []Rule) []Expr {
	exprs := make([]Expr, 0, len(rules))
	for _, r := range rules {
		name := r.Alert
		if name == "" {
			name = r.Record
		}
		exprs = append(exprs, Expr{Source: fmt.Sprintf("%s group %s rule %s", r.File, r.Group, name), Query: r.Expr})
	}
	return exprs
}
