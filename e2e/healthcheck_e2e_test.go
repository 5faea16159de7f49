package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

// TestOneProxyChecksEachUpstream: in the shipped Caddyfile a single
// reverse_proxy runs active health checks on each upstream. Caddy's
// caddy_reverse_proxy_upstreams_healthy gauge has no handler label, so a
// second proxy checking the same upstream (as /readyz once did) writes the
// same series with its own view and makes it flip.
func TestOneProxyChecksEachUpstream(t *testing.T) {
	cmd := exec.Command(bins.Gateway, "adapt", "--config", filepath.Join(bins.Root, "Caddyfile"))
	cmd.Env = append(os.Environ(), "SCORING_UPSTREAMS=127.0.0.1:9001 127.0.0.1:9003")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("adapting the Caddyfile: %v", err)
	}
	var cfg any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	checkers := map[string]int{}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "reverse_proxy" && v["health_checks"] != nil {
				ups, _ := v["upstreams"].([]any)
				for _, u := range ups {
					dial, _ := u.(map[string]any)["dial"].(string)
					checkers[dial]++
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(cfg)
	if len(checkers) != 2 {
		t.Fatalf("health-checked upstreams %v, want the two of SCORING_UPSTREAMS", checkers)
	}
	for dial, n := range checkers {
		if n != 1 {
			t.Errorf("upstream %s is health-checked by %d reverse proxies, want 1", dial, n)
		}
	}
}
