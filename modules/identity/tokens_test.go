package identity

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// newTestVerifier has the default HMAC secret, two rotated HMAC keys, and
// RSA, ECDSA and Ed25519 keys, with iss and aud checked.
func newTestVerifier(t testing.TB) *Verifier {
	t.Helper()
	return NewVerifier(testVerifierConfig(t))
}

// testVerifierConfig is newTestVerifier's configuration, without a cache.
func testVerifierConfig(t testing.TB) VerifierConfig {
	t.Helper()
	k := keys(t)
	def := mustKey(t, testSecret)
	return VerifierConfig{
		Keys: map[string]Key{
			"hmac-2025": mustKey(t, []byte("old-0123456789abcdefghijklmnopqrstuv")),
			"hmac-2026": mustKey(t, []byte("new-0123456789abcdefghijklmnopqrstuv")),
			"rsa-1":     mustKey(t, &k.rsa.PublicKey),
			"ec-1":      mustKey(t, &k.ec.PublicKey),
			"ed-1":      mustKey(t, k.ed.Public()),
			"rs-only":   mustKey(t, &k.rsa.PublicKey, "RS256"),
		},
		Default:     &def,
		Issuer:      "https://issuer.test",
		Audience:    "lexiscore",
		Leeway:      30 * time.Second,
		TierClaim:   "tier",
		TenantClaim: "tenant",
		Now:         fixedClock,
	}
}

