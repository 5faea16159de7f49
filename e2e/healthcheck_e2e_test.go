package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/lexiscore/gateway/internal/testkit"
)

// TestProbesOnMetricsAddr: an orchestrator probes /healthz and /readyz on
// the private metrics address in plain HTTP, and `gateway healthcheck` (the
// container's health check) exits 0 only while /healthz answers.
func TestProbesOnMetricsAddr(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, nil)
	metrics := "http://" + gw.Env["GATEWAY_METRICS_ADDR"]

	testkit.Eventually(t, "/readyz on the metrics address", func() error {
		return ExpectStatus(http.DefaultClient, metrics+"/readyz", http.StatusOK)
	})
	if err := ExpectStatus(http.DefaultClient, metrics+"/healthz", http.StatusOK); err != nil {
		t.Fatal(err)
	}

	healthcheck := func(addr string) (string, error) {
		cmd := exec.Command(bins.Gateway, "healthcheck", "--timeout", "10s")
		cmd.Env = append(os.Environ(), "GATEWAY_METRICS_ADDR="+addr)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := healthcheck(gw.Env["GATEWAY_METRICS_ADDR"]); err != nil {
		t.Fatalf("gateway healthcheck of a running gateway: %v\n%s", err, out)
	}

	be.Stop()
	testkit.Eventually(t, "/readyz on the metrics address to say not ready", func() error {
		return ExpectStatus(http.DefaultClient, metrics+"/readyz", http.StatusServiceUnavailable)
	})
	gw.Stop()
	out, err := healthcheck(gw.Env["GATEWAY_METRICS_ADDR"])
	if err == nil || !strings.Contains(out, "health check") {
		t.Fatalf("gateway healthcheck of a stopped gateway: %v\n%s", err, out)
	}
}
