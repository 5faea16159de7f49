package identity

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/lexiscore/gateway/internal/testkit"
)

// jwksServer serves a JWK Set that a test can change or take down.
type jwksServer struct {
	*httptest.Server
	mu   sync.Mutex
	keys map[string]any // kid → public key
	down bool
	hits atomic.Int32
}

func newJWKSServer(t *testing.T, keys map[string]any) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var set jwkset.JWKSMarshal
		for kid, k := range s.keys {
			jwk, err := jwkset.NewJWKFromKey(k, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
			if err != nil {
				t.Errorf("JWK for %s: %v", kid, err)
				return
			}
			set.Keys = append(set.Keys, jwk.Marshal())
		}
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// refreshLog records the OnRefresh reports.
type refreshLog struct{ ok, failed atomic.Int32 }

func (l *refreshLog) report(err error) {
	if err != nil {
		l.failed.Add(1)
		return
	}
	l.ok.Add(1)
}

func TestJWKSRotationAndBoundedRefresh(t *testing.T) {
	k := keys(t)
	srv := newJWKSServer(t, map[string]any{"rsa-1": &k.rsa.PublicKey})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log refreshLog
	kf, err := NewJWKS(ctx, JWKSOptions{URL: srv.URL, RefreshInterval: time.Hour, MinRefreshInterval: time.Hour, Timeout: 2 * time.Second, OnRefresh: log.report})
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(VerifierConfig{JWKS: kf, Now: fixedClock})

	if out := v.Verify(ctx, sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", claims(nil))); out.Result != ResultSuccess {
		t.Fatalf("JWKS key: %q (%v)", out.Result, out.Err)
	}
	if log.ok.Load() != 1 || srv.hits.Load() != 1 {
		t.Fatalf("after start: %d fetches, %d reported ok; want 1, 1", srv.hits.Load(), log.ok.Load())
	}

	// The issuer rotates in an ES256 key: its first token triggers a fetch.
	srv.set(func() { srv.keys["ec-2"] = &k.ec.PublicKey })
	if out := v.Verify(ctx, sign(t, jwt.SigningMethodES256, k.ec, "ec-2", claims(nil))); out.Result != ResultSuccess {
		t.Fatalf("rotated-in key: %q (%v)", out.Result, out.Err)
	}
	if srv.hits.Load() != 2 {
		t.Fatalf("fetches after rotation: %d, want 2", srv.hits.Load())
	}

	// Unknown kids do not make the gateway fetch again within the interval.
	start := time.Now()
	for range 20 {
		if out := v.Verify(ctx, sign(t, jwt.SigningMethodES256, k.ec, "nobody", claims(nil))); out.Result != ResultUnknownKey {
			t.Fatalf("unknown kid: %q", out.Result)
		}
	}
	if srv.hits.Load() != 2 {
		t.Fatalf("unknown kids caused %d fetches, want none", srv.hits.Load()-2)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("unknown kids waited %s for the rate limiter", d)
	}

	// Algorithm confusion through the JWKS: an HS256 token naming an RSA kid.
	confused := sign(t, jwt.SigningMethodHS256, pemPublic(t, &k.rsa.PublicKey), "rsa-1", claims(nil))
	if out := v.Verify(ctx, confused); out.Result != ResultAlgNotAllowed {
		t.Fatalf("HS256 against a JWKS RSA key: %q", out.Result)
	}
}

func TestJWKSOutageKeepsLastGoodKeys(t *testing.T) {
	k := keys(t)
	srv := newJWKSServer(t, map[string]any{"ed-1": k.ed.Public()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log refreshLog
	kf, err := NewJWKS(ctx, JWKSOptions{URL: srv.URL, RefreshInterval: 20 * time.Millisecond, MinRefreshInterval: time.Hour, Timeout: time.Second, OnRefresh: log.report})
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(VerifierConfig{JWKS: kf, Now: fixedClock})
	tok := sign(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claims(nil))

	srv.set(func() { srv.down = true })
	testkit.Eventually(t, "two failed refreshes", func() bool { return log.failed.Load() >= 2 })
	if out := v.Verify(ctx, tok); out.Result != ResultSuccess {
		t.Fatalf("during the JWKS outage: %q (%v)", out.Result, out.Err)
	}

	// Back up without ed-1: the key is revoked at the next refresh.
	srv.set(func() { srv.down = false; delete(srv.keys, "ed-1"); srv.keys["rsa-1"] = &k.rsa.PublicKey })
	okBefore := log.ok.Load()
	testkit.Eventually(t, "a good refresh", func() bool { return log.ok.Load() > okBefore })
	if out := v.Verify(ctx, tok); out.Result != ResultUnknownKey {
		t.Fatalf("after the key left the JWKS: %q", out.Result)
	}
}

func TestJWKSDownAtStart(t *testing.T) {
	srv := newJWKSServer(t, nil)
	srv.set(func() { srv.down = true })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log refreshLog
	kf, err := NewJWKS(ctx, JWKSOptions{URL: srv.URL, RefreshInterval: time.Hour, MinRefreshInterval: time.Hour, Timeout: time.Second, OnRefresh: log.report})
	if err != nil {
		t.Fatalf("an unreachable JWKS must not stop the start: %v", err)
	}
	if log.failed.Load() != 1 {
		t.Fatalf("failed fetches reported: %d, want 1", log.failed.Load())
	}
	v := NewVerifier(VerifierConfig{JWKS: kf, Now: fixedClock})
	if out := v.Verify(ctx, sign(t, jwt.SigningMethodEdDSA, keys(t).ed, "ed-1", claims(nil))); out.Result != ResultUnknownKey {
		t.Fatalf("with no keys yet: %q", out.Result)
	}
}