func TestVerifyToken(t *testing.T) {
	k := keys(t)
	v := newTestVerifier(t)
	hs := func(edits map[string]any) string {
		return sign(t, jwt.SigningMethodHS256, testSecret, "", claims(edits))
	}
	// An HS256 token whose "secret" is the RSA public key's PEM: what a
	// verifier that trusts the token's alg would accept.
	confused := sign(t, jwt.SigningMethodHS256, pemPublic(t, &k.rsa.PublicKey), "rsa-1", claims(nil))
	unsigned := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", claims(nil))
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS999","typ":"JWT"}`))
	unknownAlg := header + "." + strings.Split(hs(nil), ".")[1] + ".c2ln"

	cases := []struct {
		name  string
		token string
		want  Result
	}{
		{"default secret without kid", hs(nil), ResultSuccess},
		{"rotated key, old kid still valid", sign(t, jwt.SigningMethodHS256, []byte("old-0123456789abcdefghijklmnopqrstuv"), "hmac-2025", claims(nil)), ResultSuccess},
		{"rotated key, new kid", sign(t, jwt.SigningMethodHS512, []byte("new-0123456789abcdefghijklmnopqrstuv"), "hmac-2026", claims(nil)), ResultSuccess},
		{"RS256", sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", claims(nil)), ResultSuccess},
		{"PS256", sign(t, jwt.SigningMethodPS256, k.rsa, "rsa-1", claims(nil)), ResultSuccess},
		{"ES256", sign(t, jwt.SigningMethodES256, k.ec, "ec-1", claims(nil)), ResultSuccess},
		{"EdDSA", sign(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claims(nil)), ResultSuccess},
		{"expired within leeway", hs(map[string]any{"exp": testNow.Add(-20 * time.Second).Unix()}), ResultSuccess},
		{"iat in future within leeway", hs(map[string]any{"iat": testNow.Add(20 * time.Second).Unix()}), ResultSuccess},

		{"expired", hs(map[string]any{"exp": testNow.Add(-time.Minute).Unix()}), ResultExpired},
		{"nbf in future", hs(map[string]any{"nbf": testNow.Add(5 * time.Minute).Unix()}), ResultNotYetValid},
		{"iat in future beyond leeway", hs(map[string]any{"iat": testNow.Add(5 * time.Minute).Unix()}), ResultIssuedInFuture},
		{"wrong iss", hs(map[string]any{"iss": "https://evil.test"}), ResultWrongIssuer},
		{"no iss", hs(map[string]any{"iss": nil}), ResultInvalidClaims},
		{"wrong aud", hs(map[string]any{"aud": "someone-else"}), ResultWrongAudience},
		{"no exp", hs(map[string]any{"exp": nil}), ResultInvalidClaims},
		{"no sub", hs(map[string]any{"sub": nil}), ResultInvalidClaims},
		{"tier not a string", hs(map[string]any{"tier": 3}), ResultInvalidClaims},
		{"sub with a newline", hs(map[string]any{"sub": "a\nX-Auth-User-Id: admin"}), ResultInvalidClaims},
		{"alg none", unsigned, ResultAlgNotAllowed},
		{"unknown alg", unknownAlg, ResultAlgNotAllowed},
		{"HS256 against RSA key (confusion)", confused, ResultAlgNotAllowed},
		{"PS256 against a key narrowed to RS256", sign(t, jwt.SigningMethodPS256, k.rsa, "rs-only", claims(nil)), ResultAlgNotAllowed},
		{"ES256 token naming the RSA key", sign(t, jwt.SigningMethodES256, k.ec, "rsa-1", claims(nil)), ResultAlgNotAllowed},
		{"unknown kid", sign(t, jwt.SigningMethodHS256, testSecret, "nobody", claims(nil)), ResultUnknownKey},
		{"oversized", hs(map[string]any{"pad": strings.Repeat("x", DefaultMaxTokenBytes)}), ResultOversized},
		{"malformed: one segment", "abc", ResultMalformed},
		{"malformed: bad base64", "a.b.c", ResultMalformed},
		{"malformed: bad JSON", base64.RawURLEncoding.EncodeToString([]byte("{")) + ".e30.c2ln", ResultMalformed},
		{"empty", "", ResultMissing},
		{"wrong signature", sign(t, jwt.SigningMethodHS256, []byte("zz-0123456789abcdefghijklmnopqrstuv"), "", claims(nil)), ResultBadSignature},
		{"RS256 by another RSA key", sign(t, jwt.SigningMethodRS256, k.rsaOther, "rsa-1", claims(nil)), ResultBadSignature},
		{"crit header extension", critToken(t, []string{"exp"}), ResultUnsupportedCrit},
		{"empty crit list", critToken(t, []string{}), ResultUnsupportedCrit},
		{"valid for exactly the maximum lifetime", hs(map[string]any{"iat": testNow.Unix(), "exp": testNow.Add(DefaultMaxLifetime).Unix()}), ResultSuccess},
		{"valid for longer than the maximum lifetime", hs(map[string]any{"exp": testNow.Add(DefaultMaxLifetime).Unix()}), ResultLifetimeTooLong},
		{"valid for a hundred years", hs(map[string]any{"exp": testNow.AddDate(100, 0, 0).Unix()}), ResultLifetimeTooLong},
		{"no iat, expiring within the maximum lifetime", hs(map[string]any{"iat": nil, "exp": testNow.Add(23 * time.Hour).Unix()}), ResultSuccess},
		{"no iat, expiring beyond the maximum lifetime", hs(map[string]any{"iat": nil, "exp": testNow.Add(25 * time.Hour).Unix()}), ResultLifetimeTooLong},
		{"expired and forged: the signature is what is reported", sign(t, jwt.SigningMethodHS256, []byte("zz-0123456789abcdefghijklmnopqrstuv"), "", claims(map[string]any{"exp": testNow.Add(-time.Hour).Unix()})), ResultBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := v.Verify(context.Background(), tc.token)
			if out.Result != tc.want {
				t.Fatalf("result %q, want %q (cause: %v)", out.Result, tc.want, out.Err)
			}
			if tc.want != ResultSuccess {
				return
			}
			u := out.User
			if u.ID != "user-1" || u.Metadata["tier"] != "pro" || u.Metadata["tenant"] != "acme" || u.Metadata["provider"] != "jwt" {
				t.Fatalf("identity %+v", u)
			}
		})
	}
}

