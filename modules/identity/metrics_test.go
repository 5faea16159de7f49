package identity

import (
	"context"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

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
	labels := map[string]string{"provider": "api_key", "result": "expired"}
	if got, ok := testkit.Gathered(t, second, "gateway_auth_requests_total", labels); got != want {
		t.Fatalf("the second registry has gateway_auth_requests_total%v = %g (found: %v), want %g", labels, got, ok, want)
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
	for _, result := range []string{"success", "failure"} {
		if _, ok := testkit.Gathered(t, reg, "gateway_jwks_refresh_total", map[string]string{"result": result}); !ok {
			t.Errorf("no gateway_jwks_refresh_total{result=%q} series", result)
		}
	}
}
