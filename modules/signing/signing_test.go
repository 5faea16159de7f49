package signing

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/lexiscore/gateway/internal/httpsig"
	"github.com/lexiscore/gateway/internal/proxytransport"
	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
	_ "github.com/lexiscore/gateway/modules/correlation"
)

var (
	secret1 = "s1-7f3a9c2e5b8d1046a3f7c9e2b5d8014a"
	secret2 = "s2-4c8e1a6f3b9d2570e4c8a1f6b3d9257e0c4a8f1b6d3e"
)

// outer is a test transport that wraps another, as the resilience
// transport does, to prove that signed nests.
type outer struct {
	proxytransport.Wrapper
}

func (outer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.reverse_proxy.transport.test_outer", New: func() caddy.Module { return new(outer) }}
}
func (o *outer) Provision(ctx caddy.Context) error { return o.ProvisionInner(ctx) }
func (o *outer) RoundTrip(r *http.Request) (*http.Response, error) {
	return o.Inner.RoundTrip(r)
}
func (o *outer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	for d.NextBlock(0) {
		if err := o.UnmarshalInner(d); err != nil {
			return err
		}
	}
	return nil
}

func init() { caddy.RegisterModule(outer{}) }

func writeSecret(t *testing.T, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// adaptSite adapts a Caddyfile of one site holding site's directives.
func adaptSite(site string) ([]byte, error) {
	return caddytest.Adapt(":8080 {\n" + site + "\n}")
}

func TestCaddyfileAdapt(t *testing.T) {
	cases := []struct{ name, site, want string }{
		{"defaults to the http transport", `reverse_proxy 127.0.0.1:9001 {
			transport signed {
				key_id gw-1
				secret_env GW_SECRET
			}
		}`, `"transport":{"key_id":"gw-1","protocol":"signed","secret_env":"GW_SECRET"}`},
		{"nested transport, an empty secret_file and limits", `reverse_proxy 127.0.0.1:9001 {
			transport signed {
				key_id gw-1
				secret_file
				secret_env GW_SECRET
				memory_limit 256KiB
				max_body 30MiB
				spool_dir /var/spool/gw
				transport http {
					read_buffer 4KiB
				}
			}
		}`, `"transport":{"key_id":"gw-1","max_body":31457280,"memory_limit":262144,"protocol":"signed","secret_env":"GW_SECRET","spool_dir":"/var/spool/gw","transport":{"protocol":"http","read_buffer_size":4096}}`},
		{"TLS reaches the innermost transport through two wrappers", `reverse_proxy https://127.0.0.1:9443 {
			transport test_outer {
				transport signed {
					key_id gw-1
					secret_file /run/secrets/gw
				}
			}
		}`, `"transport":{"protocol":"test_outer","transport":{"key_id":"gw-1","protocol":"signed","secret_file":"/run/secrets/gw","transport":{"protocol":"http","tls":{}}}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := adaptSite(tc.site)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(out, []byte(tc.want)) {
				t.Fatalf("adapted config lacks\n%s\n%s", tc.want, out)
			}
		})
	}
	for _, bad := range []string{
		`transport signed extra`,
		`transport signed {
			key_id
		}`,
		`transport signed {
			secret_file a b
		}`,
		`transport signed {
			max_body huge
		}`,
		`transport signed {
			frobnicate
		}`,
		`transport signed {
			transport http
			transport http
		}`,
	} {
		if _, err := adaptSite("reverse_proxy 127.0.0.1:9001 {\n" + bad + "\n}"); err == nil {
			t.Errorf("%q adapted without error", bad)
		}
	}
}

func TestProvisionRefusesBadSecrets(t *testing.T) {
	t.Setenv("GW_TEST_SHORT", "short-secret")
	t.Setenv("GW_TEST_EMPTY", "")
	t.Setenv("GW_TEST_PLACEHOLDER", "changemechangemechangemechangeme")
	short := writeSecret(t, "also-short")
	cases := []struct {
		name string
		tr   Transport
		want string
	}{
		{"no key id", Transport{SecretEnv: "GW_TEST_SHORT"}, "key_id is required"},
		{"no secret", Transport{KeyID: "k"}, "neither an environment variable nor a file is given"},
		{"unset variable", Transport{KeyID: "k", SecretEnv: "GW_TEST_UNSET_VARIABLE"}, "environment variable GW_TEST_UNSET_VARIABLE is not set"},
		{"empty variable", Transport{KeyID: "k", SecretEnv: "GW_TEST_EMPTY"}, "environment variable GW_TEST_EMPTY is not set"},
		{"short variable", Transport{KeyID: "k", SecretEnv: "GW_TEST_SHORT"}, "environment variable GW_TEST_SHORT: the secret is 12 bytes; at least 32"},
		{"placeholder variable", Transport{KeyID: "k", SecretEnv: "GW_TEST_PLACEHOLDER"}, "looks like a placeholder"},
		{"missing file", Transport{KeyID: "k", SecretFile: "/no/such/secret"}, "/no/such/secret"},
		{"short file", Transport{KeyID: "k", SecretFile: short}, "file " + short + ": the secret is 10 bytes"},
		{"file and variable both set", Transport{KeyID: "k", SecretFile: short, SecretEnv: "GW_TEST_SHORT"}, "set only one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			err := tc.tr.Provision(ctx)
			if err == nil || !strings.Contains(err.Error(), "transport signed") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Provision: %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "short-secret") || strings.Contains(err.Error(), "also-short") {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
}

// backend is an upstream that verifies signatures with a swappable Verifier
// and records what it accepted.
type backend struct {
	*httptest.Server
	verifier atomic.Pointer[httpsig.Verifier]
	clock    atomic.Int64 // verifier's clock offset, in seconds

	mu       sync.Mutex
	keyIDs   map[string]int
	last     http.Header
	lastBody []byte
}

var keyIDParam = regexp.MustCompile(`keyid="([^"]*)"`)

func newBackend(t *testing.T, keys ...httpsig.Key) *backend {
	b := &backend{keyIDs: map[string]int{}}
	b.setKeys(t, keys...)
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		b.mu.Lock()
		if m := keyIDParam.FindStringSubmatch(r.Header.Get(httpsig.HeaderSignatureInput)); m != nil {
			b.keyIDs[m[1]]++
		}
		b.last, b.lastBody = r.Header.Clone(), body
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"bytes":%d}`, len(body))
	})
	exempt := func(r *http.Request) bool { return r.URL.Path == "/healthz" }
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpsig.VerifyMiddleware(b.verifier.Load(), exempt)(app).ServeHTTP(w, r)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) setKeys(t *testing.T, keys ...httpsig.Key) {
	v, err := httpsig.NewVerifier(keys, httpsig.Options{
		Now:         func() time.Time { return time.Now().Add(time.Duration(b.clock.Load()) * time.Second) },
		MemoryLimit: 64 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.verifier.Store(v)
}

func (b *backend) seen(keyID string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.keyIDs[keyID]
}

func (b *backend) lastRequest() (http.Header, []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last.Clone(), b.lastBody
}

func gatewaySite(upstream, keyID, secretFile string) string {
	return fmt.Sprintf(`http://127.0.0.1:{http_port} {
	request_id
	request_header X-Auth-User-ID alice
	request_header X-Auth-User-Tier pro
	reverse_proxy %s {
		transport signed {
			key_id %s
			secret_file %s
			memory_limit 64KiB
			transport http {
				keepalive 30s
			}
		}
	}
}`, upstream, keyID, secretFile)
}

func send(t *testing.T, method, url string, body io.Reader, h http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func TestGatewaySignsAndBackendVerifies(t *testing.T) {
	be := newBackend(t, httpsig.Key{ID: "k1", Secret: []byte(secret1)})
	in := caddytest.Start(t, "", gatewaySite(be.Listener.Addr().String(), "k1", writeSecret(t, secret1)))
	signedBefore := testkit.Value(signed.WithLabelValues("k1"))

	large := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: spooled to a file
	requests := []struct {
		name, method, path string
		body               []byte
		chunked            bool
	}{
		{"GET with a query", "GET", "/v1/users/alice/scores?limit=5&x=%2F", nil, false},
		{"small JSON POST", "POST", "/v1/scores", []byte(`{"audio_base64":"AAAA"}`), false},
		{"large streamed upload", "POST", "/v1/scores", large, true},
	}
	for _, rq := range requests {
		t.Run(rq.name, func(t *testing.T) {
			var body io.Reader
			if rq.body != nil {
				body = bytes.NewReader(rq.body)
				if rq.chunked {
					body = io.MultiReader(body) // hides the length
				}
			}
			if status, out := send(t, rq.method, in.URL(rq.path), body, nil); status != http.StatusOK {
				t.Fatalf("through the gateway: %d %s", status, out)
			}
			h, got := be.lastRequest()
			if sha256.Sum256(got) != sha256.Sum256(rq.body) {
				t.Fatalf("the backend received %d bytes, want the %d sent", len(got), len(rq.body))
			}
			for _, name := range []string{"X-Request-ID", "X-Auth-User-ID", "X-Auth-User-Tier"} {
				if !strings.Contains(h.Get(httpsig.HeaderSignatureInput), `"`+strings.ToLower(name)+`"`) {
					t.Errorf("%s not covered: %s", name, h.Get(httpsig.HeaderSignatureInput))
				}
			}

			// The same request straight to the backend, bypassing the gateway.
			var direct io.Reader
			if rq.body != nil {
				direct = bytes.NewReader(rq.body)
			}
			status, out := send(t, rq.method, be.URL+rq.path, direct, http.Header{"X-Auth-User-ID": {"alice"}})
			if status != http.StatusUnauthorized || !strings.Contains(string(out), `"reason":"unsigned"`) {
				t.Fatalf("straight to the backend: %d %s, want 401 unsigned", status, out)
			}
		})
	}
	if got := testkit.Value(signed.WithLabelValues("k1")) - signedBefore; got < float64(len(requests)) {
		t.Fatalf("gateway_signed_requests_total{key_id=\"k1\"} rose by %v, want at least %d", got, len(requests))
	}

	t.Run("a captured request replayed as is, with changes or too late", func(t *testing.T) {
		if status, _ := send(t, "GET", in.URL("/v1/users/alice/scores?limit=5"), nil, nil); status != http.StatusOK {
			t.Fatal(status)
		}
		captured, _ := be.lastRequest()
		replay := func(path string, mutate func(http.Header)) (int, string) {
			h := captured.Clone()
			h.Del("Accept-Encoding")
			if mutate != nil {
				mutate(h)
			}
			status, out := send(t, "GET", be.URL+path, nil, h)
			var doc map[string]any
			_ = json.Unmarshal(out, &doc)
			reason, _ := doc["reason"].(string)
			return status, reason
		}
		// Within max age, the nonce gives an exact replay away.
		if status, reason := replay("/v1/users/alice/scores?limit=5", nil); status != 401 || reason != "replayed" {
			t.Fatalf("exact replay within max age: %d %s", status, reason)
		}
		// The gateway signs each request anew, so the same request sent
		// again through it passes.
		if status, _ := send(t, "GET", in.URL("/v1/users/alice/scores?limit=5"), nil, nil); status != http.StatusOK {
			t.Fatalf("the same request through the gateway again: %d", status)
		}
		if status, reason := replay("/v1/users/alice/scores?limit=100", nil); status != 401 || reason != "bad_signature" {
			t.Fatalf("changed query: %d %s", status, reason)
		}
		if status, reason := replay("/v1/users/alice/scores?limit=5", func(h http.Header) { h.Set("X-Auth-User-ID", "mallory") }); status != 401 || reason != "bad_signature" {
			t.Fatalf("changed user: %d %s", status, reason)
		}
		be.clock.Store(31)
		defer be.clock.Store(0)
		if status, reason := replay("/v1/users/alice/scores?limit=5", nil); status != 401 || reason != "expired" {
			t.Fatalf("replay after max age: %d %s", status, reason)
		}
	})

	t.Run("a backend with other keys refuses the gateway", func(t *testing.T) {
		be.setKeys(t, httpsig.Key{ID: "k2", Secret: []byte(secret2)})
		defer be.setKeys(t, httpsig.Key{ID: "k1", Secret: []byte(secret1)})
		status, out := send(t, "GET", in.URL("/v1/users/alice/scores"), nil, nil)
		if status != http.StatusUnauthorized || !strings.Contains(string(out), "unknown_key") {
			t.Fatalf("%d %s", status, out)
		}
	})
}

// verifying is an inner transport standing for the backend: it verifies
// each attempt it is given.
type verifying struct {
	v      *httpsig.Verifier
	inputs []string
}

func (vt *verifying) RoundTrip(r *http.Request) (*http.Response, error) {
	if _, err := vt.v.Verify(r); err != nil {
		return nil, err
	}
	vt.inputs = append(vt.inputs, r.Header.Get(httpsig.HeaderSignatureInput))
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
}

// Retries, hedges and fallbacks send the same request through RoundTrip
// again; each attempt gets a nonce of its own, so the backend's replay cache
// accepts them all.
func TestEveryAttemptHasItsOwnNonce(t *testing.T) {
	t.Setenv("GW_TEST_SECRET", secret1)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	tr := &Transport{KeyID: "k1", SecretEnv: "GW_TEST_SECRET"}
	if err := tr.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := httpsig.NewVerifier([]httpsig.Key{{ID: "k1", Secret: []byte(secret1)}}, httpsig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	inner := &verifying{v: v}
	tr.Inner = inner
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9001/v1/scores/abc", nil)
	for attempt := 1; attempt <= 3; attempt++ {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
		resp.Body.Close()
	}
	nonces := map[string]bool{}
	for _, in := range inner.inputs {
		m := regexp.MustCompile(`;nonce="([^"]+)"`).FindStringSubmatch(in)
		if m == nil {
			t.Fatalf("no nonce in %s", in)
		}
		nonces[m[1]] = true
	}
	if len(nonces) != 3 {
		t.Fatalf("three attempts carried %d distinct nonces: %v", len(nonces), inner.inputs)
	}
}

