package httpsig

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"
)

var (
	t0     = time.Unix(1_700_000_000, 0)
	keyOld = Key{ID: "gw-old", Secret: []byte("old-9d2f7a1c4e8b3065f1a7c2e9d4b8063a")}
	keyNew = Key{ID: "gw-new", Secret: []byte("new-5b8e2d4f7a9c1036e8b2d5f7a4c9e1b3d6f80a2c")}
)

// nonceParam matches the nonce parameter in Signature-Input.
var nonceParam = regexp.MustCompile(`;nonce="[^"]*"`)

// clock is a settable fake clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// signedRequest builds a request like the gateway forwards and signs it.
func signedRequest(t *testing.T, key Key, at time.Time, method, target, body string, h map[string]string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, v := range h {
		r.Header.Set(k, v)
	}
	s, err := NewSigner(key, func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sign(r, sha256.Sum256([]byte(body))); err != nil {
		t.Fatal(err)
	}
	return r
}

// serve passes r through VerifyMiddleware and reports the status and whether
// the handler ran, with the body it read.
func serve(t *testing.T, v *Verifier, r *http.Request) (status int, reached bool, got string, problem map[string]any) {
	t.Helper()
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = true
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("handler reading body: %v", err)
		}
		got = string(b)
		w.WriteHeader(http.StatusNoContent)
	})
	exempt := func(r *http.Request) bool { return r.URL.Path == "/healthz" }
	rec := httptest.NewRecorder()
	VerifyMiddleware(v, exempt)(next).ServeHTTP(rec, r)
	if rec.Code >= 400 {
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("refusal Content-Type %q", ct)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &problem); err != nil {
			t.Errorf("refusal body: %v", err)
		}
	}
	return rec.Code, reached, got, problem
}

