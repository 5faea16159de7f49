package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
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
