package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestIdentity(t *testing.T) {
	long := strings.Repeat("k", maxKeyLen+1)
	cases := []struct {
		name     string
		mode     string
		key      string
		keyOK    bool
		clientIP string
		want     string
		ok       bool
	}{
		{"user", AnonymousDeny, "u1", true, "203.0.113.7", "id:u1", true},
		{"no user, deny", AnonymousDeny, "", false, "203.0.113.7", "", false},
		{"no user, fallback to IPv4", AnonymousFallback, "", false, "203.0.113.7", "ip:203.0.113.7", true},
		{"user wins over fallback", AnonymousFallback, "u1", true, "203.0.113.7", "id:u1", true},
		{"anonymous route ignores the user", AnonymousAlways, "u1", true, "203.0.113.7", "ip:203.0.113.7", true},
		{"IPv6 counted per /64", AnonymousAlways, "", false, "2001:db8:1:2:aaaa::1", "ip:2001:db8:1:2::/64", true},
		{"IPv6 zone dropped", AnonymousAlways, "", false, "fe80::1%eth0", "ip:fe80::/64", true},
		{"IPv4-mapped IPv6 is IPv4", AnonymousAlways, "", false, "::ffff:198.51.100.1", "ip:198.51.100.1", true},
		{"long key hashed", AnonymousDeny, long, true, "", "id:sha256:", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Identity(tc.mode, tc.key, tc.keyOK, tc.clientIP)
			if ok != tc.ok || !strings.HasPrefix(got, tc.want) || (tc.want != "id:sha256:" && got != tc.want) {
				t.Fatalf("Identity = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
			if len(got) > maxKeyLen+10 {
				t.Fatalf("key of %d bytes", len(got))
			}
		})
	}
}

// TestRequestIdentity resolves keys from a request as Caddy prepares it:
// placeholders from authentication or headers, and Caddy's client_ip, never
// the raw X-Forwarded-For.
func TestRequestIdentity(t *testing.T) {
	cases := []struct {
		name      string
		key, mode string
		auth      map[string]string // {http.auth.user.*}
		header    http.Header
		want      string
		ok        bool
	}{
		{name: "authenticated user", key: DefaultKey, mode: AnonymousDeny, auth: map[string]string{"id": "u42"}, want: "id:u42", ok: true},
		{name: "unauthenticated, deny", key: DefaultKey, mode: AnonymousDeny, ok: false},
		{
			name: "unauthenticated, fallback uses client_ip not X-Forwarded-For", key: DefaultKey, mode: AnonymousFallback,
			header: http.Header{"X-Forwarded-For": {"1.2.3.4"}}, want: "ip:192.0.2.10", ok: true,
		},
		{
			name: "composite key", key: "{http.auth.user.tenant}/{http.auth.user.id}", mode: AnonymousDeny,
			auth: map[string]string{"id": "u1", "tenant": "acme"}, want: "id:acme/u1", ok: true,
		},
		{
			name: "composite key with an empty part has no identity", key: "{http.auth.user.tenant}/{http.auth.user.id}",
			mode: AnonymousDeny, auth: map[string]string{"id": "u1"}, ok: false,
		},
		{
			name: "header key", key: "{http.request.header.X-Api-Client}", mode: AnonymousDeny,
			header: http.Header{"X-Api-Client": {"c-7"}}, want: "id:c-7", ok: true,
		},
		{name: "empty header, fallback", key: "{http.request.header.X-Api-Client}", mode: AnonymousFallback, want: "ip:192.0.2.10", ok: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/x", nil)
			r.RemoteAddr = "192.0.2.10:5555"
			for k, vs := range tc.header {
				r.Header[k] = vs
			}
			repl := caddy.NewReplacer()
			r = caddyhttp.PrepareRequest(r, repl, httptest.NewRecorder(), nil)
			// As Caddy's server sets it with trusted_proxies: the peer.
			caddyhttp.SetVar(r.Context(), caddyhttp.ClientIPVarKey, "192.0.2.10")
			for k, v := range tc.auth {
				repl.Set("http.auth.user."+k, v)
			}
			h := &RateLimit{Key: tc.key, Anonymous: tc.mode}
			got, ok := h.identity(r, repl)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("identity = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
