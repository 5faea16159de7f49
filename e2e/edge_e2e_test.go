package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/lexiscore/gateway/internal/testkit"
)

// TestCapturedSignatureRefusedByAnotherUpstream: a signed request captured
// on one backend is refused by another backend that trusts the same key,
// whether it is replayed as captured (signed for the first backend's
// authority) or with its Host changed (the signature no longer matches).
// Each backend's replay cache has never seen the nonce, so only the
// @authority binding refuses it.
func TestCapturedSignatureRefusedByAnotherUpstream(t *testing.T) {
	a := StartBackend(t, bins, nil)
	b := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{a.Addr}, nil)
	if resp := gw.Do(t, http.MethodGet, "/v1/users/u1/scores", nil, gw.Bearer(t, "u1", "free")); resp.StatusCode != http.StatusOK {
		t.Fatalf("through the gateway: %d", resp.StatusCode)
	}
	var seen []struct {
		Method, Path, Query, Host string
		Headers                   http.Header
	}
	a.Admin(t, "/requests", &seen)
	captured := seen[len(seen)-1]
	if captured.Host != a.Addr || captured.Headers.Get("Signature") == "" {
		t.Fatalf("captured Host %q, Signature %q: want the upstream's address, signed", captured.Host, captured.Headers.Get("Signature"))
	}
	replay := func(addr, host string) int {
		t.Helper()
		req, _ := http.NewRequest(captured.Method, "http://"+addr+captured.Path+"?"+captured.Query, nil)
		req.Header = captured.Headers.Clone()
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := replay(b.Addr, captured.Host); got != http.StatusUnauthorized {
		t.Errorf("replayed to another upstream as captured: %d, want 401", got)
	}
	if got := replay(b.Addr, b.Addr); got != http.StatusUnauthorized {
		t.Errorf("replayed to another upstream with its Host: %d, want 401", got)
	}
}

// TestAuthFailuresLimitedPerIPBeforeVerification: once one client address
// has failed authentication GATEWAY_RATE_IP_AUTH_FAILURES times, its
// requests are refused with 429 before any credential is verified (a valid
// token included, and without an audit line), while other addresses are
// served; past the log_denied rate, refusals are counted but not logged.
func TestAuthFailuresLimitedPerIPBeforeVerification(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, map[string]string{"GATEWAY_RATE_IP_AUTH_FAILURES": "5/m"})
	const flood, user = "198.51.100.7", "198.51.100.8"
	from := func(ip string, h http.Header) http.Header {
		h = h.Clone()
		h.Set("X-Forwarded-For", ip)
		return h
	}
	garbage := http.Header{"Authorization": {"Bearer not.a.token"}}
	for i := range 5 {
		if got := gw.Do(t, http.MethodGet, "/v1/users/u1/scores", nil, from(flood, garbage)).StatusCode; got != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, got)
		}
	}
	const refused = 40
	for i := range refused {
		h := garbage
		if i == 0 {
			h = gw.Bearer(t, "u1", "free")
		}
		resp := gw.Do(t, http.MethodGet, "/v1/users/u1/scores", nil, from(flood, h))
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("request %d past the limit: %d, want 429", i+1, resp.StatusCode)
		}
		if i == 0 {
			assertSecurityHeaders(t, resp)
			if doc := problemBody(t, resp); doc["policy"] != "ip_auth_failures" {
				t.Fatalf("problem %v, want policy ip_auth_failures", doc)
			}
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
				t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
			}
		}
	}
	if got := gw.Do(t, http.MethodGet, "/v1/users/u2/scores", nil, from(user, gw.Bearer(t, "u2", "free"))).StatusCode; got != http.StatusOK {
		t.Fatalf("another address: %d, want 200", got)
	}

	// Every refusal is counted; those not logged are counted apart, and
	// the access log holds the rest once its buffer is written out.
	scrape := gw.Metrics(t)
	if got := rlMetric(t, scrape, "gateway_ratelimit_decisions_total", `decision="denied",policy="ip_auth_failures"`); got != refused {
		t.Fatalf("%v denials counted, want %d", got, refused)
	}
	unlogged := rlMetric(t, scrape, "gateway_ratelimit_denials_unlogged_total", "")
	if unlogged < 1 {
		t.Fatalf("all %d refusals were logged: want them sampled", refused)
	}
	testkit.Eventually(t, "the access log lines of the logged refusals", func() error {
		var logged, audited int
		for _, line := range strings.Split(gw.Output(), "\n") {
			if !strings.Contains(line, `"client_ip":"`+flood+`"`) {
				continue
			}
			if strings.Contains(line, `"logger":"http.handlers.authenticate.audit"`) {
				audited++
			}
			if strings.Contains(line, `"status":429`) {
				logged++
			}
		}
		if audited != 5 {
			return fmt.Errorf("%d audit lines for the flooding address, want 5 (refusals never reach authenticate)", audited)
		}
		if logged+int(unlogged) != refused {
			return fmt.Errorf("%d refusals logged + %v unlogged, want %d", logged, unlogged, refused)
		}
		return nil
	})
}
