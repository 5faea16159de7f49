package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// runMetric prints the sum of a counter's or gauge's samples in one scrape,
// over the series whose labels match every label=value given: the scripts
// take differences of it around a scenario (attempts per request).
func runMetric(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("metric", flag.ContinueOnError)
	url := fs.String("url", "", "the /metrics URL (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || fs.NArg() < 1 {
		return errors.New("metric needs -url and a metric name")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(*url)
	if err != nil {
		return fmt.Errorf("scraping %s: %w", *url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scraping %s: %s", *url, resp.Status)
	}
	v, err := sumMetric(resp.Body, fs.Arg(0), fs.Args()[1:])
	if err != nil {
		return err
	}
	fmt.Fprintln(out, v)
	return nil
}

// sumMetric adds the samples of name in a text-format scrape whose labels
// match the label=value selectors; a metric absent from the scrape is 0 (a
// counter vector has no series before its first increment).
func sumMetric(scrape io.Reader, name string, selectors []string) (float64, error) {
	want := map[string]string{}
	for _, s := range selectors {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return 0, fmt.Errorf("label selector %q: want label=value", s)
		}
		want[k] = v
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(scrape)
	if err != nil {
		return 0, fmt.Errorf("parsing the scrape: %w", err)
	}
	mf, ok := families[name]
	if !ok {
		return 0, nil
	}
	var sum float64
	for _, m := range mf.GetMetric() {
		if !matches(m.GetLabel(), want) {
			continue
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			sum += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			sum += m.GetGauge().GetValue()
		case dto.MetricType_UNTYPED:
			sum += m.GetUntyped().GetValue()
		default:
			return 0, fmt.Errorf("metric %s is a %s: only counters and gauges add up", name, mf.GetType())
		}
	}
	return sum, nil
}

func matches(labels []*dto.LabelPair, want map[string]string) bool {
	n := 0
	for _, l := range labels {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}