func TestVerifyMiddleware(t *testing.T) {
	ident := map[string]string{
		"X-Request-ID":       "req-1",
		"X-Auth-User-ID":     "user-1",
		"X-Auth-User-Tier":   "pro",
		"X-Auth-User-Tenant": "acme",
		"Content-Type":       "application/json",
	}
	body := `{"audio_base64":"AAAA"}`
	post := func() *http.Request {
		return signedRequest(t, keyOld, t0, http.MethodPost, "/v1/scores?lang=en&x=1", body, ident)
	}

	cases := []struct {
		name       string
		req        func() *http.Request
		now        time.Time
		want       int
		wantReason string
	}{
		{name: "valid", req: post, want: http.StatusNoContent},
		{name: "valid GET without body or identity", want: http.StatusNoContent, req: func() *http.Request {
			return signedRequest(t, keyOld, t0, http.MethodGet, "/v1/scores/abc", "", nil)
		}},
		{name: "valid at max age", req: post, now: t0.Add(30 * time.Second), want: http.StatusNoContent},
		{name: "signed by the new key during rotation", want: http.StatusNoContent, req: func() *http.Request {
			return signedRequest(t, keyNew, t0, http.MethodPost, "/v1/scores", body, ident)
		}},
		{name: "exempt health check unsigned", want: http.StatusNoContent, req: func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "/healthz", nil)
		}},
		{name: "unsigned", want: 401, wantReason: "unsigned", req: func() *http.Request {
			return httptest.NewRequest(http.MethodPost, "/v1/scores", strings.NewReader(body))
		}},
		{name: "method changed", want: 401, wantReason: "bad_signature", req: func() *http.Request {
			r := post()
			r.Method = http.MethodPut
			return r
		}},
		{name: "path changed", want: 401, wantReason: "bad_signature", req: func() *http.Request {
			r := post()
			r.URL.Path = "/v1/scores/other"
			return r
		}},
		{name: "query changed", want: 401, wantReason: "bad_signature", req: func() *http.Request {
			r := post()
			r.URL.RawQuery = "lang=de&x=1"
			return r
		}},
		{name: "query removed", want: 401, wantReason: "bad_signature", req: func() *http.Request {
			r := post()
			r.URL.RawQuery = ""
			return r
		}},
		{name: "body changed", want: 401, wantReason: "digest", req: func() *http.Request {
			r := post()
			r.Body = io.NopCloser(strings.NewReader(`{"audio_base64":"BBBB"}`))
			return r
		}},
		{name: "body added to a GET", want: 401, wantReason: "digest", req: func() *http.Request {
			r := signedRequest(t, keyOld, t0, http.MethodGet, "/v1/scores/abc", "", nil)
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader("x")), 1
			return r
		}},
		{name: "content-digest changed with the body", want: 401, wantReason: "bad_signature", req: func() *http.Request {
			r := post()
			other := `{"audio_base64":"BBBB"}`
			r.Body = io.NopCloser(strings.NewReader(other))
			r.Header.Set(HeaderContentDigest, FormatDigest(sha256.Sum256([]byte(other))))
			return r
		}},
		{name: "content-digest removed", want: 401, wantReason: "digest", req: func() *http.Request {
			r := post()
			r.Header.Del(HeaderContentDigest)
			return r
		}},
		{name: "request id changed", want: 401, wantReason: "bad_signature", req: func() *http.Request {
			r := post()
			r.Header.Set("X-Request-ID", "req-2")
			return r
		}},
		{name: "user id changed", want: 401, wantReason: "bad_signature", req: func() *http.Request {
			r := post()
			r.Header.Set("X-Auth-User-ID", "admin")
			return r
		}},
		{name: "tier changed", want: 401, wantReason: "bad_signature", req: func() *http.Request {
			r := post()
			r.Header.Set("X-Auth-User-Tier", "enterprise")
			return r
		}},
		{name: "tenant changed", want: 401, wantReason: "bad_signature", req: func() *http.Request {
			r := post()
			r.Header.Set("X-Auth-User-Tenant", "evil")
			return r
		}},
		{name: "scopes added to a request signed without", want: 401, wantReason: "coverage", req: func() *http.Request {
			r := post()
			r.Header.Set("X-Auth-User-Scopes", "scores:read:any")
			return r
		}},
		{name: "scopes changed", want: 401, wantReason: "bad_signature", req: func() *http.Request {
			h := maps.Clone(ident)
			h["X-Auth-User-Scopes"] = "scores:read:tenant"
			r := signedRequest(t, keyOld, t0, http.MethodPost, "/v1/scores?lang=en&x=1", body, h)
			r.Header.Set("X-Auth-User-Scopes", "scores:read:any")
			return r
		}},
		{name: "user header duplicated", want: 401, wantReason: "bad_signature", req: func() *http.Request {
			r := post()
			r.Header.Add("X-Auth-User-ID", "admin")
			return r
		}},
		{name: "user header removed", want: 401, wantReason: "coverage", req: func() *http.Request {
			r := post()
			r.Header.Del("X-Auth-User-ID")
			return r
		}},
		{name: "user header added to an anonymous request", want: 401, wantReason: "coverage", req: func() *http.Request {
			r := signedRequest(t, keyOld, t0, http.MethodGet, "/v1/scores/abc", "", map[string]string{"X-Request-ID": "r"})
			r.Header.Set("X-Auth-User-ID", "admin")
			return r
		}},
		{name: "created too old", req: post, now: t0.Add(31 * time.Second), want: 401, wantReason: "expired"},
		{name: "created in the future", req: post, now: t0.Add(-6 * time.Second), want: 401, wantReason: "future"},
		{name: "unknown key id", want: 401, wantReason: "unknown_key", req: func() *http.Request {
			return signedRequest(t, Key{ID: "gw-retired", Secret: keyOld.Secret}, t0, http.MethodPost, "/v1/scores", body, ident)
		}},
		{name: "known key id, wrong secret", want: 401, wantReason: "bad_signature", req: func() *http.Request {
			return signedRequest(t, Key{ID: keyOld.ID, Secret: keyNew.Secret}, t0, http.MethodPost, "/v1/scores", body, ident)
		}},
		{name: "keyid rewritten to the other key", want: 401, wantReason: "bad_signature", req: func() *http.Request {
			r := post()
			r.Header.Set(HeaderSignatureInput, strings.Replace(r.Header.Get(HeaderSignatureInput), keyOld.ID, keyNew.ID, 1))
			return r
		}},
		{name: "created rewritten to now", now: t0.Add(time.Minute), want: 401, wantReason: "bad_signature", req: func() *http.Request {
			r := post()
			r.Header.Set(HeaderSignatureInput, strings.Replace(r.Header.Get(HeaderSignatureInput), "1700000000", "1700000060", 1))
			return r
		}},
		{name: "other algorithm", want: 401, wantReason: "algorithm", req: func() *http.Request {
			r := post()
			r.Header.Set(HeaderSignatureInput, strings.Replace(r.Header.Get(HeaderSignatureInput), Algorithm, "ed25519", 1))
			return r
		}},
		{name: "nonce removed", want: 401, wantReason: "no_nonce", req: func() *http.Request {
			r := post()
			r.Header.Set(HeaderSignatureInput, nonceParam.ReplaceAllString(r.Header.Get(HeaderSignatureInput), ""))
			return r
		}},
		{name: "nonce changed", want: 401, wantReason: "bad_signature", req: func() *http.Request {
			r := post()
			r.Header.Set(HeaderSignatureInput, nonceParam.ReplaceAllString(r.Header.Get(HeaderSignatureInput), `;nonce="AAAAAAAAAAAAAAAAAAAAAAAAAA"`))
			return r
		}},
		{name: "nonce empty", want: 401, wantReason: "malformed", req: func() *http.Request {
			r := post()
			r.Header.Set(HeaderSignatureInput, nonceParam.ReplaceAllString(r.Header.Get(HeaderSignatureInput), `;nonce=""`))
			return r
		}},
		{name: "nonce a token, not a string", want: 401, wantReason: "malformed", req: func() *http.Request {
			r := post()
			r.Header.Set(HeaderSignatureInput, nonceParam.ReplaceAllString(r.Header.Get(HeaderSignatureInput), `;nonce=abc`))
			return r
		}},
		{name: "nonce too long", want: 401, wantReason: "malformed", req: func() *http.Request {
			r := post()
			r.Header.Set(HeaderSignatureInput, nonceParam.ReplaceAllString(r.Header.Get(HeaderSignatureInput), `;nonce="`+strings.Repeat("n", 129)+`"`))
			return r
		}},
		{name: "component dropped from coverage", want: 401, wantReason: "coverage", req: func() *http.Request {
			r := post()
			r.Header.Set(HeaderSignatureInput, strings.Replace(r.Header.Get(HeaderSignatureInput), `"@query" `, "", 1))
			return r
		}},
		{name: "signature garbled", want: 401, wantReason: "malformed", req: func() *http.Request {
			r := post()
			r.Header.Set(HeaderSignature, "gateway=:not base64!:")
			return r
		}},
		{name: "signature under another label", want: 401, wantReason: "unsigned", req: func() *http.Request {
			r := post()
			r.Header.Set(HeaderSignature, strings.Replace(r.Header.Get(HeaderSignature), Label+"=", "other=", 1))
			return r
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{now: t0}
			if !tc.now.IsZero() {
				clk.now = tc.now
			}
			v, err := NewVerifier([]Key{keyOld, keyNew}, Options{Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			r := tc.req()
			status, reached, got, problem := serve(t, v, r)
			if status != tc.want {
				t.Fatalf("status %d, want %d (problem %v)", status, tc.want, problem)
			}
			if tc.want >= 400 {
				if reached {
					t.Fatal("the handler ran for a refused request")
				}
				if problem["reason"] != tc.wantReason {
					t.Fatalf("reason %v, want %q (problem %v)", problem["reason"], tc.wantReason, problem)
				}
				return
			}
			if !reached {
				t.Fatal("the handler did not run")
			}
			if r.Method == http.MethodPost && got != body {
				t.Fatalf("handler read %q, want %q", got, body)
			}
		})
	}
}

