package ratelimit

import (
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
)

// These tests share the process-global Caddy of internal/testkit/caddytest: none
// of them may run in parallel.

const memorySite = `
http://127.0.0.1:{http_port} {
	request_id
	handle /healthz {
		respond "ok"
	}
	handle /v1/* {
		rate_limit {
			key {http.request.header.X-User}
			tier {http.request.header.X-Tier}
			policy burst 3/m {
				tier pro 5
			}
			policy sustained 10/h
		}
		respond "BODY"
	}
	handle_errors {
		header X-Limited-By {http.rate_limit.exceeded.name}
		problem
	}
}`

func TestLimitsHeadersAndProblem(t *testing.T) {
	in := caddytest.Start(t, "", strings.Replace(memorySite, "BODY", "ok", 1))
	url := in.URL("/v1/scores")

	for range 10 {
		r := get(t, in.URL("/healthz"), "")
		if r.status != 200 || r.header.Get("RateLimit") != "" || r.header.Get("RateLimit-Policy") != "" {
			t.Fatalf("/healthz: %d, RateLimit %q: health must not be limited", r.status, r.header.Get("RateLimit"))
		}
	}

	for i := range 3 {
		r := get(t, url, "alice")
		if r.status != 200 {
			t.Fatalf("request %d: status %d: %s", i+1, r.status, r.body)
		}
		if got, want := r.header.Get("RateLimit-Policy"), `"burst";q=3;w=60, "sustained";q=10;w=3600`; got != want {
			t.Fatalf("RateLimit-Policy %q, want %q", got, want)
		}
		if got := remaining(r, "burst"); got != 2-i {
			t.Fatalf("request %d: burst remaining %d, want %d (RateLimit %q)", i+1, got, 2-i, r.header.Get("RateLimit"))
		}
		if r.header.Get("X-RateLimit-Limit") != "3" || r.header.Get("X-RateLimit-Remaining") != strconv.Itoa(2-i) {
			t.Fatalf("X-RateLimit-* %v", r.header)
		}
	}

	r := get(t, url, "alice")
	doc := problemDoc(t, r, 429, "rate-limited")
	wait := retryAfter(t, r, 60)
	if doc["policy"] != "burst" || doc["retry_after"] != float64(wait) {
		t.Fatalf("problem %v: want policy burst, retry_after %d", doc, wait)
	}
	if remaining(r, "burst") != 0 || r.header.Get("X-RateLimit-Remaining") != "0" || r.header.Get("RateLimit-Policy") == "" {
		t.Fatalf("429 without its rate-limit headers: %v", r.header)
	}
	if got := r.header.Get("X-Limited-By"); got != "burst" {
		t.Fatalf("{%s} = %q in handle_errors, want burst", ExceededPlaceholder, got)
	}

	if r := get(t, url, "bob"); r.status != 200 || remaining(r, "burst") != 2 {
		t.Fatalf("bob: %d, RateLimit %q: alice's use must not touch bob", r.status, r.header.Get("RateLimit"))
	}

	for i := range 5 {
		if r := get(t, url, "carol", "X-Tier", "pro"); r.status != 200 {
			t.Fatalf("pro request %d: %d, want 200 (the pro burst is 5)", i+1, r.status)
		}
	}
	problemDoc(t, get(t, url, "carol", "X-Tier", "pro"), 429, "rate-limited")

	problemDoc(t, get(t, url, ""), 403, "identity-required")
}

func TestMemoryCountersSurviveReload(t *testing.T) {
	in := caddytest.Start(t, "", strings.Replace(memorySite, "BODY", "before", 1))
	url := in.URL("/v1/scores")
	for range 2 {
		if r := get(t, url, "alice"); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	}
	in.Load(t, strings.Replace(memorySite, "BODY", "after", 1))
	r := get(t, url, "alice")
	if r.status != 200 || string(r.body) != "after" || remaining(r, "burst") != 0 {
		t.Fatalf("after reload: %d %q, RateLimit %q: want the new config, counting on", r.status, r.body, r.header.Get("RateLimit"))
	}
	problemDoc(t, get(t, url, "alice"), 429, "rate-limited")
}

