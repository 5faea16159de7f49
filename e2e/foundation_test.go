package e2e

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit"
)

// securityHeaders must be on every response of the public site.
var securityHeaders = map[string]string{
	"Strict-Transport-Security": "max-age=63072000; includeSubDomains",
	"Content-Security-Policy":   "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
	"X-Content-Type-Options":    "nosniff",
	"X-Frame-Options":           "DENY",
	"Referrer-Policy":           "no-referrer",
}

func assertSecurityHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	for k, want := range securityHeaders {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s %s: header %s = %q, want %q", resp.Request.Method, resp.Request.URL.Path, k, got, want)
		}
	}
	if s := resp.Header.Get("Server"); s != "" {
		t.Errorf("%s: Server header %q leaked", resp.Request.URL.Path, s)
	}
	if resp.Header.Get("Permissions-Policy") == "" {
		t.Errorf("%s: no Permissions-Policy", resp.Request.URL.Path)
	}
}

// problemBody decodes a problem+json response, failing on any other type.
func problemBody(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("%s: Content-Type %q, want application/problem+json", resp.Request.URL.Path, ct)
	}
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("decoding problem: %v", err)
	}
	for _, k := range []string{"type", "title", "status", "detail", "request_id"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("problem document lacks %q: %v", k, doc)
		}
	}
	if doc["request_id"] != resp.Header.Get("X-Request-ID") {
		t.Errorf("problem request_id %v, response header %q", doc["request_id"], resp.Header.Get("X-Request-ID"))
	}
	return doc
}

func TestHTTPRedirectsToHTTPS(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, nil)

	resp, err := gw.Client.Get(gw.HTTPURL + "/v1/scores/abc?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect {
		t.Fatalf("status %d, want 308", resp.StatusCode)
	}
	if loc, want := resp.Header.Get("Location"), gw.BaseURL+"/v1/scores/abc?x=1"; loc != want {
		t.Fatalf("Location %q, want %q", loc, want)
	}
	if resp.Header.Get("Server") != "" {
		t.Errorf("redirect leaks Server header %q", resp.Header.Get("Server"))
	}
}

// TestRedirectGoesToConfiguredDomainOnly: the HTTP port redirects every Host
// to GATEWAY_DOMAIN; redirecting to the Host a client sent is an open redirect.
func TestRedirectGoesToConfiguredDomainOnly(t *testing.T) {
	gw := StartGateway(t, bins, []string{testkit.FreeAddr(t)}, nil)
	for _, host := range []string{"evil.test", "evil.test:443", "localhost.evil.test"} {
		req, _ := http.NewRequest(http.MethodGet, gw.HTTPURL+"/v1/scores?x=1", nil)
		req.Host = host
		resp, err := gw.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc, want := resp.Header.Get("Location"), gw.BaseURL+"/v1/scores?x=1"; resp.StatusCode != http.StatusPermanentRedirect || loc != want {
			t.Errorf("Host %s: %d to %q, want 308 to %q", host, resp.StatusCode, loc, want)
		}
		if s := resp.Header.Get("Server"); s != "" {
			t.Errorf("Host %s: Server header %q", host, s)
		}
	}
}

