// Package promcheck proves that the PromQL the gateway ships (alerting and
// recording rules, Grafana panels and template variables) parses, and selects
// only metrics and labels that the gateway or a recording rule really
// produces. A typo would otherwise leave a panel silently empty or an alert
// silently unable to fire.
//
// The set of real metrics comes from a scrape: a checked-in list
// (alerts/testdata/metric-names.txt, read with ReadNameList) or a live
// /metrics body (FromScrape), merged with the recording rules' outputs by
// Known.
package promcheck

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// Expr is one PromQL expression and where it was found.
type Expr struct {
	// Source names the file and the rule or panel, for error messages.
	Source string
	// Query is the PromQL, with any Grafana variables already substituted.
	Query string
	// Labels must all be labels of Query's result: the label a Grafana
	// label_values() variable lists.
	Labels []string
}

// Metrics maps a series name to the label names its series carry. A nil
// label set means any label is accepted (series made by recording rules or
// by Prometheus itself with open-ended labels).
type Metrics map[string]map[string]bool

// targetLabels are attached by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

// Add records name with the given label names, merging with what is
// already known about it.
func (m Metrics) Add(name string, labels ...string) {
	cur, seen := m[name]
	if seen && cur == nil {
		return
	}
	if cur == nil {
		cur = map[string]bool{}
		m[name] = cur
	}
	for _, l := range labels {
		cur[l] = true
	}
}

// AddAny records name as accepting any label.
func (m Metrics) AddAny(name string) { m[name] = nil }

// Merge adds every metric of other to m.
func (m Metrics) Merge(other Metrics) {
	for name, labels := range other {
		if labels == nil {
			m.AddAny(name)
			continue
		}
		m.Add(name, slices.Collect(maps.Keys(labels))...)
	}
}

// Check parses every expression and returns one error per problem: a parse
// error, a metric that known does not have, a label matcher, grouping or
// vector-matching label, or a required label that the metrics involved do
// not carry.
func Check(exprs []Expr, known Metrics) []error {
	var errs []error
	for _, e := range exprs {
		for _, msg := range checkOne(e, known) {
			errs = append(errs, fmt.Errorf("%s: %s\n\t%s", e.Source, msg, oneLine(e.Query)))
		}
	}
	return errs
}

func checkOne(e Expr, known Metrics) []string {
	ast, err := parser.ParseExpr(e.Query)
	if err != nil {
		return []string{fmt.Sprintf("does not parse: %v", err)}
	}
	var problems []string
	parser.Inspect(ast, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			problems = append(problems, checkSelector(n, known)...)
		case *parser.AggregateExpr:
			if inner, ok := labelsOf(n.Expr, known); ok {
				for _, l := range n.Grouping {
					if !inner[l] {
						problems = append(problems, fmt.Sprintf("%s by/without label %q is not on the aggregated series", n.Op, l))
					}
				}
			}
		case *parser.BinaryExpr:
			if n.VectorMatching == nil {
				break
			}
			lhs, lok := labelsOf(n.LHS, known)
			rhs, rok := labelsOf(n.RHS, known)
			if !lok || !rok {
				break
			}
			for _, l := range n.VectorMatching.MatchingLabels {
				if !lhs[l] && !rhs[l] {
					problems = append(problems, fmt.Sprintf("matching label %q is on neither side of %s", l, n.Op))
				}
			}
		}
		return nil
	})
	if len(e.Labels) > 0 {
		if got, ok := labelsOf(ast, known); ok {
			for _, l := range e.Labels {
				if !got[l] {
					problems = append(problems, fmt.Sprintf("label %q is not on the selected series", l))
				}
			}
		}
	}
	return problems
}

