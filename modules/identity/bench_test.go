package identity

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
)

func BenchmarkVerifyJWT(b *testing.B) {
	k := keys(b)
	v := newTestVerifier(b)
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"HS256", sign(b, jwt.SigningMethodHS256, testSecret, "", claims(nil))},
		{"RS256", sign(b, jwt.SigningMethodRS256, k.rsa, "rsa-1", claims(nil))},
		{"ES256", sign(b, jwt.SigningMethodES256, k.ec, "ec-1", claims(nil))},
		{"EdDSA", sign(b, jwt.SigningMethodEdDSA, k.ed, "ed-1", claims(nil))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if out := v.Verify(context.Background(), tc.token); out.Result != ResultSuccess {
					b.Fatal(out.Result)
				}
			}
		})
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
// stripping, the provider, the audit event (to a no-op core) and the metric.
func BenchmarkAuthenticateHandler(b *testing.B) {
	def := mustKey(b, testSecret)
	j := &JWT{MaxTokenSize: DefaultMaxTokenBytes, verifier: NewVerifier(VerifierConfig{Default: &def, Now: fixedClock, TierClaim: "tier", TenantClaim: "tenant"})}
	a := &Authenticate{Realm: "lexiscore", providers: []namedProvider{{providerJWT, j}}, audit: zap.NewNop(), logger: zap.NewNop()}
	token := "Bearer " + sign(b, jwt.SigningMethodHS256, testSecret, "", claims(nil))
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, "/v1/scores", nil)
		r.Header.Set("Authorization", token)
		if err := a.ServeHTTP(w, r, next); err != nil {
			b.Fatal(err)
		}
	}
}