func TestAnonymousRoutesUseTrustedClientIP(t *testing.T) {
	site := `
http://127.0.0.1:{http_port} {
	request_id
	route /open/* {
		rate_limit {
			anonymous always
			policy per_ip 2/m
		}
		respond "ok"
	}
	route /mixed/* {
		rate_limit {
			key {http.request.header.X-User}
			anonymous fallback
			policy mixed 1/m
		}
		respond "ok"
	}
	handle_errors {
		problem
	}
}`
	t.Run("untrusted peer: X-Forwarded-For is ignored", func(t *testing.T) {
		in := caddytest.Start(t, "servers {\n\t\ttrusted_proxies static 10.0.0.0/8\n\t\tclient_ip_headers X-Forwarded-For\n\t}", site)
		url := in.URL("/open/x")
		for i, xff := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
			r := get(t, url, "someone", "X-Forwarded-For", xff)
			if i < 2 && r.status != 200 {
				t.Fatalf("request %d: %d", i+1, r.status)
			}
			if i == 2 {
				problemDoc(t, r, 429, "rate-limited")
			}
		}
		// The user header does not escape an anonymous route's per-IP count.
		problemDoc(t, get(t, url, "someone-else"), 429, "rate-limited")

		// fallback: users are counted by ID, anonymous requests by address.
		mixed := in.URL("/mixed/x")
		for _, user := range []string{"u1", "u2", ""} {
			if r := get(t, mixed, user); r.status != 200 {
				t.Fatalf("mixed route, user %q: %d", user, r.status)
			}
		}
		problemDoc(t, get(t, mixed, "", "X-Forwarded-For", "192.0.2.99"), 429, "rate-limited")
	})
	t.Run("trusted proxy: the right-most untrusted address counts", func(t *testing.T) {
		in := caddytest.Start(t, "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t\ttrusted_proxies_strict\n\t\tclient_ip_headers X-Forwarded-For\n\t}", site)
		url := in.URL("/open/x")
		for _, xff := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.1"} {
			if r := get(t, url, "", "X-Forwarded-For", xff); r.status != 200 {
				t.Fatalf("X-Forwarded-For %s: %d", xff, r.status)
			}
		}
		// A spoofed left-most entry does not give a fresh count.
		problemDoc(t, get(t, url, "", "X-Forwarded-For", "203.0.113.50, 192.0.2.1"), 429, "rate-limited")
	})
}

// TestMetricsSurviveReload registers into two registries in a row, as two
// config loads do, and checks the second sees the first's counts.
func TestMetricsSurviveReload(t *testing.T) {
	before := testkit.Value(decisions.WithLabelValues("reload-metrics", decisionAllowed))
	var regs []*prometheus.Registry
	for range 2 {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
		defer cancel()
		h := &RateLimit{Policies: []PolicyConfig{{Name: "reload-metrics", Rate: "100/m"}}}
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		defer h.Cleanup()
		h.limiter.Decide(t.Context(), "id:u1", "")
		regs = append(regs, ctx.GetMetricsRegistry())
	}
	v, ok := testkit.Gathered(t, regs[1], "gateway_ratelimit_decisions_total", map[string]string{"policy": "reload-metrics", "decision": "allowed"})
	if !ok {
		t.Fatal("gateway_ratelimit_decisions_total{policy=reload-metrics} not in the second registry")
	}
	if v -= before; v != 2 {
		t.Fatalf("allowed decisions +%v in the second registry, want +2", v)
	}
}

// TestFailuresCountedBeforeTheyCost: a count_status policy counts only the
// requests refused with 401 further down the route, and refuses a client at
// its limit before the route runs, credentials or not; other clients are
// untouched. Refusals beyond log_denied are kept out of the access log.
func TestFailuresCountedBeforeTheyCost(t *testing.T) {
	site := `
http://127.0.0.1:{http_port} {
	request_id
	route {
		rate_limit {
			anonymous always
			policy auth_failures 2/m {
				count_status 401
			}
			log_denied 1/m
		}
		@anonymous not header X-User *
		error @anonymous 401
		respond "ok"
	}
	handle_errors {
		problem
	}
}`
	in := caddytest.Start(t, "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t\tclient_ip_headers X-Forwarded-For\n\t}", site)
	url := in.URL("/v1/x")
	const flood, other = "192.0.2.7", "192.0.2.8"
	for i := range 5 {
		if r := get(t, url, "alice", "X-Forwarded-For", flood); r.status != 200 {
			t.Fatalf("authenticated request %d: %d: successes must not count", i+1, r.status)
		}
	}
	for i := range 2 {
		if r := get(t, url, "", "X-Forwarded-For", flood); r.status != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, r.status)
		}
	}
	unlogged := testkit.Value(denialsUnlogged)
	for _, user := range []string{"", "alice"} {
		r := get(t, url, user, "X-Forwarded-For", flood)
		if doc := problemDoc(t, r, 429, "rate-limited"); doc["policy"] != "auth_failures" {
			t.Fatalf("user %q at the limit: problem %v", user, doc)
		}
		retryAfter(t, r, 60)
	}
	if got := testkit.Value(denialsUnlogged) - unlogged; got != 1 {
		t.Fatalf("%v refusals kept out of the access log, want 1 (log_denied 1/m)", got)
	}
	if r := get(t, url, "", "X-Forwarded-For", other); r.status != 401 {
		t.Fatalf("another client: %d, want 401", r.status)
	}
}
