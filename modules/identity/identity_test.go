package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
	_ "github.com/lexiscore/gateway/modules/correlation"
	"github.com/lexiscore/gateway/modules/problem"
)

// upstream records the headers of the last request it received.
type upstream struct {
	*httptest.Server
	mu        sync.Mutex
	last      http.Header
	lastQuery string
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.last = r.Header.Clone()
		u.lastQuery = r.URL.RawQuery
		u.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) received() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

func (u *upstream) receivedQuery() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lastQuery
}

func get(t *testing.T, url string, h http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

// expectRefusal checks a 401 problem document, its reason and challenge.
func expectRefusal(t *testing.T, resp *http.Response, body []byte, reason Result, challenge string) {
	t.Helper()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("problem body: %v: %s", err, body)
	}
	if !strings.HasSuffix(fmt.Sprint(doc["type"]), "#"+ProblemType) || doc["reason"] != string(reason) || doc["request_id"] == "" || doc["request_id"] == nil {
		t.Fatalf("problem %v, want type %s, reason %s and a request_id", doc, ProblemType, reason)
	}
	if got := resp.Header.Get("WWW-Authenticate"); got != challenge {
		t.Fatalf("WWW-Authenticate %q, want %q", got, challenge)
	}
}

func TestAuthenticateThroughCaddyfile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("IDENTITY_IT_SECRET", string(testSecret))
	k := keys(t)
	if err := os.WriteFile(filepath.Join(dir, "rsa.pem"), pemPublic(t, &k.rsa.PublicKey), 0o600); err != nil {
		t.Fatal(err)
	}
	aliceKey, aliceLine := mintKey(t, "alice", "pro", "globex", nil)
	keysFile := filepath.Join(dir, "keys.jsonl")
	writeKeys(t, keysFile, aliceLine)
	auditFile := filepath.Join(dir, "audit.log")
	up := newUpstream(t)
	upAddr := strings.TrimPrefix(up.URL, "http://")

	before := func(p string, r Result) float64 { return testkit.Value(authRequests.WithLabelValues(p, string(r))) }
	expiredBefore, missingBefore := before(providerJWT, ResultExpired), before(providerNone, ResultMissing)

	in := caddytest.Start(t, fmt.Sprintf(`log audit {
		output file %s
		format json
		include http.handlers.authenticate.audit
	}`, auditFile), fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	request_id
	handle /healthz {
		respond "ok"
	}
	handle /open/* {
		authenticate {
			allow_anonymous
			jwt {
				secret_env IDENTITY_IT_SECRET
			}
		}
		reverse_proxy %[1]s
	}
	handle /fwd/* {
		authenticate {
			forward_credentials {$IDENTITY_IT_FORWARD:on}
			jwt {
				secret_env IDENTITY_IT_SECRET
			}
		}
		reverse_proxy %[1]s
	}
	handle /v1/* {
		authenticate {
			jwt {
				secret_env IDENTITY_IT_SECRET
				issuer ""
				audience "{$IDENTITY_IT_UNSET_AUDIENCE}"
				key rsa-1 public_key file %[2]s RS256
			}
			api_key {
				file %[3]s
				reload_interval 1s
			}
		}
		request_header X-Seen-Tier {http.auth.user.tier}
		reverse_proxy %[1]s
	}
	handle /metrics {
		metrics
	}
	handle_errors {
		problem
	}
}`, upAddr, filepath.Join(dir, "rsa.pem"), keysFile))

	token, err := IssueToken(testSecret, TokenOptions{Subject: "demo", Tier: "free", Tenant: "acme", TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	expired, err := IssueToken(testSecret, TokenOptions{Subject: "demo", TTL: time.Minute}, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	rsToken := sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", jwt.MapClaims{"sub": "svc", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
	credentials := []string{token, expired, rsToken, aliceKey}

	t.Run("health stays open", func(t *testing.T) {
		if resp, _ := get(t, in.URL("/healthz"), nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})

	t.Run("no credentials", func(t *testing.T) {
		resp, body := get(t, in.URL("/v1/scores"), nil)
		expectRefusal(t, resp, body, ResultMissing, `Bearer realm="lexiscore"`)
	})

	t.Run("expired token says so", func(t *testing.T) {
		resp, body := get(t, in.URL("/v1/scores"), bearer(expired))
		expectRefusal(t, resp, body, ResultExpired, `Bearer realm="lexiscore", error="invalid_token", error_description="The bearer token has expired."`)
		if !strings.Contains(string(body), `"detail":"The bearer token has expired."`) {
			t.Fatalf("detail: %s", body)
		}
		if strings.Contains(string(body), expired) {
			t.Fatal("the problem echoes the token")
		}
	})

	t.Run("token forwards identity and forged headers are stripped", func(t *testing.T) {
		h := bearer(token)
		h.Set("X-Auth-User-Id", "admin")
		h.Set("X-Auth-User-Tier", "enterprise")
		h.Set("X-Auth-Role", "root")
		h.Set(HeaderUserScopes, "scores:read:any")
		resp, body := get(t, in.URL("/v1/scores"), h)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		got := up.received()
		if got.Get(HeaderUserID) != "demo" || got.Get(HeaderUserTier) != "free" || got.Get(HeaderUserTenant) != "acme" {
			t.Fatalf("upstream identity headers %v", got)
		}
		if len(got.Values(HeaderUserID)) != 1 || got.Get("X-Auth-Role") != "" || got.Get(HeaderUserScopes) != "" {
			t.Fatalf("forged headers reached the upstream: %v", got)
		}
		if got.Get("X-Seen-Tier") != "free" {
			t.Fatalf("{http.auth.user.tier} = %q", got.Get("X-Seen-Tier"))
		}
	})

	t.Run("credentials are not forwarded", func(t *testing.T) {
		resp, body := get(t, in.URL("/v1/scores?limit=5&access_token=t0k&api_key=k3y"), bearer(token))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if got := up.received(); got.Get("Authorization") != "" || got.Get(HeaderUserID) != "demo" {
			t.Fatalf("upstream headers %v", got)
		}
		if q := up.receivedQuery(); q != "limit=5" {
			t.Fatalf("upstream query %q, want limit=5", q)
		}
		resp, body = get(t, in.URL("/v1/scores"), http.Header{"X-Api-Key": {aliceKey}})
		if resp.StatusCode != http.StatusOK || up.received().Get("X-Api-Key") != "" {
			t.Fatalf("status %d: %s; upstream headers %v", resp.StatusCode, body, up.received())
		}
	})

	t.Run("forward_credentials keeps them", func(t *testing.T) {
		resp, body := get(t, in.URL("/fwd/x?access_token=t0k"), bearer(token))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if got := up.received().Get("Authorization"); got != "Bearer "+token || up.receivedQuery() != "access_token=t0k" {
			t.Fatalf("upstream Authorization %q, query %q", got, up.receivedQuery())
		}
	})

	t.Run("an unknown key id and a wrong secret look the same", func(t *testing.T) {
		id, _ := ParseAPIKey(aliceKey)
		challenge := `Bearer realm="lexiscore", error="invalid_token", error_description="The API key is not valid."`
		for _, key := range []string{APIKeyPrefix + "0000000000000000_" + strings.Repeat("A", 43), APIKeyPrefix + id + "_" + strings.Repeat("A", 43)} {
			resp, body := get(t, in.URL("/v1/scores"), http.Header{"X-Api-Key": {key}})
			expectRefusal(t, resp, body, ResultInvalidKey, challenge)
		}
	})

	t.Run("RS256 key from a file", func(t *testing.T) {
		resp, body := get(t, in.URL("/v1/scores"), bearer(rsToken))
		if resp.StatusCode != http.StatusOK || up.received().Get(HeaderUserID) != "svc" {
			t.Fatalf("status %d: %s; upstream %v", resp.StatusCode, body, up.received())
		}
	})

	t.Run("a repeated token is checked once", func(t *testing.T) {
		repeated, err := IssueToken(testSecret, TokenOptions{Subject: "repeat", TTL: time.Hour}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		hits, misses := cacheCounts(t)
		for i := range 2 {
			resp, body := get(t, in.URL("/v1/scores"), bearer(repeated))
			if resp.StatusCode != http.StatusOK || up.received().Get(HeaderUserID) != "repeat" {
				t.Fatalf("request %d: status %d: %s; upstream %v", i+1, resp.StatusCode, body, up.received())
			}
		}
		if h, m := cacheCounts(t); h-hits != 1 || m-misses != 1 {
			t.Fatalf("%v cache hits and %v misses, want 1 and 1", h-hits, m-misses)
		}
	})

	t.Run("API key forwards identity", func(t *testing.T) {
		resp, body := get(t, in.URL("/v1/scores"), http.Header{"X-Api-Key": {aliceKey}, "X-Auth-User-Tenant": {"initech"}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		got := up.received()
		if got.Get(HeaderUserID) != "alice" || got.Get(HeaderUserTier) != "pro" || got.Values(HeaderUserTenant)[0] != "globex" || len(got.Values(HeaderUserTenant)) != 1 {
			t.Fatalf("upstream identity headers %v", got)
		}
	})

	t.Run("anonymous route strips forged headers", func(t *testing.T) {
		resp, _ := get(t, in.URL("/open/x"), http.Header{"X-Auth-User-Id": {"admin"}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got := up.received(); got.Get(HeaderUserID) != "" {
			t.Fatalf("forged identity reached the upstream: %v", got)
		}
		resp, body := get(t, in.URL("/open/x"), bearer("not-a-token"))
		expectRefusal(t, resp, body, ResultMalformed, `Bearer realm="lexiscore", error="invalid_token", error_description="The bearer token is malformed."`)
	})

	t.Run("keys file reloads without restart", func(t *testing.T) {
		bobKey, bobLine := mintKey(t, "bob", "free", "", nil)
		credentials = append(credentials, bobKey)
		writeKeys(t, keysFile, bobLine)
		status := func(key string) int {
			resp, _ := get(t, in.URL("/v1/scores"), http.Header{"X-Api-Key": {key}})
			return resp.StatusCode
		}
		testkit.Eventually(t, "the added key to be accepted", func() bool { return status(bobKey) == http.StatusOK })
		if got := status(aliceKey); got != http.StatusUnauthorized {
			t.Fatalf("removed key: status %d, want 401", got)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		if d := before(providerJWT, ResultExpired) - expiredBefore; d != 1 {
			t.Errorf("jwt/expired counted %v times, want 1", d)
		}
		if d := before(providerNone, ResultMissing) - missingBefore; d != 1 {
			t.Errorf("none/missing counted %v times, want 1", d)
		}
		_, body := get(t, in.URL("/metrics"), nil)
		for _, want := range []string{`gateway_auth_requests_total{provider="jwt",result="expired"}`, `gateway_auth_requests_total{provider="api_key",result="success"}`, `gateway_api_keys_reload_total{result="success"}`, `gateway_auth_token_cache_total{result="hit"}`} {
			if !strings.Contains(string(body), want) {
				t.Errorf("scrape lacks %s", want)
			}
		}
	})

	t.Run("audit log", func(t *testing.T) {
		var events []map[string]any
		testkit.Eventually(t, "audit events", func() bool {
			events = caddytest.ReadJSONLines(t, auditFile)
			return len(events) >= 8
		})
		raw, _ := os.ReadFile(auditFile)
		for _, c := range credentials {
			if strings.Contains(string(raw), c) || strings.Contains(string(raw), c[len(c)-16:]) {
				t.Fatal("the audit log contains a credential")
			}
		}
		seen := map[string]bool{}
		for _, e := range events {
			seen[fmt.Sprintf("%v/%v/%v", e["provider"], e["result"], e["reason"])] = true
			if e["logger"] != "http.handlers.authenticate.audit" || e["request_id"] == "" || e["client_ip"] != "127.0.0.1" || e["ts"] == nil {
				t.Fatalf("audit event lacks fields: %v", e)
			}
		}
		for _, want := range []string{"none/failure/missing", "jwt/failure/expired", "jwt/success/success", "api_key/success/success", "api_key/failure/unknown_key", "api_key/failure/bad_signature", "jwt/failure/malformed"} {
			if !seen[want] {
				t.Errorf("no audit event %s in %v", want, seen)
			}
		}
	})
}

// adapt turns a site's Caddyfile into its JSON config.
func TestRefusesToStartWithWeakSecret(t *testing.T) {
	cases := map[string]struct {
		value string
		set   bool
	}{
		"missing":     {},
		"empty":       {"", true},
		"too short":   {"0123456789abcdef", true},
		"placeholder": {"changeme-changeme-changeme-changeme", true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if tc.set {
				t.Setenv("IDENTITY_WEAK_SECRET", tc.value)
			} else {
				t.Setenv("IDENTITY_WEAK_SECRET", "")
				os.Unsetenv("IDENTITY_WEAK_SECRET")
			}
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			j := &JWT{SecretEnv: "IDENTITY_WEAK_SECRET"}
			err := j.Provision(ctx)
			if err == nil {
				t.Fatal("provisioned with a weak secret")
			}
			if !strings.Contains(err.Error(), "secret_env IDENTITY_WEAK_SECRET") {
				t.Fatalf("error does not name the setting: %v", err)
			}
			if tc.value != "" && strings.Contains(err.Error(), tc.value) {
				t.Fatalf("error echoes the secret: %v", err)
			}
		})
	}
}

func TestProvisionKeyErrors(t *testing.T) {
	dir := t.TempDir()
	k := keys(t)
	pemFile := filepath.Join(dir, "ec.pem")
	if err := os.WriteFile(pemFile, pemPublic(t, &k.ec.PublicKey), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]KeyConfig{
		"alg that does not fit": {ID: "ec", Type: "public_key", File: pemFile, Algorithms: []string{"RS256"}},
		"not PEM":               {ID: "ec", Type: "public_key", Env: "PATH"},
		"unknown type":          {ID: "ec", Type: "x509", File: pemFile},
		"both sources":          {ID: "ec", Type: "public_key", File: pemFile, Env: "PATH"},
		"weak hmac file":        {ID: "h", Type: "hmac", File: pemFile + ".missing"},
		"bad kid":               {ID: "a b", Type: "public_key", File: pemFile},
	}
	for name, kc := range cases {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := (&JWT{Keys: []KeyConfig{kc}}).Provision(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("key %q", kc.ID)) {
			t.Errorf("%s: %v, want an error naming the key", name, err)
		}
	}
}

func TestCaddyfileAdapt(t *testing.T) {
	cfg, err := caddytest.Adapt(`:8080 {
	handle /v1/* {
		authenticate {
			realm scoring
			jwt {
				secret_env GATEWAY_JWT_SECRET
				issuer ""
				audience lexiscore
				key k1 hmac env K1 HS256
				leeway 10s
				max_token_size 4KiB
			}
			api_key {
				header X-Key
				file ""
			}
		}
		respond 200
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	s := string(cfg)
	for _, want := range []string{
		`"handler":"authenticate"`, `"realm":"scoring"`, `"secret_env":"GATEWAY_JWT_SECRET"`, `"audience":"lexiscore"`,
		`"keys":[{"algorithms":["HS256"],"env":"K1","kid":"k1","type":"hmac"}]`, `"leeway":10000000000`, `"max_token_size":4096`, `"header":"X-Key"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("adapted config lacks %s:\n%s", want, s)
		}
	}
	if strings.Contains(s, `"issuer"`) || strings.Contains(s, `"file"`) {
		t.Errorf("empty settings must be left out:\n%s", s)
	}

	for name, body := range map[string]string{
		"no provider":        `authenticate`,
		"unknown option":     "authenticate {\n jwt {\n secret_env X\n }\n bogus\n}",
		"unknown jwt option": "authenticate {\n jwt {\n bogus 1\n }\n}",
		"bad key source":     "authenticate {\n jwt {\n key k1 hmac vault X\n }\n}",
		"bad duration":       "authenticate {\n api_key {\n reload_interval soon\n }\n}",
		"empty duration":     "authenticate {\n api_key {\n reload_interval \"\"\n }\n}",
		"two durations":      "authenticate {\n jwt {\n leeway 1s 2s\n }\n}",
		"twice":              "authenticate {\n api_key\n api_key\n}",
	} {
		d := caddyfile.NewTestDispenser(body)
		if err := new(Authenticate).UnmarshalCaddyfile(d); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestRefusalStripsForgedHeaders drives the handler without a server: even a
// refused request leaves no client-sent X-Auth-* header behind.
func TestRefusalStripsForgedHeaders(t *testing.T) {
	def := mustKey(t, testSecret)
	j := &JWT{MaxTokenSize: DefaultMaxTokenBytes, verifier: NewVerifier(VerifierConfig{Default: &def})}
	a := &Authenticate{Realm: "lexiscore", providers: []namedProvider{{providerJWT, j}}, audit: zap.NewNop(), logger: zap.NewNop()}
	r := httptest.NewRequest(http.MethodGet, "/v1/x", nil)
	r.Header.Set("X-Auth-User-Id", "admin")
	r.Header["x-auth-user-tier"] = []string{"enterprise"}
	r.Header.Set("Authorization", "Bearer a.b.c")
	w := httptest.NewRecorder()
	err := a.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Fatal("next handler called for a refused request")
		return nil
	}))
	var pe *problem.Error
	if !errors.As(err, &pe) || pe.Status != http.StatusUnauthorized || pe.Type != ProblemType {
		t.Fatalf("error %v, want a 401 problem", err)
	}
	if len(r.Header) != 1 {
		t.Fatalf("headers left: %v", r.Header)
	}
}
