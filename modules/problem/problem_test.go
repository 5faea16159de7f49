package problem_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/lexiscore/gateway/internal/testkit/caddytest"
	_ "github.com/lexiscore/gateway/modules/correlation"
	"github.com/lexiscore/gateway/modules/problem"
)

func caddyhttpError(status int, err error) error { return caddyhttp.Error(status, err) }

func TestFromError(t *testing.T) {
	internal := errors.New("dial tcp 10.0.0.7:9001: connect: connection refused")
	cases := []struct {
		name       string
		err        error
		wantStatus int
		wantType   string
		wantDetail string
	}{
		{"problem error", problem.New(429, "rate-limited", "Slow down.", internal), 429, "rate-limited", "Slow down."},
		{"wrapped problem", fmt.Errorf("outer: %w", &problem.Error{Status: 503, Type: "degraded", Detail: "Shedding load."}), 503, "degraded", "Shedding load."},
		{"caddy 502 hides cause", caddyhttpError(502, internal), 502, "bad-gateway", "The scoring service could not be reached."},
		{"caddy 404", caddyhttpError(404, nil), 404, "not-found", "No resource matches this path."},
		{"unknown status", caddyhttpError(418, internal), 418, "im-a-teapot", "I'm a teapot"},
		{"plain error is 500", internal, 500, "internal-server-error", "Internal Server Error"},
		{"nil error is 500", nil, 500, "internal-server-error", "Internal Server Error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, typ, detail, _ := problem.FromError(tc.err)
			if status != tc.wantStatus || typ != tc.wantType || detail != tc.wantDetail {
				t.Fatalf("got (%d, %q, %q), want (%d, %q, %q)", status, typ, detail, tc.wantStatus, tc.wantType, tc.wantDetail)
			}
			if strings.Contains(detail, "10.0.0.7") {
				t.Fatalf("detail leaks the internal error: %q", detail)
			}
		})
	}
}

// TestHandleErrorsRendersProblem drives the handler through a real Caddyfile.
func TestHandleErrorsRendersProblem(t *testing.T) {
	in := caddytest.Start(t, "", `
http://127.0.0.1:{http_port} {
	request_id
	handle /missing {
		error "secret internal detail" 404
	}
	handle /proxy {
		reverse_proxy `+caddytest.ClosedAddr(t)+`
	}
	handle_errors {
		problem https://example.test/problems/
	}
}`)
	cases := []struct {
		path       string
		wantStatus int
		wantType   string
	}{
		{"/missing", 404, "https://example.test/problems/not-found"},
		{"/proxy", 502, "https://example.test/problems/bad-gateway"},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(http.MethodGet, in.URL(tc.path), nil)
		req.Header.Set("X-Request-ID", "corr-42")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.wantStatus || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s: %d %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		want := map[string]any{"type": tc.wantType, "status": float64(tc.wantStatus), "request_id": "corr-42", "instance": tc.path}
		for k, v := range want {
			if doc[k] != v {
				t.Errorf("%s: %s = %v, want %v", tc.path, k, doc[k], v)
			}
		}
		if body, _ := json.Marshal(doc); strings.Contains(string(body), "secret") || strings.Contains(string(body), "127.0.0.1") {
			t.Errorf("%s: problem leaks internals: %s", tc.path, body)
		}
	}
}
