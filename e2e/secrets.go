package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SigningKeyID names the key the gateway signs upstream requests with and the
// backends started here verify; its secret is made fresh for each test process.
const SigningKeyID = "gateway-1"

var signingSecret = randomSecret()

// randomSecret returns 32 random bytes in base64, as deploy/run-local.sh does.
func randomSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// writeSecret stores secret in a file of the test's own and returns its path.
func writeSecret(t testing.TB, secret string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "signing.key")
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		t.Fatalf("writing signing secret: %v", err)
	}
	return path
}

// Claims are what a test token says; empty fields are left out of it.
type Claims struct {
	Subject, Tier, Tenant, Issuer, Audience string
	// Scopes become the space-separated scope claim.
	Scopes []string
	// IssuedAt defaults to now, TTL to an hour.
	IssuedAt time.Time
	TTL      time.Duration
}

// SignedBearer returns an Authorization header with SignedToken(secret, c).
func SignedBearer(t testing.TB, secret string, c Claims) http.Header {
	t.Helper()
	return http.Header{"Authorization": {"Bearer " + SignedToken(t, secret, c)}}
}

// SignedToken returns an HS256 token for c signed with secret as a token
// issuer would: minted here with golang-jwt, not by the gateway's own code,
// so the tests check the gateway against the JWT standard rather than
// against itself.
func SignedToken(t testing.TB, secret string, c Claims) string {
	t.Helper()
	iat := c.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	ttl := c.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	claims := jwt.MapClaims{"sub": c.Subject, "iat": iat.Unix(), "nbf": iat.Unix(), "exp": iat.Add(ttl).Unix()}
	for k, v := range map[string]string{"tier": c.Tier, "tenant": c.Tenant, "iss": c.Issuer, "aud": c.Audience, "scope": strings.Join(c.Scopes, " ")} {
		if v != "" {
			claims[k] = v
		}
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatalf("signing a token: %v", err)
	}
	return tok
}
