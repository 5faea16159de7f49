package telemetry

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lexiscore/gateway/internal/testkit"
)

func TestRegister(t *testing.T) {
	opts := prometheus.CounterOpts{Name: "gateway_test_requests_total", Help: "Requests."}
	mine := prometheus.NewCounter(opts)
	reg := prometheus.NewRegistry()
	if err := Register(reg, mine); err != nil {
		t.Fatalf("first registration: %v", err)
	}
	if err := Register(reg, mine); err != nil {
		t.Errorf("the same collector again (a config reload): %v", err)
	}
	if v, ok := testkit.Gathered(t, reg, "gateway_build_info", nil); !ok || v != 1 {
		t.Errorf("gateway_build_info = %v (found %v) beside a module's collectors, want 1", v, ok)
	}
	clash := prometheus.NewCounter(opts)
	err := Register(reg, clash)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("another collector of the same name = %v, want an AlreadyRegisteredError", err)
	}
}
