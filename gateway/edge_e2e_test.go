package main

import (
	"net/http"
	"testing"

	"github.com/lexiscore/gateway/internal/e2e"
)

// TestCapturedSignatureRefusedByAnotherUpstream: a signed request captured
// on one backend is refused by another backend that trusts the same key,
// whether it is replayed as captured (signed for the first backend's
// authority) or with its Host changed (the signature no longer matches).
// Each backend's replay cache has never seen the nonce, so only the
// @authority binding refuses it.
func TestCapturedSignatureRefusedByAnotherUpstream(t *testing.T) {
	a := e2e.StartBackend(t, bins, nil)
	b := e2e.StartBackend(t, bins, nil)
	gw := e2e.StartGateway(t, bins, []string{a.Addr}, nil)
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
