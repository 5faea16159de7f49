package promcheck

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// prometheusSeries are made by Prometheus itself, not by a scrape.
var prometheusSeries = Metrics{
	"up":               {"job": true, "instance": true},
	"ALERTS":           nil,
	"ALERTS_FOR_STATE": nil,
}

// ReadNameList reads a metric list: one series name per line followed by
// its label names, separated by spaces; blank lines and lines starting with
// '#' are skipped.
func ReadNameList(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if !model.LegacyValidation.IsValidMetricName(f[0]) {
			return nil, fmt.Errorf("metric list line %d: %q is not a metric name", n, f[0])
		}
		m.Add(f[0], f[1:]...)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading metric list: %w", err)
	}
	return m, nil
}

// FromScrape reads the body of a /metrics scrape in the Prometheus text
// format and returns every series name it contains, histograms and
// summaries expanded into their _bucket, _sum and _count series.
func FromScrape(r io.Reader) (Metrics, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing scrape: %w", err)
	}
	m := Metrics{}
	for name, mf := range families {
		var labels []string
		for _, metric := range mf.GetMetric() {
			for _, lp := range metric.GetLabel() {
				labels = append(labels, lp.GetName())
			}
		}
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			m.Add(name+"_bucket", append(labels, "le")...)
			m.Add(name+"_sum", labels...)
			m.Add(name+"_count", labels...)
		case dto.MetricType_SUMMARY:
			m.Add(name, append(labels, "quantile")...)
			m.Add(name+"_sum", labels...)
			m.Add(name+"_count", labels...)
		default:
			m.Add(name, labels...)
		}
	}
	return m, nil
}

// Known returns the metrics an expression may select: scraped (from
// ReadNameList or FromScrape), plus what the recording rules in
// root/alerts/rules produce, plus the series Prometheus makes itself
// (up, ALERTS).
func Known(root string, scraped Metrics) (Metrics, error) {
	rules, err := LoadRules(filepath.Join(root, "alerts", "rules"))
	if err != nil {
		return nil, err
	}
	known := Metrics{}
	known.Merge(scraped)
	known.Merge(prometheusSeries)
	for _, r := range rules {
		if r.Record != "" {
			known.AddAny(r.Record)
		}
	}
	return known, nil
}

// KnownFromList is Known for the checked-in list of the series a real
// scrape of the gateway exposes, root/alerts/testdata/metric-names.txt. To
// check against a live scrape instead, use FromScrape and Known.
func KnownFromList(root string) (Metrics, error) {
	f, err := os.Open(filepath.Join(root, "alerts", "testdata", "metric-names.txt"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	scraped, err := ReadNameList(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	return Known(root, scraped)
}

// All returns every PromQL expression the repository at root ships: its
// rules and its dashboards.
func All(root string) ([]Expr, error) {
	rules, err := LoadRules(filepath.Join(root, "alerts", "rules"))
	if err != nil {
		return nil, err
	}
	dash, err := DashboardExprs(filepath.Join(root, "dashboards"))
	if err != nil {
		return nil, err
	}
	return append(RuleExprs(rules), dash...), nil
}
