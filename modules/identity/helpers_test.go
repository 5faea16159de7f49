package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testSecret passes secret.Check; testNow is the fake clock's reading.
var (
	testSecret = []byte("k3J9vQ2xW7mZp4Ls8Tn1Rb6Yc0Hd5Fg+Ae/Uo=")
	testNow    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func fixedClock() time.Time { return testNow }

// testKeys are generated once: RSA generation is slow under -race.
type testKeys struct {
	rsa, rsaOther *rsa.PrivateKey
	ec            *ecdsa.PrivateKey
	ed            ed25519.PrivateKey
}

var (
	keysOnce sync.Once
	keysVal  testKeys
)

func keys(t testing.TB) testKeys {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if keysVal.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keysVal.rsaOther, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keysVal.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if _, keysVal.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
	return keysVal
}

// pemPublic encodes pub as a PKIX PEM block.
func pemPublic(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// claims returns valid claims at testNow; edits change them.
func claims(edits map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub":    "user-1",
		"tier":   "pro",
		"tenant": "acme",
		"iss":    "https://issuer.test",
		"aud":    "lexiscore",
		"iat":    testNow.Add(-time.Minute).Unix(),
		"nbf":    testNow.Add(-time.Minute).Unix(),
		"exp":    testNow.Add(time.Hour).Unix(),
	}
	for k, v := range edits {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// sign makes a token with method, key and an optional kid.
func sign(t testing.TB, m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return s
}

func mustKey(t testing.TB, material any, only ...string) Key {
	t.Helper()
	k, err := newKey(material, only)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
