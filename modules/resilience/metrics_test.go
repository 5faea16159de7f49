package resilience

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lexiscore/gateway/internal/testkit"
)

// TestRouteCountersExistAtZero: a provisioned route's retry, budget,
// fallback and rejection counters are scraped as 0 before anything
// happens, so dashboards and alerts read 0 instead of "No data"; features
// the route lacks make no series.
func TestRouteCountersExistAtZero(t *testing.T) {
	be := newBackend(t, always(http.StatusOK))
	start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	route /full {
		resilience precreate_full {
			retry 3
			hedge 200ms
			bulkhead 10 1s
			shed_when_degraded
			fallback {
				stale 1h
				static 200 degraded
			}
		}
		reverse_proxy %[1]s
	}
	route /bare {
		resilience precreate_bare
		reverse_proxy %[1]s
	}
}`, be.addr()))

	cases := []struct {
		c      prometheus.Collector
		labels map[string]string
		want   bool
	}{
		{retries, map[string]string{"route": "precreate_full", "reason": "status"}, true},
		{retries, map[string]string{"route": "precreate_full", "reason": "timeout"}, true},
		{retries, map[string]string{"route": "precreate_full", "reason": "transport"}, true},
		{retries, map[string]string{"route": "precreate_full", "reason": "hedge"}, true},
		{retryBudgetExhausted, map[string]string{"route": "precreate_full"}, true},
		{fallbacks, map[string]string{"route": "precreate_full", "kind": "stale"}, true},
		{fallbacks, map[string]string{"route": "precreate_full", "kind": "static"}, true},
		{fallbacks, map[string]string{"route": "precreate_full", "kind": "upstream"}, false},
		{concurrencyRejections, map[string]string{"route": "precreate_full", "reason": "bulkhead"}, true},
		{concurrencyRejections, map[string]string{"route": "precreate_full", "reason": "degraded"}, true},
		{concurrencyRejections, map[string]string{"route": "precreate_full", "reason": "limit"}, false},
		{retries, map[string]string{"route": "precreate_bare", "reason": "status"}, false},
		{retryBudgetExhausted, map[string]string{"route": "precreate_bare"}, false},
		{panicRouting, map[string]string{"route": "precreate_bare"}, true},
	}
	for _, tc := range cases {
		value, found := testkit.Series(t, tc.c, "", tc.labels)
		if found != tc.want || value != 0 {
			t.Errorf("%v: found %v with value %g, want found %v at 0", tc.labels, found, value, tc.want)
		}
	}
}