// TestKeyRotationWithoutFailures follows the documented procedure while
// requests flow: the backend accepts old and new key, the gateway reloads
// with the new key, the backend drops the old one. No request may fail.
func TestKeyRotationWithoutFailures(t *testing.T) {
	k1 := httpsig.Key{ID: "k1", Secret: []byte(secret1)}
	k2 := httpsig.Key{ID: "k2", Secret: []byte(secret2)}
	be := newBackend(t, k1)
	addr := be.Listener.Addr().String()
	in := caddytest.Start(t, "", gatewaySite(addr, "k1", writeSecret(t, secret1)))

	// Step 1: the backend learns the new key alongside the old one.
	be.setKeys(t, k1, k2)

	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	deadline := time.Now().Add(60 * time.Second) // bounds the load whatever happens
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Get(in.URL("/v1/users/alice/scores?limit=1"))
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, resp.Status)
				}
			}
		}()
	}
	// A failed wait ends the test: the load stops first, before the
	// gateway and backend it sends to.
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)
	testkit.Eventually(t, "requests signed with k1", func() bool { return be.seen("k1") >= 20 })

	// Step 2: the gateway reloads with the new key while requests flow.
	in.Load(t, gatewaySite(addr, "k2", writeSecret(t, secret2)))
	testkit.Eventually(t, "requests signed with k2", func() bool { return be.seen("k2") >= 20 })

	// Step 3: the backend forgets the old key.
	be.setKeys(t, k2)
	k2Then := be.seen("k2")
	testkit.Eventually(t, "requests after the old key was dropped", func() bool { return be.seen("k2") >= k2Then+20 })

	stopLoad()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed during the rotation; first: %v", n, sent.Load(), firstFailure.Load())
	}
	t.Logf("%d requests, none failed; k1 signed %d, k2 signed %d", sent.Load(), be.seen("k1"), be.seen("k2"))
}