// TestUnservedHostIsMisdirected: on the TLS port (SNI localhost), a Host the
// gateway does not serve gets a 421 problem with the security headers, not
// Caddy's empty 200 with Server: Caddy; over HTTP/1.1 and HTTP/2 alike.
func TestUnservedHostIsMisdirected(t *testing.T) {
	gw := StartGateway(t, bins, []string{testkit.FreeAddr(t)}, nil)
	h1 := *gw.Client
	tr := gw.Client.Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	h1.Transport = tr
	for _, c := range []struct {
		name   string
		client *http.Client
	}{{"HTTP/2", gw.Client}, {"HTTP/1.1", &h1}} {
		for _, host := range []string{"evil.test", "127.0.0.1", "localhost.evil.test"} {
			req, _ := http.NewRequest(http.MethodGet, gw.BaseURL+"/healthz", nil)
			req.Host = host
			resp, err := c.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusMisdirectedRequest {
				t.Errorf("%s Host %s: status %d, want 421", c.name, host, resp.StatusCode)
			}
			assertSecurityHeaders(t, resp)
			if doc := problemBody(t, resp); doc["status"] != float64(http.StatusMisdirectedRequest) {
				t.Errorf("%s Host %s: problem %v", c.name, host, doc)
			}
			resp.Body.Close()
		}
	}
	if got := gw.Do(t, http.MethodGet, "/healthz", nil, nil).StatusCode; got != http.StatusOK {
		t.Errorf("the served host: /healthz %d, want 200", got)
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	be := StartBackend(t, bins, nil)
	down := testkit.FreeAddr(t)
	gw := StartGateway(t, bins, []string{be.Addr}, nil)
	gwDown := StartGateway(t, bins, []string{down}, nil)

	cases := []struct {
		name string
		gw   *Gateway
		path string
		want int
		// alsoOK is another acceptable status: with no upstream answering,
		// 502 until health checks mark it down, 503 after.
		alsoOK int
	}{
		{"health 200", gw, "/healthz", http.StatusOK, 0},
		{"contract 200", gw, "/openapi.json", http.StatusOK, 0},
		{"proxied 200", gw, "/v1/users/u1/scores", http.StatusOK, 0},
		{"gateway 404", gw, "/no/such/route", http.StatusNotFound, 0},
		{"backend 404", gw, "/v1/scores/does-not-exist", http.StatusNotFound, 0},
		{"no upstream 502/503", gwDown, "/v1/scores/abc", http.StatusServiceUnavailable, http.StatusBadGateway},
		{"unauthenticated 401", gw, "/v1/scores/abc", http.StatusUnauthorized, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h http.Header
			if tc.want != http.StatusUnauthorized {
				h = tc.gw.Bearer(t, "u1", "free")
			}
			resp := tc.gw.Do(t, http.MethodGet, tc.path, nil, h)
			if resp.StatusCode != tc.want && resp.StatusCode != tc.alsoOK {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			assertSecurityHeaders(t, resp)
			if resp.StatusCode >= 400 {
				problemBody(t, resp)
			}
		})
	}
}

func TestRequestIDEchoedAndForwarded(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, nil)

	cases := []struct {
		name, sent string
		kept       bool
	}{
		{"well-formed kept", "req-1234_abc.def:9", true},
		{"absent minted", "", false},
		{"malformed replaced", "bad id\twith spaces", false},
		{"too long replaced", strings.Repeat("a", 200), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := gw.Bearer(t, "u1", "free")
			if tc.sent != "" {
				h.Set("X-Request-ID", tc.sent)
			}
			resp := gw.Do(t, http.MethodGet, "/v1/users/u1/scores", nil, h)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ids := resp.Header.Values("X-Request-ID"); len(ids) != 1 {
				t.Fatalf("the response has X-Request-ID %v, want exactly one (the backend echoes it)", ids)
			}
			got := resp.Header.Get("X-Request-ID")
			if tc.kept && got != tc.sent {
				t.Fatalf("echoed %q, want %q", got, tc.sent)
			}
			if !tc.kept && (got == "" || got == tc.sent) {
				t.Fatalf("echoed %q: want a freshly minted ID", got)
			}
			var seen []struct {
				Headers map[string][]string `json:"headers"`
			}
			be.Admin(t, "/requests", &seen)
			last := seen[len(seen)-1].Headers["X-Request-Id"]
			if len(last) != 1 || last[0] != got {
				t.Fatalf("backend received X-Request-ID %v, client got %q", last, got)
			}
		})
	}
}

func TestReadinessFollowsBackendOutage(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, nil)

	ready := func(want int) func() error {
		return func() error { return ExpectStatus(gw.Client, gw.BaseURL+"/readyz", want) }
	}
	testkit.Eventually(t, "ready", ready(http.StatusOK))

	be.SetFaults(t, map[string]any{"outage": true})
	testkit.Eventually(t, "not ready", ready(http.StatusServiceUnavailable))
	resp := gw.Do(t, http.MethodGet, "/readyz", nil, nil)
	assertSecurityHeaders(t, resp)
	problemBody(t, resp)
	if got := gw.Do(t, http.MethodGet, "/healthz", nil, nil).StatusCode; got != http.StatusOK {
		t.Errorf("/healthz during outage: %d, want 200 (the gateway itself is alive)", got)
	}

	be.SetFaults(t, map[string]any{"outage": false})
	testkit.Eventually(t, "ready again", ready(http.StatusOK))
}

// TestNoUpstreamIsProblem: with no upstream answering, the gateway answers
// itself — 503 once health checks or breakers have marked the upstream down,
// 502 before — always as a problem document without internal details.
func TestNoUpstreamIsProblem(t *testing.T) {
	gw := StartGateway(t, bins, []string{testkit.FreeAddr(t)}, nil)
	h := gw.Bearer(t, "u1", "free")
	h.Set("X-Request-ID", "trace-me-502")
	resp := gw.Do(t, http.MethodGet, "/v1/scores/abc", nil, h)
	if resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 502 or 503", resp.StatusCode)
	}
	doc := problemBody(t, resp)
	if doc["request_id"] != "trace-me-502" || doc["status"] != float64(resp.StatusCode) {
		t.Fatalf("problem %v", doc)
	}
	if d, _ := doc["detail"].(string); strings.Contains(d, "127.0.0.1") || strings.Contains(d, "dial") {
		t.Fatalf("problem detail leaks internals: %q", d)
	}
}

type statusError struct{ got, want int }

func (e *statusError) Error() string {
	return http.StatusText(e.got) + ", want " + http.StatusText(e.want)
}

// TestTLSCertificateExpiryExposed: the expiry of the certificate the gateway
// serves reaches /metrics, in the future and after its start of validity.
func TestTLSCertificateExpiryExposed(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, nil)
	read := func(scrape, name string) float64 {
		prefix := name + `{name="localhost"} `
		for _, line := range strings.Split(scrape, "\n") {
			if v, ok := strings.CutPrefix(line, prefix); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				return f
			}
		}
		t.Fatalf("no %s for localhost in the scrape", name)
		return 0
	}
	scrape := gw.Metrics(t)
	expiry := read(scrape, "gateway_tls_certificate_expiry_timestamp_seconds")
	notBefore := read(scrape, "gateway_tls_certificate_not_before_timestamp_seconds")
	if now := float64(time.Now().Unix()); expiry <= now || notBefore >= expiry {
		t.Fatalf("expiry %v, not before %v, now %v", expiry, notBefore, now)
	}
}
