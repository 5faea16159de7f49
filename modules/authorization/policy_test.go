package authorization

import (
	"maps"

	"github.com/caddyserver/caddy/v2"
	"testing"
)

func TestTemplateMatch(t *testing.T) {
	cases := []struct {
		tmpl, path string
		want       map[string]string // nil: no match
	}{
		{"/v1/users/{user}/*", "/v1/users/alice/scores", map[string]string{"user": "alice"}},
		{"/v1/users/{user}/*", "/v1/users/alice", map[string]string{"user": "alice"}},
		{"/v1/users/{user}/*", "/v1/users/alice/scores/", map[string]string{"user": "alice"}},
		{"/v1/users/{user}/*", "/v1/users/al%69ce/scores", map[string]string{"user": "alice"}},
		{"/v1/users/{user}/*", "/v1//users/alice/scores", map[string]string{"user": "alice"}},
		{"/v1/users/{user}/*", "/v1/users/bob/../alice/scores", map[string]string{"user": "alice"}},
		{"/v1/users/{user}/*", "/v1/users/./alice/scores", map[string]string{"user": "alice"}},
		{"/v1/users/{user}/*", "/v1/users/bob/%2e%2e/alice/scores", map[string]string{"user": "alice"}},
		{"/v1/users/{user}/*", "/v1/users/bob/%2E%2E/alice/scores", map[string]string{"user": "alice"}},
		{"/v1/users/{user}/*", "/v1/users", nil},
		{"/v1/users/{user}/*", "/v1/Users/alice/scores", nil},
		{"/v1/users/{user}/*", "/v2/users/alice/scores", nil},
		{"/v1/users/{user}/scores", "/v1/users/alice/scores", map[string]string{"user": "alice"}},
		{"/v1/users/{user}/scores", "/v1/users/alice/scores/x", nil},
		{"/v1/tenants/{tenant}/users/{user}", "/v1/tenants/acme/users/bob", map[string]string{"tenant": "acme", "user": "bob"}},
	}
	for _, tc := range cases {
		tmpl, err := ParseTemplate(tc.tmpl)
		if err != nil {
			t.Fatalf("%s: %v", tc.tmpl, err)
		}
		segs, err := Segments(tc.path)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		got, ok := tmpl.Match(segs)
		if ok != (tc.want != nil) || (ok && !maps.Equal(got, tc.want)) {
			t.Errorf("%s against %s: %v, %v; want %v", tc.tmpl, tc.path, got, ok, tc.want)
		}
	}
}

func TestSegmentsRefusesAmbiguousPaths(t *testing.T) {
	for _, p := range []string{"/v1/users/bob%2Falice/scores", "/v1%2fusers/alice/scores", "/v1/users/alice%00/scores", "/v1/users/%zz/scores"} {
		if segs, err := Segments(p); err == nil {
			t.Errorf("%s: %q", p, segs)
		}
	}
}

func TestParseTemplateErrors(t *testing.T) {
	for _, s := range []string{"v1/users", "/v1//users", "/v1/*/x", "/v1/{a}/{a}", "/v1/{a.b}", "/v1/x{a}", "/v1/{}", "/v1/../x", "/v1/a*"} {
		if _, err := ParseTemplate(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}

func TestAllows(t *testing.T) {
	identityOf := map[string]string{"{http.auth.user.id}": "alice", "{http.auth.user.tenant}": "acme"}
	alice := Caller{Replace: func(s string) string { return identityOf[s] }}
	anonymous := Caller{Replace: func(string) string { return "" }}
	grants := []Grant{
		{Param: "user", Equals: "{http.auth.user.id}"},
		{Scopes: []string{"scores:read:tenant", "scores:read:any"}},
	}
	withScopes := func(c Caller, s ...string) Caller { c.Scopes = s; return c }
	cases := []struct {
		name   string
		params map[string]string
		caller Caller
		want   string
	}{
		{"own data", map[string]string{"user": "alice"}, alice, grantIdentity},
		{"another user's data", map[string]string{"user": "bob"}, alice, ""},
		{"prefix of the id is not the id", map[string]string{"user": "alic"}, alice, ""},
		{"operator scope", map[string]string{"user": "bob"}, withScopes(alice, "openid", "scores:read:any"), grantScope},
		{"tenant scope", map[string]string{"user": "bob"}, withScopes(alice, "scores:read:tenant"), grantScope},
		{"an unrelated scope", map[string]string{"user": "bob"}, withScopes(alice, "scores:write"), ""},
		{"anonymous never equals an empty parameter", map[string]string{"user": ""}, anonymous, ""},
		{"anonymous", map[string]string{"user": "alice"}, anonymous, ""},
	}
	for _, tc := range cases {
		if got := allows(grants, tc.params, tc.caller); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	// Without authentication the placeholder is unset: a path segment that
	// spells the placeholder out must not equal it.
	unset := callerOf(caddy.NewReplacer())
	if got := allows(grants, map[string]string{"user": "{http.auth.user.id}"}, unset); got != "" {
		t.Errorf("an unset identity placeholder allowed by %q", got)
	}
	if got := allows(nil, map[string]string{"user": "alice"}, alice); got != "" {
		t.Errorf("no grants allowed by %q", got)
	}
}