// TestSignatureBoundToAuthority: a request signed for one upstream (its
// Host) is refused by a verifier that answers to another, whether the Host
// is kept (authority) or changed to the other's (bad signature); the nonce
// cache of each verifier alone would accept it once.
func TestSignatureBoundToAuthority(t *testing.T) {
	sign := func() *http.Request {
		r := signedRequest(t, keyOld, t0, http.MethodGet, "/v1/scores/abc", "", nil)
		if r.Host != "example.com" {
			t.Fatalf("Host %q", r.Host)
		}
		return r
	}
	verifier := func(authorities ...string) *Verifier {
		v, err := NewVerifier([]Key{keyOld}, Options{Now: func() time.Time { return t0 }, Authorities: authorities})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if _, err := verifier("Example.COM", "other:1").Verify(sign()); err != nil {
		t.Fatalf("the upstream it was signed for: %v", err)
	}
	if _, err := verifier().Verify(sign()); err != nil {
		t.Fatalf("a verifier without authorities: %v", err)
	}
	if _, err := verifier("backend-b:9001").Verify(sign()); !errors.Is(err, ErrAuthority) || Reason(err) != "authority" {
		t.Fatalf("another upstream, Host kept: %v, want %v", err, ErrAuthority)
	}
	moved := sign()
	moved.Host = "backend-b:9001"
	if _, err := verifier("backend-b:9001").Verify(moved); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("another upstream, Host changed: %v, want %v", err, ErrBadSignature)
	}
}

