package identity

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/lexiscore/gateway/internal/testkit"
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
	want := testkit.Value(c) + 1
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

// TestJWKSCountersExistAtZero: a provisioned JWT provider exposes both
// refresh results from the first scrape, even without a JWKS, so the JWKS
// panel reads 0 instead of "No data".
func TestJWKSCountersExistAtZero(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	t.Setenv("JWKS_PRECREATE_SECRET", "7c1f0e9a4b2d8e6f3a5c7b9d1e0f2a4c")
	j := &JWT{SecretEnv: "JWKS_PRECREATE_SECRET"}
	if err := j.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(jwksRefreshes); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(&text, f); err != nil {
			t.Fatal(err)
		}
	}
	for _, result := range []string{"success", "failure"} {
		if !strings.Contains(text.String(), fmt.Sprintf(`gateway_jwks_refresh_total{result=%q}`, result)) {
			t.Errorf("no gateway_jwks_refresh_total{result=%q} series:\n%s", result, text.String())
		}
	}
}
