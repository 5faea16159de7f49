package identity

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
)

// BenchmarkVerifyJWT checks one token over and over, as a client sending
// the same bearer token on every request makes the gateway do: "cached"
// answers all but the first from the token cache.
func BenchmarkVerifyJWT(b *testing.B) {
	k := keys(b)
	cached, _ := cachedTestVerifier(b, DefaultCacheSize, DefaultCacheTTL, fixedClock)
	verifiers := []struct {
		name string
		v    *Verifier
	}{{"uncached", newTestVerifier(b)}, {"cached", cached}}
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"HS256", sign(b, jwt.SigningMethodHS256, testSecret, "", claims(nil))},
		{"RS256", sign(b, jwt.SigningMethodRS256, k.rsa, "rsa-1", claims(nil))},
		{"ES256", sign(b, jwt.SigningMethodES256, k.ec, "ec-1", claims(nil))},
		{"EdDSA", sign(b, jwt.SigningMethodEdDSA, k.ed, "ed-1", claims(nil))},
	} {
		for _, vc := range verifiers {
			b.Run(tc.name+"/"+vc.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if out := vc.v.Verify(context.Background(), tc.token); out.Result != ResultSuccess {
						b.Fatal(out.Result)
					}
				}
			})
		}
	}
}

func BenchmarkVerifyAPIKey(b *testing.B) {
	key, line := mintKey(b, "alice", "pro", "acme", nil)
	path := filepath.Join(b.TempDir(), "keys.jsonl")
	writeKeys(b, path, line)
	s, err := NewKeyStore(path, fixedClock)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if out := s.Verify(key); out.Result != ResultSuccess {
			b.Fatal(out.Result)
		}
	}
}

// BenchmarkAuthenticateHandler is the whole per-request path: header
// stripping, the provider, the audit event (to a no-op core) and the metric;
// with the token cache (the default) and without.
func BenchmarkAuthenticateHandler(b *testing.B) {
	def := mustKey(b, testSecret)
	token := "Bearer " + sign(b, jwt.SigningMethodHS256, testSecret, "", claims(nil))
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	for _, tc := range []struct {
		name string
		ttl  time.Duration
	}{{"uncached", 0}, {"cached", DefaultCacheTTL}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := VerifierConfig{Default: &def, Now: fixedClock, TierClaim: "tier", TenantClaim: "tenant"}
			if tc.ttl > 0 {
				var err error
				if cfg.Cache, err = NewTokenCache(DefaultCacheSize, tc.ttl); err != nil {
					b.Fatal(err)
				}
			}
			j := &JWT{MaxTokenSize: DefaultMaxTokenBytes, verifier: NewVerifier(cfg)}
			a := &Authenticate{Realm: "lexiscore", providers: []namedProvider{{providerJWT, j}}, audit: zap.NewNop(), logger: zap.NewNop()}
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodGet, "/v1/scores", nil)
				r.Header.Set("Authorization", token)
				if err := a.ServeHTTP(w, r, next); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