func TestSignatureBase(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/v1/users/a%20b/scores?limit=5&x=%2F", nil)
	r.Header.Set("X-Request-ID", "req-1")
	r.Header.Add("X-Auth-User-ID", " u1 ")
	r.Header.Add("X-Auth-User-ID", "u2")
	s, _ := NewSigner(keyOld, func() time.Time { return t0 })
	s.nonce = func() string { return "J6MXA3ZHBW4QZ2UJ5RUXGZQJKE" }
	if err := s.Sign(r, sha256.Sum256(nil)); err != nil {
		t.Fatal(err)
	}
	d, err := httpsfv.UnmarshalDictionary(r.Header.Values(HeaderSignatureInput))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := d.Get(Label)
	il := m.(httpsfv.InnerList)
	covered, _ := coveredComponents(il)
	canonical, err := httpsfv.Marshal(il)
	if err != nil {
		t.Fatal(err)
	}
	base, err := signatureBase(r, covered, canonical)
	if err != nil {
		t.Fatal(err)
	}
	want := `"@method": POST
"@authority": example.com
"@path": /v1/users/a%20b/scores
"@query": ?limit=5&x=%2F
"content-digest": sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:
"x-request-id": req-1
"x-auth-user-id": u1, u2
"@signature-params": ("@method" "@authority" "@path" "@query" "content-digest" "x-request-id" "x-auth-user-id");created=1700000000;keyid="gw-old";alg="hmac-sha256";nonce="J6MXA3ZHBW4QZ2UJ5RUXGZQJKE"`
	if string(base) != want {
		t.Fatalf("signature base:\n%s\nwant:\n%s", base, want)
	}
	if got := r.Header.Get(HeaderSignatureInput); got != Label+"="+want[strings.LastIndex(want, ": ")+2:] {
		t.Fatalf("Signature-Input %q", got)
	}
}

// The signer writes the parameters by hand; the verifier re-serializes what
// it parsed with httpsfv. Both must agree, escapes included.
func TestSignatureParamsAreCanonical(t *testing.T) {
	for _, id := range []string{"gw-1", `k"quoted"`, `back\slash`, "with space", "~!#$%&'()*+,-./:;<=>?@[]^_`{|}"} {
		key := Key{ID: id, Secret: keyOld.Secret}
		r := signedRequest(t, key, t0, http.MethodGet, "/v1/scores/abc", "", map[string]string{"X-Request-ID": "r"})
		d, err := httpsfv.UnmarshalDictionary(r.Header.Values(HeaderSignatureInput))
		if err != nil {
			t.Fatalf("key id %q: Signature-Input does not parse: %v", id, err)
		}
		m, _ := d.Get(Label)
		canonical, _ := httpsfv.Marshal(m.(httpsfv.InnerList))
		if got := r.Header.Get(HeaderSignatureInput); got != Label+"="+canonical {
			t.Fatalf("key id %q: Signature-Input %s, canonical %s", id, got, canonical)
		}
		v, err := NewVerifier([]Key{key}, Options{Now: func() time.Time { return t0 }})
		if err != nil {
			t.Fatal(err)
		}
		if vd, err := v.Verify(r); err != nil || vd.KeyID != id {
			t.Fatalf("key id %q: %v, %+v", id, err, vd)
		}
	}
}

