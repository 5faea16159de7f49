package promcheck

import (
	"encoding/json"
	"strings"
	"testing"
)

var testKnown = Metrics{
	"http_requests_total":           {"code": true, "route": true},
	"http_duration_seconds_bucket":  {"route": true, "le": true},
	"breaker_state":                 {"upstream": true, "state": true},
	"job:http_errors:ratio_rate5m":  nil,
	"process_start_time_seconds":    {},
	"http_duration_seconds_count":   {"route": true},
	"up":                            {"job": true, "instance": true},
	"queue_in_flight":               {"route": true},
	"queue_limit":                   {"route": true},
	"auth_requests_total":           {"provider": true, "result": true},
	"ratelimit_store_errors_total":  {"store": true},
	"ratelimit_decisions_total":     {"policy": true, "decision": true},
	"jwks_refresh_total":            {"result": true},
	"config_last_reload_successful": {},
}

func TestCheck(t *testing.T) {
	cases := []struct {
		name, query string
		labels      []string
		wantErr     string
	}{
		{"valid rate", `sum by (route) (rate(http_requests_total{job="gateway",code=~"5.."}[5m]))`, nil, ""},
		{"target labels allowed", `up{job="gateway",instance="a"} == 0`, nil, ""},
		{"recorded series take any label", `job:http_errors:ratio_rate5m{slo="x"} > 0.1`, nil, ""},
		{"histogram quantile", `histogram_quantile(0.9, sum by (le, route) (rate(http_duration_seconds_bucket[5m])))`, nil, ""},
		{"on labels of both sides", `sum by (job, route) (rate(http_requests_total[5m])) / on (job) group_left sum by (job) (rate(http_duration_seconds_count[5m]))`, nil, ""},
		{"without drops labels", `sum without (state) (breaker_state{state="open"}) > 0`, nil, ""},
		{"label_replace adds its label", `sum by (svc) (label_replace(up, "svc", "$1", "job", "(.*)"))`, nil, ""},
		{"vector has no labels", `vector(1)`, nil, ""},
		{"absent", `absent(up{job="gateway"})`, nil, ""},
		{"unknown metric", `rate(http_request_total[5m])`, nil, `metric "http_request_total" is not exposed`},
		{"unknown label matcher", `http_requests_total{rout="x"}`, nil, `has no label "rout"`},
		{"unknown grouping label", `sum by (upstrem) (breaker_state)`, nil, `by/without label "upstrem"`},
		{"grouping label dropped by inner sum", `sum by (route) (sum by (code) (rate(http_requests_total[5m])))`, nil, `by/without label "route"`},
		{"unknown matching label", `queue_in_flight / on (rout) queue_limit`, nil, `matching label "rout"`},
		{"required label present", `breaker_state{job="gateway"}`, []string{"upstream"}, ""},
		{"required label missing", `up{job="gateway"}`, []string{"upstream"}, `label "upstream" is not on`},
		{"parse error", `sum(rate(http_requests_total[5m])`, nil, "does not parse"},
		{"no metric name", `{route="x"}`, nil, "without a metric name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := Check([]Expr{{Source: "test", Query: tc.query, Labels: tc.labels}}, testKnown)
			if tc.wantErr == "" {
				for _, err := range errs {
					t.Errorf("unexpected: %v", err)
				}
				return
			}
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.wantErr) {
				t.Fatalf("got %v, want one error containing %q", errs, tc.wantErr)
			}
		})
	}
}

func TestSubstituteVariables(t *testing.T) {
	cases := map[string]string{
		`rate(x{instance=~"$instance"}[$__rate_interval])`:           `rate(x{instance=~"var"}[5m])`,
		`increase(x{upstream=~"${upstream:regex}"}[${__range}])`:     `increase(x{upstream=~"var"}[5m])`,
		`x{a="[[legacy]]"} * $__range_s + $__interval_ms + $__range`: `x{a="var"} * 300 + 300 + 5m`,
	}
	for in, want := range cases {
		if got := SubstituteVariables(in); got != want {
			t.Errorf("SubstituteVariables(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestVariableExpr(t *testing.T) {
	cases := []struct {
		query     string
		want      Expr
		ok        bool
		wantError bool
	}{
		{`"label_values(up{job=\"gateway\"}, instance)"`, Expr{Query: `up{job="gateway"}`, Labels: []string{"instance"}}, true, false},
		{`{"query": "label_values(breaker_state{instance=~\"$instance\"}, upstream)", "refId": "A"}`,
			Expr{Query: `breaker_state{instance=~"var"}`, Labels: []string{"upstream"}}, true, false},
		{`"query_result(topk(5, up))"`, Expr{Query: `topk(5, up)`}, true, false},
		{`"label_values(job)"`, Expr{}, false, false},
		{`"something else"`, Expr{}, false, true},
	}
	for _, tc := range cases {
		got, ok, err := variableExpr(Variable{Name: "v", Type: "query", Query: json.RawMessage(tc.query)})
		if (err != nil) != tc.wantError || ok != tc.ok || got.Query != tc.want.Query || strings.Join(got.Labels, ",") != strings.Join(tc.want.Labels, ",") {
			t.Errorf("variableExpr(%s) = %+v, %v, %v; want %+v, %v, error %v", tc.query, got, ok, err, tc.want, tc.ok, tc.wantError)
		}
	}
}

func TestFromScrape(t *testing.T) {
	scrape := `# HELP req_duration_seconds Request duration.
# TYPE req_duration_seconds histogram
req_duration_seconds_bucket{route="a",le="0.1"} 1
req_duration_seconds_bucket{route="a",le="+Inf"} 2
req_duration_seconds_sum{route="a"} 0.3
req_duration_seconds_count{route="a"} 2
# HELP gc_seconds GC pauses.
# TYPE gc_seconds summary
gc_seconds{quantile="0.5"} 0.001
gc_seconds_sum 0.01
gc_seconds_count 3
# HELP hits_total Hits.
# TYPE hits_total counter
hits_total{code="200"} 4
hits_total{method="GET"} 1
`
	m, err := FromScrape(strings.NewReader(scrape))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"req_duration_seconds_bucket": {"route", "le"},
		"req_duration_seconds_sum":    {"route"},
		"req_duration_seconds_count":  {"route"},
		"gc_seconds":                  {"quantile"},
		"gc_seconds_sum":              {},
		"gc_seconds_count":            {},
		"hits_total":                  {"code", "method"},
	}
	if len(m) != len(want) {
		t.Fatalf("got %d metrics %v, want %d", len(m), m, len(want))
	}
	for name, labels := range want {
		got, ok := m[name]
		if !ok || got == nil || len(got) != len(labels) {
			t.Errorf("%s: labels %v, want %v", name, got, labels)
			continue
		}
		for _, l := range labels {
			if !got[l] {
				t.Errorf("%s: no label %s in %v", name, l, got)
			}
		}
	}
}

func TestReadNameList(t *testing.T) {
	m, err := ReadNameList(strings.NewReader("# comment\n\nup job instance\nprocess_open_fds\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !m["up"]["instance"] || m["process_open_fds"] == nil || len(m["process_open_fds"]) != 0 {
		t.Fatalf("got %v", m)
	}
	if _, err := ReadNameList(strings.NewReader("not-a-name x\n")); err == nil {
		t.Fatal("an invalid metric name was accepted")
	}
}
