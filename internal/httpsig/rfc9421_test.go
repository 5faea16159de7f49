package httpsig

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestRFC9421AppendixB25 checks this package against the RFC's own HMAC
// test vector (Appendix B.2.5, "Signing a Request Using hmac-sha256"): the
// component values of the RFC's test request (Appendix B.2), and the MAC of
// the signature base the RFC prints, encoded as a Signature member.
func TestRFC9421AppendixB25(t *testing.T) {
	secret, err := base64.StdEncoding.DecodeString("uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==")
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "http://example.com/foo?param=Value&Pet=dog", nil)
	r.Header.Set("Date", "Tue, 20 Apr 2021 02:07:55 GMT")
	r.Header.Set("Content-Type", "application/json")
	for name, want := range map[string]string{
		"@method":      "POST",
		"@path":        "/foo",
		"@query":       "?param=Value&Pet=dog",
		"date":         "Tue, 20 Apr 2021 02:07:55 GMT",
		"content-type": "application/json",
	} {
		if got, err := componentValue(r, name); err != nil || got != want {
			t.Errorf("component %q = %q, %v; want %q", name, got, err, want)
		}
	}
	const base = `"date": Tue, 20 Apr 2021 02:07:55 GMT` + "\n" +
		`"@authority": example.com` + "\n" +
		`"content-type": application/json` + "\n" +
		`"@signature-params": ("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"`
	if got, want := base64.StdEncoding.EncodeToString(mac(secret, []byte(base))), "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8="; got != want {
		t.Errorf("sig-b25 = %s, want the RFC's %s", got, want)
	}
}

// FuzzVerify feeds hostile signature headers, paths and digests to Verify:
// it must never panic, and must refuse anything it was not given signed,
// with one of the package's errors (a bounded reason, a safe detail).
func FuzzVerify(f *testing.F) {
	at := time.Unix(1_700_000_000, 0)
	s, err := NewSigner(keyOld, func() time.Time { return at })
	if err != nil {
		f.Fatal(err)
	}
	// A fixed nonce: fuzzing workers rebuild the seeds, which must match.
	s.nonce = func() string { return "J6MXA3ZHBW4QZ2UJ5RUXGZQJKE" }
	signed := httptest.NewRequest(http.MethodPost, "/v1/scores?x=1", nil)
	signed.Header.Set("X-Request-ID", "req-1")
	if err := s.Sign(signed, [32]byte{}); err != nil {
		f.Fatal(err)
	}
	input, sig := signed.Header.Get(HeaderSignatureInput), signed.Header.Get(HeaderSignature)
	digest := signed.Header.Get(HeaderContentDigest)
	f.Add("/v1/scores?x=1", input, sig, digest)
	f.Add("/v1/scores?x=2", input, sig, digest)
	f.Add("/", `gateway=();created=1`, `gateway=:AAAA:`, "")
	f.Add("/", `gateway=("@method" "@path");created=-1;keyid="gw-old";alg="hmac-sha256"`, `gateway=:=:`, `sha-256=:x:`)
	f.Add("/%zz", "", "", "")
	f.Fuzz(func(t *testing.T, target, input, sig, digest string) {
		r, err := http.NewRequest(http.MethodPost, "http://gateway.test"+target, nil)
		if err != nil {
			return
		}
		r.Header.Set(HeaderSignatureInput, input)
		r.Header.Set(HeaderSignature, sig)
		r.Header.Set(HeaderContentDigest, digest)
		r.Header.Set("X-Request-ID", "req-1")
		v, err := NewVerifier([]Key{keyOld}, Options{Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		vd, err := v.Verify(r)
		if err == nil {
			if r.URL.RequestURI() != signed.URL.RequestURI() || input != signed.Header.Get(HeaderSignatureInput) {
				t.Fatalf("verified a request that was not signed: %q %q (signed: %q %q)", r.URL.RequestURI(), input, signed.URL.RequestURI(), signed.Header.Get(HeaderSignatureInput))
			}
			if vd.KeyID != keyOld.ID {
				t.Fatalf("verified with key %q", vd.KeyID)
			}
			return
		}
		if Reason(err) == "error" && !errors.Is(err, ErrMalformed) {
			t.Fatalf("Verify error %v is none of the package's errors", err)
		}
	})
}
