package e2e

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit"
)

// h1Client is c restricted to HTTP/1.1, one connection per request in flight.
func h1Client(c *http.Client) *http.Client {
	tr := c.Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	return &http.Client{Transport: tr, Timeout: c.Timeout, CheckRedirect: c.CheckRedirect}
}

// TestDrainCompletesInFlightRequests: 50 slow requests in flight (reads and
// scoring, HTTP/1.1 and HTTP/2), then SIGTERM. /readyz answers 503 at once
// while the gateway still serves; every request gets its answer; the
// process exits within shutdown_delay + grace_period.
func TestDrainCompletesInFlightRequests(t *testing.T) {
	const delay, grace = 2 * time.Second, 10 * time.Second
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, resilienceEnv(map[string]string{
		"GATEWAY_SHUTDOWN_DELAY":       delay.String(),
		"GATEWAY_GRACE_PERIOD":         grace.String(),
		"GATEWAY_READ_TIMEOUT":         "20s",
		"GATEWAY_READ_ATTEMPT_TIMEOUT": "20s",
	}))
	auth := gw.Bearer(t, "draining", "free")
	testkit.Eventually(t, "readiness", func() error {
		return ExpectStatus(gw.Client, gw.BaseURL+"/readyz", http.StatusOK)
	})
	be.SetFaults(t, map[string]any{"latency_ms": 3000})
	resetBackend(t, be)

	const inFlight = 50
	clients := []*http.Client{gw.Client, h1Client(gw.Client)}
	results := make([]callResult, inFlight)
	var wg sync.WaitGroup
	for i := range inFlight {
		wg.Go(func() {
			c := clients[i%2]
			if i%4 < 2 {
				results[i] = call(c, http.MethodGet, gw.BaseURL+"/v1/users/draining/scores", "", auth)
			} else {
				results[i] = call(c, http.MethodPost, gw.BaseURL+"/v1/scores", scoreBody, auth)
			}
		})
	}
	testkit.Eventually(t, "50 requests at the backend", func() error {
		if n := statsOf(t, be).InFlight; n < inFlight {
			return fmt.Errorf("%d in flight", n)
		}
		return nil
	})

	sent := time.Now()
	if err := gw.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Load balancers see the gateway leave at once, while it still serves
	// (a 503 is an answer: the listeners are still open).
	testkit.Eventually(t, "/readyz answering 503", func() error {
		return ExpectStatus(gw.Client, gw.BaseURL+"/readyz", http.StatusServiceUnavailable)
	})
	t.Logf("/readyz answered 503 %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
	wg.Wait()
	for i, r := range results {
		if r.err != nil || (r.status != http.StatusOK && r.status != http.StatusCreated) {
			t.Errorf("request %d in flight at SIGTERM: %d %v %s", i, r.status, r.err, r.body)
		}
	}
	if !gw.WaitExit(delay + grace + 5*time.Second) {
		t.Fatalf("the gateway still runs %v after SIGTERM", time.Since(sent))
	}
	t.Logf("all %d in-flight requests answered; exited %v after SIGTERM", inFlight, time.Since(sent).Round(time.Millisecond))
}

// TestShutdownIsBounded: a request slower than the grace period does not
// keep a stopping gateway alive.
func TestShutdownIsBounded(t *testing.T) {
	const grace = time.Second
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, resilienceEnv(map[string]string{
		"GATEWAY_GRACE_PERIOD":   grace.String(),
		"GATEWAY_SUBMIT_TIMEOUT": "60s",
	}))
	auth := gw.Bearer(t, "stuck", "free")
	be.SetFaults(t, map[string]any{"latency_ms": 60000})
	resetBackend(t, be)
	done := make(chan callResult, 1)
	go func() { done <- call(gw.Client, http.MethodPost, gw.BaseURL+"/v1/scores", scoreBody, auth) }()
	testkit.Eventually(t, "the request at the backend", func() error {
		if n := statsOf(t, be).InFlight; n < 1 {
			return fmt.Errorf("%d in flight", n)
		}
		return nil
	})
	sent := time.Now()
	if err := gw.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The harness's Stop would SIGKILL after 10 s; an eternal grace period
	// (Caddy's default) waits the full minute.
	if !gw.WaitExit(grace + 8*time.Second) {
		t.Fatalf("the gateway still runs %v after SIGTERM with a %v grace period", time.Since(sent), grace)
	}
	t.Logf("exited %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
	if r := <-done; r.err == nil && r.status < 500 {
		t.Errorf("a request cut by the grace period: %d, want an error", r.status)
	}
}
