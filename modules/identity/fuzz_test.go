package identity

import (
	"context"
	"slices"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

var allResults = []Result{ResultSuccess, ResultMissing, ResultMalformed, ResultOversized, ResultExpired, ResultNotYetValid,
	ResultIssuedInFuture, ResultWrongIssuer, ResultWrongAudience, ResultInvalidClaims, ResultAlgNotAllowed, ResultUnknownKey, ResultBadSignature,
	ResultUnsupportedCrit, ResultLifetimeTooLong}

// FuzzParseToken feeds arbitrary strings to the JWT verifier: it must never
// panic, always answer with a known result, and accept only what the test's
// own keys signed. Seeds: testdata/fuzz/FuzzParseToken and the tokens below.
func FuzzParseToken(f *testing.F) {
	k := keys(f)
	v := newTestVerifier(f)
	f.Add(sign(f, jwt.SigningMethodHS256, testSecret, "", claims(nil)))
	f.Add(sign(f, jwt.SigningMethodES256, k.ec, "ec-1", claims(nil)))
	f.Add(sign(f, jwt.SigningMethodHS256, pemPublic(f, &k.rsa.PublicKey), "rsa-1", claims(nil)))
	f.Add(sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", claims(nil)))
	f.Fuzz(func(t *testing.T, token string) {
		out := v.Verify(context.Background(), token)
		if !slices.Contains(allResults, out.Result) {
			t.Fatalf("unknown result %q", out.Result)
		}
		if len(token) > v.MaxTokenBytes() && out.Result != ResultOversized {
			t.Fatalf("a token of %d bytes got %q", len(token), out.Result)
		}
		if out.Result == ResultSuccess && out.User.ID != "user-1" {
			t.Fatalf("accepted a token for %q that the test never signed", out.User.ID)
		}
		if out.Result != ResultSuccess && out.User.ID != "" {
			t.Fatalf("refusal %q carries an identity", out.Result)
		}
	})
}

// FuzzAPIKey feeds arbitrary strings to the API key parser and store: no
// panic, and only the one real key is accepted.
func FuzzAPIKey(f *testing.F) {
	key, line := mintKey(f, "alice", "pro", "acme", nil)
	s := &KeyStore{now: fixedClock}
	recs, err := parseKeyFile([]byte(line))
	if err != nil {
		f.Fatal(err)
	}
	s.keys.Store(&recs)
	f.Add(key)
	f.Add(key[:len(key)-1] + "A")
	f.Fuzz(func(t *testing.T, candidate string) {
		id, perr := ParseAPIKey(candidate)
		out := s.Verify(candidate)
		if !slices.Contains(allResults, out.Result) {
			t.Fatalf("unknown result %q", out.Result)
		}
		if out.Result == ResultSuccess && candidate != key {
			t.Fatalf("accepted a key that was never minted")
		}
		if perr == nil && candidate != "" && out.Result == ResultMalformed {
			t.Fatalf("parsed (id %q) yet refused as malformed", id)
		}
	})
}
