package resilience

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestCaddyfileAdapts(t *testing.T) {
	input := `
:8080 {
	@reads method GET
	resilience @reads read_scores {
		timeout 5s
		attempt_timeout 2s
		retry 4 {
			backoff 50ms 1s
			jitter 0.3
			statuses 503 504
			retry_after_cap 3s
			budget 0.25 5
			max_body 64KiB
		}
		hedge p95 2
		fallback {
			upstream 10.0.0.9:9001
			stale 30m {
				max_entries 500
				max_body 128KiB
				vary Authorization
			}
			static 200 "{}" application/json
		}
		retry_after 3s
		max_failure_body 128KiB
	}
	resilience upload {
		bulkhead 100 1s
		shed_when_degraded
		fallback {
			upstream https://10.0.0.9:9443 {
				lb_policy first
				transport signed {
					key_id gw-1
					secret_env GW_SECRET
				}
			}
		}
	}
	reverse_proxy 127.0.0.1:9001 {
		lb_policy resilient {
			fallback round_robin
		}
		transport resilient {
			breaker {
				failure_ratio 0.6
				min_requests 10
				window 20s
				open_delay 7s
				half_open_probes 4
			}
			degrade_when_all_open
			transport http {
				dial_timeout 2s
			}
		}
	}
}`
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	for _, w := range warnings {
		t.Logf("warning: %s", w.String())
	}
	js := string(cfg)
	// Caddy encodes the adapted config with sorted keys.
	for _, want := range []string{
		`"handler":"resilience","hedge":{"max_hedges":2,"quantile":0.95}`,
		`"retry":{"backoff":50000000,"budget":0.25,"budget_min_concurrency":5,"jitter":0.3,"max_attempts":4,` +
			`"max_backoff":1000000000,"max_body":65536,"retry_after_cap":3000000000,"statuses":[503,504]}`,
		`"fallback":{"stale":{"max_age":1800000000000,"max_body":131072,"max_entries":500,"vary":["Authorization"]},` +
			`"static":{"body":"{}","content_type":"application/json","status":200}}`,
		`"max_failure_body":131072,"retry":`,
		`"retry_after":3000000000,"route":"read_scores",` +
			`"secondary":{"handler":"reverse_proxy","transport":{"breaker":{},"protocol":"resilient"},"upstreams":[{"dial":"10.0.0.9:9001"}]},` +
			`"timeout":5000000000`,
		// The secondary's transport is wrapped in a resilient one; TLS, from
		// the https:// address, reaches the innermost.
		`"bulkhead":{"max_in_flight":100,"max_wait":1000000000},"fallback":{},"handler":"resilience","route":"upload",` +
			`"secondary":{"handler":"reverse_proxy","load_balancing":{"selection_policy":{"policy":"first"}},` +
			`"transport":{"breaker":{},"protocol":"resilient","transport":{"key_id":"gw-1","protocol":"signed","secret_env":"GW_SECRET",` +
			`"transport":{"protocol":"http","tls":{}}}},"upstreams":[{"dial":"10.0.0.9:9443"}]},"shed_when_degraded":true`,
		`"selection_policy":{"fallback":{"policy":"round_robin"},"policy":"resilient"}`,
		`"transport":{"breaker":{"failure_ratio":0.6,"half_open_probes":4,"min_requests":10,"open_delay":7000000000,"window":20000000000},` +
			`"degrade_when_all_open":true,"protocol":"resilient","transport":{"dial_timeout":2000000000,"protocol":"http"}}`,
	} {
		if !strings.Contains(js, want) {
			t.Errorf("adapted config lacks %s\n%s", want, js)
		}
	}
}

func TestResilienceDirectiveOrderedBeforeReverseProxy(t *testing.T) {
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(":8080 {\n\treverse_proxy 127.0.0.1:9001\n\tresilience r\n}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	js := string(cfg)
	if strings.Index(js, `"handler":"resilience"`) > strings.Index(js, `"handler":"reverse_proxy"`) {
		t.Fatalf("resilience runs after reverse_proxy:\n%s", js)
	}
}

func TestCaddyfileErrors(t *testing.T) {
	cases := []struct {
		name, input, want string
	}{
		{"route name required", `resilience`, "route name is required"},
		{"unknown option", "resilience r {\n\tretries 3\n}", `unknown subdirective "retries"`},
		{"bad duration", "resilience r {\n\ttimeout soon\n}", `bad duration "soon"`},
		{"empty bulkhead", "resilience r {\n\tbulkhead 0\n}", "must be at least 1"},
		{"bad quantile", "resilience r {\n\thedge p150\n}", "p1..p99"},
		{"unknown retry option", "resilience r {\n\tretry {\n\t\tforever\n\t}\n}", `unknown retry option "forever"`},
		{"static needs a body", "resilience r {\n\tfallback {\n\t\tstatic 200\n\t}\n}", "wrong argument count"},
		{"bad max_failure_body", "resilience r {\n\tmax_failure_body lots\n}", `max_failure_body "lots"`},
		{"upstream needs an address", "resilience r {\n\tfallback {\n\t\tupstream\n\t}\n}", "needs at least one address"},
		{"one upstream fallback", "resilience r {\n\tfallback {\n\t\tupstream a:1\n\t\tupstream b:1\n\t}\n}", "only one fallback upstream"},
		{"upstream block is reverse_proxy's", "resilience r {\n\tfallback {\n\t\tupstream a:1 {\n\t\t\tretries 3\n\t\t}\n\t}\n}", "unrecognized subdirective retries"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	var tr Transport
	err := tr.UnmarshalCaddyfile(caddyfile.NewTestDispenser("resilient {\n\tbreaker {\n\t\tmin_requests 0\n\t}\n}"))
	if err == nil || !strings.Contains(err.Error(), "min_requests 0 must be at least 1") {
		t.Fatalf("transport: %v", err)
	}
}

func TestValidateNamesTheBadSetting(t *testing.T) {
	cases := []struct {
		name string
		h    Handler
		want string
	}{
		{"two limiters", Handler{Route: "r", Bulkhead: &BulkheadConfig{MaxInFlight: 1}, AdaptiveLimit: &AdaptiveLimitConfig{Min: 1, Max: 2, Initial: 1}}, "bulkhead or adaptive_limit"},
		{"budget above 1", Handler{Route: "r", Retry: &RetryConfig{MaxAttempts: 2, Budget: 2}}, "retry budget 2"},
		{"informational retry status", Handler{Route: "r", Retry: &RetryConfig{MaxAttempts: 2, Budget: 0.2, Statuses: []int{100}}}, "retry status 100"},
		{"adaptive bounds", Handler{Route: "r", AdaptiveLimit: &AdaptiveLimitConfig{Min: 5, Max: 2, Initial: 3}}, "min <= initial <= max"},
		{"negative max_failure_body", Handler{Route: "r", MaxFailureBody: -1}, "max_failure_body -1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "resilience r") {
				t.Fatalf("Validate() = %v, want an error naming route r and %q", err, tc.want)
			}
		})
	}
	if err := (&BreakerConfig{FailureRatio: 1.5}).validate(); err == nil || !strings.Contains(err.Error(), "failure_ratio 1.5") {
		t.Fatalf("breaker: %v", err)
	}
}