func TestKeysAreChecked(t *testing.T) {
	if _, err := NewSigner(Key{ID: "k", Secret: []byte("0f9e8d7c6b5a49382716abcdef01234")}, nil); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("31-byte secret: %v", err)
	}
	if _, err := NewSigner(Key{ID: "k", Secret: []byte("changemechangemechangemechangeme")}, nil); err == nil {
		t.Fatal("placeholder secret accepted: the rules of internal/secret apply to signing keys too")
	}
	if _, err := NewSigner(Key{ID: "", Secret: keyOld.Secret}, nil); err == nil {
		t.Fatal("empty key id accepted")
	}
	if _, err := NewVerifier([]Key{keyOld, keyOld}, Options{}); err == nil {
		t.Fatal("duplicate key id accepted")
	}
	if _, err := NewVerifier(nil, Options{}); err == nil {
		t.Fatal("verifier without keys accepted")
	}
}

func TestParseKeyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a", string(keyOld.Secret)+"\n")
	b := write("b", string(keyNew.Secret))
	short := write("short", "too-short\n")

	keys, err := ParseKeyFiles("gw-old:" + a + ", gw-new:" + b)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != "gw-old" || !bytes.Equal(keys[0].Secret, keyOld.Secret) || !bytes.Equal(keys[1].Secret, keyNew.Secret) {
		t.Fatalf("keys %+v", keys)
	}
	for _, bad := range []string{"", "nocolon", "k:" + short, "k:" + filepath.Join(dir, "missing")} {
		if _, err := ParseKeyFiles(bad); err == nil {
			t.Errorf("ParseKeyFiles(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "too-short") {
			t.Errorf("error leaks the secret: %v", err)
		}
	}
}

func TestSpool(t *testing.T) {
	lim := SpoolLimits{Memory: 16, Max: 64, Dir: t.TempDir()}
	cases := []struct {
		name     string
		body     string
		declared int64
		inMemory bool
		tooLarge bool
	}{
		{"empty", "", 0, true, false},
		{"small known length", "hello", 5, true, false},
		{"small unknown length", "hello", -1, true, false},
		{"at memory limit", strings.Repeat("m", 16), -1, true, false},
		{"over memory limit, unknown length", strings.Repeat("f", 40), -1, false, false},
		{"over memory limit, known length", strings.Repeat("f", 40), 40, false, false},
		{"at max", strings.Repeat("x", 64), -1, false, false},
		{"over max, unknown length", strings.Repeat("x", 65), -1, false, true},
		{"over max, declared", strings.Repeat("x", 65), 65, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Spool(strings.NewReader(tc.body), tc.declared, lim)
			if tc.tooLarge {
				if !errors.Is(err, ErrBodyTooLarge) {
					t.Fatalf("err %v, want ErrBodyTooLarge", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.InMemory() != tc.inMemory {
				t.Fatalf("in memory %v, want %v", s.InMemory(), tc.inMemory)
			}
			if s.Sum != sha256.Sum256([]byte(tc.body)) || s.Len != int64(len(tc.body)) {
				t.Fatalf("sum or length wrong: %d", s.Len)
			}
			rc := s.Reader()
			got, _ := io.ReadAll(rc)
			rc.Close()
			if string(got) != tc.body {
				t.Fatalf("replayed %q", got)
			}
			if entries, _ := os.ReadDir(lim.Dir); len(entries) != 0 {
				t.Fatalf("spool left %d files on disk", len(entries))
			}
		})
	}
}

func TestVerifyMiddlewareBodyLimits(t *testing.T) {
	clk := &clock{now: t0}
	v, err := NewVerifier([]Key{keyOld}, Options{Now: clk.Now, MemoryLimit: 8, MaxBody: 32, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("b", 20)
	if status, _, got, _ := serve(t, v, signedRequest(t, keyOld, t0, http.MethodPost, "/v1/scores", big, nil)); status != http.StatusNoContent || got != big {
		t.Fatalf("spooled body: status %d, handler read %q", status, got)
	}
	tooBig := strings.Repeat("b", 33)
	if status, reached, _, _ := serve(t, v, signedRequest(t, keyOld, t0, http.MethodPost, "/v1/scores", tooBig, nil)); status != http.StatusRequestEntityTooLarge || reached {
		t.Fatalf("oversized body: status %d, reached %v", status, reached)
	}
}
