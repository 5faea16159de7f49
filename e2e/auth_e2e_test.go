package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit"
)

// gatewayCLI runs a subcommand of the gateway binary and returns its stdout.
func gatewayCLI(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.Gateway, args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// newAPIKey issues an API key with the gateway's new-api-key command and
// writes its line to a keys file of its own: the key, and that file's path.
func newAPIKey(t *testing.T, args ...string) (key, keysFile string) {
	t.Helper()
	out, err := gatewayCLI(t, nil, append([]string{"new-api-key"}, args...)...)
	if err != nil {
		t.Fatalf("new-api-key: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "lsk_") {
		t.Fatalf("new-api-key printed %q", out)
	}
	keysFile = filepath.Join(t.TempDir(), "api-keys.jsonl")
	if err := os.WriteFile(keysFile, []byte(lines[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return lines[0], keysFile
}

// receivedHeaders returns the headers of the last /v1 request the backend got.
func receivedHeaders(t *testing.T, be *Backend) http.Header {
	t.Helper()
	var seen []struct {
		Headers http.Header `json:"headers"`
	}
	be.Admin(t, "/requests", &seen)
	if len(seen) == 0 {
		t.Fatal("the backend received no request")
	}
	return seen[len(seen)-1].Headers
}

func TestAuthenticationEndToEnd(t *testing.T) {
	secret := randomSecret()
	secretEnv := map[string]string{"GATEWAY_JWT_SECRET": secret}
	apiKey, keysFile := newAPIKey(t, "--user", "robot", "--tier", "pro", "--tenant", "globex", "--expires", "720h")

	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, map[string]string{
		"GATEWAY_JWT_SECRET":    secret,
		"GATEWAY_JWT_ISSUER":    "https://id.lexiscore.test",
		"GATEWAY_JWT_AUDIENCE":  "lexiscore",
		"GATEWAY_API_KEYS_FILE": keysFile,
		// Required by the request signing the Caddyfile also does.
	})

	out, err := gatewayCLI(t, secretEnv, "issue-token", "--sub", "demo", "--tier", "free", "--tenant", "acme", "--ttl", "1h", "--iss", "https://id.lexiscore.test", "--aud", "lexiscore")
	if err != nil {
		t.Fatalf("issue-token: %v: %s", err, out)
	}
	token := strings.TrimSpace(out)
	wrongAud, err := gatewayCLI(t, secretEnv, "issue-token", "--sub", "demo", "--iss", "https://id.lexiscore.test", "--aud", "someone-else")
	if err != nil {
		t.Fatalf("issue-token: %v: %s", err, wrongAud)
	}
	expired := SignedToken(t, secret, Claims{Subject: "demo", Issuer: "https://id.lexiscore.test", Audience: "lexiscore", IssuedAt: time.Now().Add(-time.Hour), TTL: time.Minute})
	bearer := func(tok string) http.Header {
		return http.Header{"Authorization": {"Bearer " + strings.TrimSpace(tok)}}
	}

	t.Run("health and readiness stay open", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz"} {
			testkit.Eventually(t, p, func() error {
				return expectOK(gw, p)
			})
		}
	})

	refusals := []struct {
		name   string
		header http.Header
		detail string
	}{
		{"no credentials", nil, "The request carries no credentials: send a bearer token in the Authorization header or an API key."},
		{"expired token", bearer(expired), "The bearer token has expired."},
		{"wrong audience", bearer(wrongAud), "The bearer token is not meant for this audience."},
		{"wrong API key secret", http.Header{"X-Api-Key": {apiKey[:len(apiKey)-4] + "AAAA"}}, "The API key is not valid."},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			resp := gw.Do(t, http.MethodGet, "/v1/users/demo/scores", nil, tc.header)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
			assertSecurityHeaders(t, resp)
			doc := problemBody(t, resp)
			if doc["detail"] != tc.detail || !strings.HasSuffix(doc["type"].(string), "#unauthenticated") {
				t.Fatalf("problem %v, want detail %q", doc, tc.detail)
			}
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="lexiscore"`) {
				t.Fatalf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}

	t.Run("token identity reaches the backend, forged headers do not", func(t *testing.T) {
		h := bearer(token)
		h.Set("X-Auth-User-Id", "admin")
		h.Set("X-Auth-User-Tier", "enterprise")
		resp := gw.Do(t, http.MethodGet, "/v1/users/demo/scores", nil, h)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		got := receivedHeaders(t, be)
		if id := got.Values("X-Auth-User-Id"); len(id) != 1 || id[0] != "demo" {
			t.Fatalf("backend got X-Auth-User-Id %v", id)
		}
		if got.Get("X-Auth-User-Tier") != "free" || got.Get("X-Auth-User-Tenant") != "acme" {
			t.Fatalf("backend headers %v", got)
		}
	})

	t.Run("API key identity reaches the backend", func(t *testing.T) {
		resp := gw.Do(t, http.MethodGet, "/v1/users/robot/scores", nil, http.Header{"X-Api-Key": {apiKey}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		got := receivedHeaders(t, be)
		if got.Get("X-Auth-User-Id") != "robot" || got.Get("X-Auth-User-Tier") != "pro" || got.Get("X-Auth-User-Tenant") != "globex" {
			t.Fatalf("backend headers %v", got)
		}
	})

	t.Run("metrics and logs", func(t *testing.T) {
		m := gw.Metrics(t)
		for _, want := range []string{
			`gateway_auth_requests_total{provider="jwt",result="success"} 1`,
			`gateway_auth_requests_total{provider="jwt",result="expired"} 1`,
			`gateway_auth_requests_total{provider="jwt",result="wrong_audience"} 1`,
			`gateway_auth_requests_total{provider="api_key",result="success"} 1`,
			`gateway_auth_requests_total{provider="none",result="missing"} 1`,
		} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		// Audit lines are written in batches: wait for the five decisions
		// counted above.
		testkit.Eventually(t, "audit events in the gateway's output", func() error {
			if n := strings.Count(gw.Output(), `"logger":"http.handlers.authenticate.audit"`); n < 5 {
				return fmt.Errorf("%d audit events, want at least 5", n)
			}
			return nil
		})
		logs := gw.Output()
		for _, secretText := range []string{secret, token, expired, apiKey} {
			if strings.Contains(logs, secretText) {
				t.Fatal("the gateway's output contains a secret, token or key")
			}
		}
	})
}

func expectOK(gw *Gateway, path string) error {
	resp, err := gw.Client.Get(gw.BaseURL + path)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &statusError{resp.StatusCode, http.StatusOK}
	}
	return nil
}

func TestGatewayRefusesWeakJWTSecret(t *testing.T) {
	caddyfile := filepath.Join(bins.Root, "Caddyfile")
	for name, value := range map[string]string{"missing": "", "default": "changeme-changeme-changeme-changeme", "short": "0123456789"} {
		t.Run(name, func(t *testing.T) {
			// Everything else the Caddyfile requires is valid, so that only
			// the JWT secret can be what stops it.
			env := map[string]string{"XDG_DATA_HOME": t.TempDir(), "XDG_CONFIG_HOME": t.TempDir(), "GATEWAY_SIGNING_SECRET": randomSecret()}
			if value != "" {
				env["GATEWAY_JWT_SECRET"] = value
			}
			if _, set := os.LookupEnv("GATEWAY_JWT_SECRET"); set && value == "" {
				t.Setenv("GATEWAY_JWT_SECRET", "")
				os.Unsetenv("GATEWAY_JWT_SECRET")
			}
			out, err := gatewayCLI(t, env, "validate", "--config", caddyfile, "--adapter", "caddyfile")
			if err == nil {
				t.Fatalf("the gateway accepted the secret; output:\n%s", out)
			}
			if !strings.Contains(out, "secret_env GATEWAY_JWT_SECRET") {
				t.Fatalf("the error does not name the setting:\n%s", out)
			}
			if value != "" && strings.Contains(out, value) {
				t.Fatal("the error echoes the secret")
			}
		})
	}
}
