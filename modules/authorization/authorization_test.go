package authorization

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
	"github.com/lexiscore/gateway/modules/identity"
	_ "github.com/lexiscore/gateway/modules/problem"
)

// authzSecret passes identity's strength rules.
const authzSecret = "k3J9vQ2xW7mZp4Ls8Tn1Rb6Yc0Hd5Fg+Ae/Uo="

func token(t *testing.T, user, tenant string, scopes ...string) http.Header {
	t.Helper()
	tok, err := identity.IssueToken([]byte(authzSecret), identity.TokenOptions{
		Subject: user, Tenant: tenant, Scopes: scopes, TTL: time.Hour,
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return http.Header{"Authorization": {"Bearer " + tok}}
}

func TestAuthorizeThroughCaddyfile(t *testing.T) {
	t.Setenv("AUTHZ_IT_SECRET", authzSecret)
	var (
		mu      sync.Mutex
		reached []string
	)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		reached = append(reached, r.URL.Path+" "+r.Header.Get(identity.HeaderUserScopes))
	}))
	t.Cleanup(up.Close)
	auditFile := filepath.Join(t.TempDir(), "audit.log")

	in := caddytest.Start(t, fmt.Sprintf(`log audit {
		output file %s
		format json
		include http.handlers.authorize.audit
	}`, auditFile), fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	handle /v1/* {
		authenticate {
			jwt {
				secret_env AUTHZ_IT_SECRET
			}
		}
		authorize {
			policy user_data /v1/users/{user}/* {
				allow {user} == {http.auth.user.id}
				allow scope scores:read:tenant scores:read:any
			}
			policy tenant_admin /v1/tenants/{tenant}/* {
				allow {tenant} == {http.auth.user.tenant}
				deny_status 404
			}
		}
		reverse_proxy %s
	}
	handle_errors {
		problem
	}
}`, strings.TrimPrefix(up.URL, "http://")))

	do := func(path string, h http.Header) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, in.URL(path), nil)
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var doc map[string]any
		if resp.Header.Get("Content-Type") == "application/problem+json" {
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatalf("%s: %v: %s", path, err, body)
			}
		}
		return resp.StatusCode, doc
	}
	count := func(policy, decision, grant string) float64 {
		return testkit.Value(decisions.WithLabelValues(policy, decision, grant))
	}
	deniedBefore, scopeBefore := count("user_data", decisionDeny, grantNone), count("user_data", decisionAllow, grantScope)

	bob := token(t, "bob", "globex")
	cases := []struct {
		name, path string
		h          http.Header
		want       int
	}{
		{"alice reads her own scores", "/v1/users/alice/scores", token(t, "alice", "acme"), 200},
		{"bob reads alice's scores", "/v1/users/alice/scores", bob, 403},
		{"bob, dot segments", "/v1/users/bob/%2e%2e/alice/scores", bob, 403},
		{"bob, encoded slash", "/v1/users/bob%2F..%2Falice/scores", bob, 400},
		{"bob reads a score by id: the backend decides", "/v1/scores/sc_1", bob, 200},
		{"a tenant-scoped user", "/v1/users/alice/scores", token(t, "carol", "acme", "scores:read:tenant"), 200},
		{"an operator", "/v1/users/alice/scores", token(t, "ops", "lexiscore", "openid", "scores:read:any"), 200},
		{"an unrelated scope", "/v1/users/alice/scores", token(t, "eve", "acme", "scores:write"), 403},
		{"another tenant: 404", "/v1/tenants/acme/settings", bob, 404},
		{"own tenant", "/v1/tenants/globex/settings", bob, 200},
	}
	for _, tc := range cases {
		status, doc := do(tc.path, tc.h)
		if status != tc.want {
			t.Errorf("%s: status %d, want %d (%v)", tc.name, status, tc.want, doc)
			continue
		}
		switch status {
		case 403:
			if !strings.HasSuffix(fmt.Sprint(doc["type"]), "#forbidden") || doc["policy"] != "user_data" {
				t.Errorf("%s: problem %v", tc.name, doc)
			}
		case 404:
			if !strings.HasSuffix(fmt.Sprint(doc["type"]), "#not-found") || doc["policy"] != nil {
				t.Errorf("%s: problem %v", tc.name, doc)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range reached {
		if strings.HasPrefix(r, "/v1/users/alice") && strings.Contains(r, "bob") {
			t.Errorf("a refused request reached the upstream: %s", r)
		}
	}
	if got := strings.Join(reached, ","); !strings.Contains(got, "/v1/users/alice/scores openid scores:read:any") {
		t.Errorf("the upstream did not get the operator's scopes: %s", got)
	}

	if d := count("user_data", decisionDeny, grantNone) - deniedBefore; d != 3 {
		t.Errorf("user_data denials counted %v, want 3", d)
	}
	if d := count("user_data", decisionAllow, grantScope) - scopeBefore; d != 2 {
		t.Errorf("user_data allowed by scope counted %v, want 2", d)
	}

	var events []map[string]any
	testkit.Eventually(t, "six audit events", func() bool {
		events = caddytest.ReadJSONLines(t, auditFile)
		return len(events) >= 6
	})
	seen := map[string]int{}
	for _, e := range events {
		seen[fmt.Sprintf("%v/%v/%v/%v", e["policy"], e["decision"], e["grant"], e["user_id"])]++
	}
	for want, n := range map[string]int{"user_data/deny/none/bob": 2, "user_data/deny/none/eve": 1, "user_data/allow/scope/carol": 1, "user_data/allow/scope/ops": 1, "tenant_admin/deny/none/bob": 1} {
		if seen[want] != n {
			t.Errorf("audit %s: %d events, want %d (%v)", want, seen[want], n, seen)
		}
	}
}

func TestCaddyfileErrors(t *testing.T) {
	for _, body := range []string{
		"",
		"policy",
		"policy p /v1/{a} {\nallow {b} == {http.auth.user.id}\n}",
		"policy p /v1/{a} {\nallow {a} = x\n}",
		"policy p /v1/{a} {\nallow scope\n}",
		"policy p /v1/{a} {\ndeny_status 500\n}",
		"policy p v1",
		"policy p /v1/{a} {\nallow scope \"a b\"\n}",
		"policy p /a\npolicy p /b",
		"policy p /v1/{a} {\nwhatever\n}",
	} {
		src := "authorize {\n" + body + "\n}"
		var a Authorize
		err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src))
		if err == nil {
			err = provisionAndValidate(&a)
		}
		if err == nil {
			t.Errorf("%q was accepted", src)
		}
	}
}

func TestCaddyfileParses(t *testing.T) {
	var a Authorize
	src := "authorize {\npolicy user_data /v1/users/{user}/* {\nallow {user} == {http.auth.user.id}\nallow scope scores:read:any\ndeny_status 404\n}\n}"
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err != nil {
		t.Fatal(err)
	}
	want := Policy{Name: "user_data", Path: "/v1/users/{user}/*", DenyStatus: 404, Allow: []Grant{
		{Param: "user", Equals: "{http.auth.user.id}"}, {Scopes: []string{"scores:read:any"}},
	}}
	if len(a.Policies) != 1 || fmt.Sprint(a.Policies[0]) != fmt.Sprint(want) {
		t.Fatalf("%+v", a.Policies)
	}
	if err := provisionAndValidate(&a); err != nil {
		t.Fatal(err)
	}
}

func provisionAndValidate(a *Authorize) error {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := a.Provision(ctx); err != nil {
		return err
	}
	return a.Validate()
}
