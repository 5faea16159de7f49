package redact

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
)

// Through a real Caddy config: the access line of a request carrying
// credentials in headers and the query has every one masked, and the rest
// of the request as Caddy logs it.
func TestAccessLogThroughCaddy(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	in := caddytest.Start(t, "", fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	log {
		output file %s
		format redact %s
	}
	respond /hello "hi" 200
}`, logFile, accessLogFields))
	req, err := http.NewRequest("GET", in.URL("/hello?limit=5&access_token=s3cr3t-query"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer s3cr3t-jwt")
	req.Header.Set("Cookie", "session=s3cr3t-cookie")
	req.Header.Set("X-Api-Key", "s3cr3t-apikey")
	req.Header.Set("Proxy-Authorization", "Basic s3cr3t-proxy")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var raw []byte
	testkit.Eventually(t, "the access line", func() error {
		raw, _ = os.ReadFile(logFile)
		if !strings.Contains(string(raw), `"msg":"handled request"`) {
			return fmt.Errorf("log: %q", raw)
		}
		return nil
	})
	if strings.Contains(string(raw), "s3cr3t") {
		t.Fatalf("a credential in the access log: %s", raw)
	}
	var entry struct {
		Request struct {
			URI     string         `json:"uri"`
			Headers map[string]any `json:"headers"`
		} `json:"request"`
		Status int `json:"status"`
	}
	var handled string
	for l := range strings.Lines(string(raw)) {
		if strings.Contains(l, `"msg":"handled request"`) {
			handled = l
		}
	}
	if err := json.Unmarshal([]byte(handled), &entry); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if entry.Status != http.StatusOK || entry.Request.URI != "/hello?access_token=REDACTED&limit=5" ||
		fmt.Sprint(entry.Request.Headers["Accept"]) != "[application/json]" {
		t.Errorf("access line %s", handled)
	}
	for _, h := range []string{"Authorization", "Cookie", "X-Api-Key", "Proxy-Authorization"} {
		if v := entry.Request.Headers[h]; v != "REDACTED" {
			t.Errorf("%s logged as %v, want REDACTED", h, v)
		}
	}
}
