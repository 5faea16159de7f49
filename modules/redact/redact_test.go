package redact

import (
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func provisioned(t *testing.T, f *QuerySecrets) *QuerySecrets {
	t.Helper()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := f.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestQuerySecretsMasksCredentialNames(t *testing.T) {
	f := provisioned(t, &QuerySecrets{})
	for _, name := range []string{
		"token", "apikey", "api_key", "API-Key", "key", "password", "passwd", "pwd", "secret", "client_secret",
		"signature", "X-Amz-Signature", "sig", "auth", "authorization", "code", "access_token", "id_token",
		"refresh_token", "credential", "X-Amz-Credential", "session", "sessionid", "jwt", "bearer", "otp", "ticket",
		"TOKEN", "Api.Key",
	} {
		got := f.Filter(zap.String("uri", "/v1/scores?"+name+"=s3cr3t&limit=5")).String
		if want := "/v1/scores?" + name + "=REDACTED&limit=5"; got != want && got != "/v1/scores?limit=5&"+name+"=REDACTED" {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

func TestQuerySecretsLeavesTheRest(t *testing.T) {
	f := provisioned(t, &QuerySecrets{Names: []string{"ssn"}, Replacement: "***"})
	cases := []struct{ in, want string }{
		{"/v1/scores", "/v1/scores"},
		{"/v1/users/u1/scores?limit=5&cursor=abc", "/v1/users/u1/scores?limit=5&cursor=abc"},
		{"/v1/x?a=1&token=t&token=u", "/v1/x?a=1&token=%2A%2A%2A&token=%2A%2A%2A"},
		{"/v1/x?SSN=123-45", "/v1/x?SSN=%2A%2A%2A"},
		// Unreadable: masked whole rather than risk a credential in clear.
		{"/v1/x?a=%zz&token=t", "/v1/x?***"},
		{"/v1/x?a=1;token=t", "/v1/x?***"},
		{"https://h.test/p?sig=abc#frag", "https://h.test/p?sig=%2A%2A%2A"},
	}
	for _, c := range cases {
		if got := f.Filter(zap.String("uri", c.in)).String; got != c.want {
			t.Errorf("%q: %q, want %q", c.in, got, c.want)
		}
	}
	if got := f.Filter(zap.Int("n", 3)); got.Integer != 3 {
		t.Errorf("an integer field changed: %v", got)
	}
}

func TestQuerySecretsCaddyfile(t *testing.T) {
	var f QuerySecrets
	d := caddyfile.NewTestDispenser("query_secrets ssn pin {\n replacement X\n}")
	if err := f.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if len(f.Names) != 2 || f.Names[1] != "pin" || f.Replacement != "X" {
		t.Fatalf("parsed %+v", f)
	}
	if err := (&QuerySecrets{Names: []string{"-_"}}).Validate(); err == nil {
		t.Fatal("a name of separators only was accepted")
	}
	if err := (&QuerySecrets{}).UnmarshalCaddyfile(caddyfile.NewTestDispenser("query_secrets {\n nope\n}")); err == nil {
		t.Fatal("an unknown subdirective was accepted")
	}
}
