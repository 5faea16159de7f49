package identity

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// TestMetricsSurviveReload registers into two registries in a row, as two
// config loads do, and checks the second one sees what was counted before.
func TestMetricsSurviveReload(t *testing.T) {
	first := prometheus.NewPedanticRegistry()
	if err := registerMetrics(first); err != nil {
		t.Fatal(err)
	}
	if err := registerMetrics(first); err != nil {
		t.Fatalf("registering twice into one registry: %v", err)
	}
	c := authRequests.WithLabelValues(providerAPIKey, string(ResultExpired))
	want := counterValue(t, c) + 1
	c.Inc()

	second := prometheus.NewPedanticRegistry()
	if err := registerMetrics(second); err != nil {
		t.Fatal(err)
	}
	families, err := second.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(&text, f); err != nil {
			t.Fatal(err)
		}
	}
	line := fmt.Sprintf(`gateway_auth_requests_total{provider="api_key",result="expired"} %g`, want)
	if !strings.Contains(text.String(), line+"\n") {
		t.Fatalf("the second registry lacks %q:\n%s", line, text.String())
	}
}