// canned is an inner transport that answers at once, so benchmarks measure
// the signing itself rather than a network.
type canned struct{}

func (canned) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
}

func benchmarkTransport(b *testing.B, rt http.RoundTripper, newReq func() *http.Request) {
	b.ReportAllocs()
	for b.Loop() {
		resp, err := rt.RoundTrip(newReq())
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}

func signedTransport(b *testing.B) *Transport {
	b.Setenv("GW_BENCH_SECRET", secret1)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	tr := &Transport{KeyID: "k1", SecretEnv: "GW_BENCH_SECRET"}
	if err := tr.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	tr.Inner = canned{}
	return tr
}

var benchJSON = `{"audio_base64":"` + strings.Repeat("UklGRgAA", 512) + `","language":"en-GB"}`

func benchPost() *http.Request {
	r := httptest.NewRequest("POST", "http://127.0.0.1:9001/v1/scores", strings.NewReader(benchJSON))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Request-ID", "0b6f0c3e-7b7e-4c1e-9d43-1c6a2f0f9e11")
	r.Header.Set("X-Auth-User-ID", "alice")
	return r
}

func benchGet() *http.Request {
	r := httptest.NewRequest("GET", "http://127.0.0.1:9001/v1/users/alice/scores?limit=20", nil)
	r.Header.Set("X-Request-ID", "0b6f0c3e-7b7e-4c1e-9d43-1c6a2f0f9e11")
	r.Header.Set("X-Auth-User-ID", "alice")
	return r
}

func BenchmarkUnsignedPost(b *testing.B) { benchmarkTransport(b, canned{}, benchPost) }
func BenchmarkSignedPost(b *testing.B)   { benchmarkTransport(b, signedTransport(b), benchPost) }
func BenchmarkUnsignedGet(b *testing.B)  { benchmarkTransport(b, canned{}, benchGet) }
func BenchmarkSignedGet(b *testing.B)    { benchmarkTransport(b, signedTransport(b), benchGet) }

// BenchmarkVerifyPost is the backend's side: VerifyMiddleware on a signed POST.
func BenchmarkVerifyPost(b *testing.B) {
	v, err := httpsig.NewVerifier([]httpsig.Key{{ID: "k1", Secret: []byte(secret1)}}, httpsig.Options{})
	if err != nil {
		b.Fatal(err)
	}
	signer, _ := httpsig.NewSigner(httpsig.Key{ID: "k1", Secret: []byte(secret1)}, nil)
	h := httpsig.VerifyMiddleware(v, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	sum := sha256.Sum256([]byte(benchJSON))
	b.ReportAllocs()
	for b.Loop() {
		r := benchPost()
		if err := signer.Sign(r, sum); err != nil {
			b.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