func checkSelector(vs *parser.VectorSelector, known Metrics) []string {
	name := selectorName(vs)
	if name == "" {
		return []string{"selector without a metric name"}
	}
	labels, ok := known[name]
	if !ok {
		return []string{fmt.Sprintf("metric %q is not exposed by the gateway nor recorded by a rule", name)}
	}
	if labels == nil {
		return nil
	}
	var problems []string
	for _, m := range vs.LabelMatchers {
		if m.Name != "__name__" && !labels[m.Name] && !slices.Contains(targetLabels, m.Name) {
			problems = append(problems, fmt.Sprintf("metric %q has no label %q", name, m.Name))
		}
	}
	return problems
}

func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == "__name__" && m.Type.String() == "=" {
			return m.Value
		}
	}
	return ""
}

// labelsOf returns the label names an expression's result can carry, and
// false when that cannot be known (a series with open-ended labels
// somewhere inside). Binary operations return the union of both sides: a
// superset, so the check never rejects a valid expression.
func labelsOf(e parser.Expr, known Metrics) (map[string]bool, bool) {
	switch n := e.(type) {
	case *parser.VectorSelector:
		labels, ok := known[selectorName(n)]
		if !ok || labels == nil {
			return nil, false
		}
		out := maps.Clone(labels)
		for _, l := range targetLabels {
			out[l] = true
		}
		return out, true
	case *parser.MatrixSelector:
		return labelsOf(n.VectorSelector, known)
	case *parser.SubqueryExpr:
		return labelsOf(n.Expr, known)
	case *parser.ParenExpr:
		return labelsOf(n.Expr, known)
	case *parser.UnaryExpr:
		return labelsOf(n.Expr, known)
	case *parser.StepInvariantExpr:
		return labelsOf(n.Expr, known)
	case *parser.NumberLiteral, *parser.StringLiteral:
		return map[string]bool{}, true
	case *parser.AggregateExpr:
		inner, ok := labelsOf(n.Expr, known)
		switch {
		case !n.Without && (n.Op == parser.SUM || n.Op == parser.AVG || n.Op == parser.MIN || n.Op == parser.MAX ||
			n.Op == parser.COUNT || n.Op == parser.GROUP || n.Op == parser.STDDEV || n.Op == parser.STDVAR ||
			n.Op == parser.QUANTILE || n.Op == parser.COUNT_VALUES):
			out := map[string]bool{}
			for _, l := range n.Grouping {
				out[l] = true
			}
			if n.Op == parser.COUNT_VALUES {
				if s, isString := n.Param.(*parser.StringLiteral); isString {
					out[s.Val] = true
				}
			}
			return out, true
		case !ok:
			return nil, false
		case n.Without:
			out := maps.Clone(inner)
			for _, l := range n.Grouping {
				delete(out, l)
			}
			return out, true
		default: // topk, bottomk keep the series whole
			return inner, true
		}
	case *parser.BinaryExpr:
		lhs, lok := labelsOf(n.LHS, known)
		rhs, rok := labelsOf(n.RHS, known)
		if !lok || !rok {
			return nil, false
		}
		out := maps.Clone(lhs)
		maps.Copy(out, rhs)
		return out, true
	case *parser.Call:
		return callLabels(n, known)
	}
	return nil, false
}

func callLabels(c *parser.Call, known Metrics) (map[string]bool, bool) {
	switch c.Func.Name {
	case "vector", "time", "scalar", "pi":
		return map[string]bool{}, true
	case "absent", "absent_over_time":
		return nil, false
	}
	out := map[string]bool{}
	for _, arg := range c.Args {
		if arg.Type() != parser.ValueTypeVector && arg.Type() != parser.ValueTypeMatrix {
			continue
		}
		labels, ok := labelsOf(arg, known)
		if !ok {
			return nil, false
		}
		maps.Copy(out, labels)
	}
	if c.Func.Name == "label_replace" || c.Func.Name == "label_join" {
		if s, ok := c.Args[1].(*parser.StringLiteral); ok {
			out[s.Val] = true
		}
	}
	return out, true
}

func oneLine(q string) string {
	return strings.Join(strings.Fields(q), " ")
}