// critToken is a valid HS256 token whose header lists crit.
func critToken(t *testing.T, crit []string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(map[string]any{"exp": testNow.Add(time.Hour).Unix()}))
	tok.Header["crit"] = crit
	s, err := tok.SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyTokenScopes(t *testing.T) {
	v := newTestVerifier(t)
	cases := []struct {
		name  string
		edits map[string]any
		want  string // "" and no error: no scopes
		fails bool
	}{
		{"none", nil, "", false},
		{"scope claim, space-separated", map[string]any{"scope": "openid  scores:read:tenant openid"}, "openid scores:read:tenant", false},
		{"scp list", map[string]any{"scp": []string{"scores:read:any"}}, "scores:read:any", false},
		{"scope wins over scp", map[string]any{"scope": "a", "scp": []string{"b"}}, "a", false},
		{"a quote in a scope", map[string]any{"scope": `a"b`}, "", true},
		{"a scope that is not a string", map[string]any{"scp": []any{"a", 3}}, "", true},
		{"scope of the wrong type", map[string]any{"scope": 7}, "", true},
		{"too many scopes", map[string]any{"scope": manyScopes(maxScopes + 1)}, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, testSecret, "", claims(tc.edits)))
			if tc.fails {
				if out.Result != ResultInvalidClaims {
					t.Fatalf("result %q, want invalid_claims", out.Result)
				}
				return
			}
			if out.Result != ResultSuccess || out.User.Metadata["scopes"] != tc.want {
				t.Fatalf("result %q, scopes %q; want %q (%v)", out.Result, out.User.Metadata["scopes"], tc.want, out.Err)
			}
			if _, set := out.User.Metadata["scopes"]; tc.want == "" && set {
				t.Fatal("an empty scopes entry")
			}
		})
	}
}

func manyScopes(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "s%d ", i)
	}
	return b.String()
}

func TestVerifyTokenKIDNotString(t *testing.T) {
	v := newTestVerifier(t)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
	tok.Header["kid"] = 7
	s, err := tok.SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if out := v.Verify(context.Background(), s); out.Result != ResultUnknownKey {
		t.Fatalf("result %q, want unknown_key", out.Result)
	}
}

func TestVerifyTokenOptionalChecks(t *testing.T) {
	def := mustKey(t, testSecret)
	v := NewVerifier(VerifierConfig{Default: &def, Now: fixedClock, TierClaim: "plan", TenantClaim: "org"})
	tok := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"iss": "anyone", "aud": nil, "plan": "free", "org": "o1"}))
	out := v.Verify(context.Background(), tok)
	if out.Result != ResultSuccess {
		t.Fatalf("without iss/aud configured: %q (%v)", out.Result, out.Err)
	}
	if out.User.Metadata["tier"] != "free" || out.User.Metadata["tenant"] != "o1" {
		t.Fatalf("custom claims not mapped: %v", out.User.Metadata)
	}
	if out.KeyID != "" || out.User.Metadata["key_id"] != "" {
		t.Fatalf("no kid, yet key id %q", out.KeyID)
	}

	small := NewVerifier(VerifierConfig{Default: &def, Now: fixedClock, MaxTokenBytes: 300})
	if out := small.Verify(context.Background(), tok+strings.Repeat("A", 300)); out.Result != ResultOversized {
		t.Fatalf("max_token_size not applied: %q", out.Result)
	}
}

func TestVerifyTokenWithoutDefaultKey(t *testing.T) {
	k := keys(t)
	v := NewVerifier(VerifierConfig{Keys: map[string]Key{"rsa-1": mustKey(t, &k.rsa.PublicKey)}, Now: fixedClock})
	if out := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, testSecret, "", claims(nil))); out.Result != ResultAlgNotAllowed {
		// No HMAC key at all: HS256 is not even in the parser's list.
		t.Fatalf("HS256 without any HMAC key: %q", out.Result)
	}
	if out := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, k.rsa, "", claims(nil))); out.Result != ResultUnknownKey {
		t.Fatalf("no kid and no default key: %q", out.Result)
	}
}

func TestIssueTokenRoundTrip(t *testing.T) {
	tok, err := IssueToken(testSecret, TokenOptions{Subject: "demo", Tier: "free", Tenant: "acme", Issuer: "https://issuer.test", Audience: "lexiscore", TTL: time.Hour}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	out := newTestVerifier(t).Verify(context.Background(), tok)
	if out.Result != ResultSuccess || out.User.ID != "demo" || out.User.Metadata["tier"] != "free" {
		t.Fatalf("issued token: %q %+v (%v)", out.Result, out.User, out.Err)
	}
	if _, err := IssueToken([]byte("changeme"), TokenOptions{Subject: "demo", TTL: time.Hour}, testNow); err == nil {
		t.Fatal("issued a token with a weak secret")
	}
}
