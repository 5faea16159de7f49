package ratelimit

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/lexiscore/gateway/internal/testkit/caddytest"
)

// handlers returns the handler objects of the adapted config, in order.
func handlers(t *testing.T, cfg []byte) []map[string]any {
	t.Helper()
	var doc any
	if err := json.Unmarshal(cfg, &doc); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["handler"]; ok {
				out = append(out, v)
			}
			for _, k := range []string{"apps", "http", "servers", "srv0", "routes", "handle"} {
				if c, ok := v[k]; ok {
					walk(c)
				}
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)
	return out
}

func TestCaddyfileAdapts(t *testing.T) {
	cfg, err := caddytest.Adapt(`:8080 {
	rate_limit {
		key {http.auth.user.tenant}
		anonymous fallback
		tier {http.request.header.X-Tier}
		policy burst 10/s {
			tier pro 50
			tier enterprise 200/s
		}
		policy sustained 100/m
		policy failures 5/m {
			count_status 401 403
		}
		store {env.REDIS_URL} {
			addrs {env.REDIS_ADDRS} redis-2:6379
			master mymaster
			username gw
			password {env.RL_PASSWORD}
			sentinel_password {env.RL_SENTINEL_PASSWORD}
			db 2
			prefix lexi:rl
			breaker 3 2s
			pipelining off
		}
		timeout 30ms
		on_store_error fail_open
		emergency 5/s
		log_denied 2/s
	}
	respond ok
}`)
	if err != nil {
		t.Fatal(err)
	}
	hs := handlers(t, cfg)
	if len(hs) == 0 || hs[0]["handler"] != "rate_limit" {
		t.Fatalf("handlers %v: want rate_limit first", hs)
	}
	raw, _ := json.Marshal(hs[0])
	var got RateLimit
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want := RateLimit{
		Key: "{http.auth.user.tenant}", Anonymous: "fallback", Tier: "{http.request.header.X-Tier}",
		Policies: []PolicyConfig{
			{Name: "burst", Rate: "10/s", Tiers: map[string]int64{"pro": 50, "enterprise": 200}},
			{Name: "sustained", Rate: "100/m"},
			{Name: "failures", Rate: "5/m", CountStatuses: []int{401, 403}},
		},
		Store: &StoreConfig{
			URL: "{env.REDIS_URL}", Addrs: []string{"{env.REDIS_ADDRS}", "redis-2:6379"}, MasterName: "mymaster",
			Username: "gw", Password: "{env.RL_PASSWORD}", SentinelPassword: "{env.RL_SENTINEL_PASSWORD}",
			DB: 2, Prefix: "lexi:rl", BreakerFailures: 3, BreakerDelay: caddy.Duration(2e9), NoPipelining: true,
		},
		Timeout: caddy.Duration(30e6), OnStoreError: "fail_open", Emergency: "5/s", LogDenied: "2/s",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("adapted\n%+v\nwant\n%+v", got, want)
	}
}

// TestCaddyfileOrder: rate_limit runs after authentication (the user ID is
// its key) and before the handlers that answer.
func TestCaddyfileOrder(t *testing.T) {
	cfg, err := caddytest.Adapt(`:8080 {
	reverse_proxy 127.0.0.1:9
	respond /x "x"
	encode gzip
	rate_limit {
		policy p 1/s
	}
	forward_auth 127.0.0.1:9 {
		uri /auth
	}
	basic_auth {
		u $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, h := range handlers(t, cfg) {
		order = append(order, h["handler"].(string))
	}
	// forward_auth becomes a reverse_proxy handler, before rate_limit.
	want := "authentication reverse_proxy rate_limit encode static_response reverse_proxy"
	if got := strings.Join(order, " "); got != want {
		t.Fatalf("handler order %q, want %q: rate_limit after basic_auth and forward_auth, before encode, respond, reverse_proxy", got, want)
	}
}

func TestCaddyfileErrors(t *testing.T) {
	cases := []struct {
		name, block, want string
	}{
		{"bad rate", "policy burst 10/fortnight", `rate "10/fortnight"`},
		{"sub-second window", "policy burst 10/500ms", "whole number of seconds"},
		{"bad name", "policy Burst! 10/s", `policy name "Burst!"`},
		{"reserved name", "policy emergency 10/s", "reserved"},
		{"duplicate policy", "policy a 1/s\n\t\tpolicy a 2/s", `policy "a" is defined twice`},
		{"tier window differs", "policy a 1/s {\n\t\t\ttier pro 5/m\n\t\t}", `must have the policy's window`},
		{"tier not a number", "policy a 1/s {\n\t\t\ttier pro lots\n\t\t}", `"lots" is neither`},
		{"bad anonymous", "policy a 1/s\n\t\tanonymous maybe", `anonymous "maybe"`},
		{"bad fail mode", "policy a 1/s\n\t\ton_store_error shrug", `on_store_error "shrug"`},
		{"bad timeout", "policy a 1/s\n\t\ttimeout soon", `timeout: bad duration "soon"`},
		{"zero timeout", "policy a 1/s\n\t\ttimeout 0", `timeout "0": want a positive duration`},
		{"two timeouts", "policy a 1/s\n\t\ttimeout 1s 2s", "wrong argument count"},
		{"bad db", "policy a 1/s\n\t\tstore {\n\t\t\tdb -1\n\t\t}", `db "-1"`},
		{"bad breaker", "policy a 1/s\n\t\tstore {\n\t\t\tbreaker 0 1s\n\t\t}", "breaker failures"},
		{"zero breaker delay", "policy a 1/s\n\t\tstore {\n\t\t\tbreaker 3 0s\n\t\t}", `breaker delay "0s"`},
		{"breaker without delay", "policy a 1/s\n\t\tstore {\n\t\t\tbreaker 3\n\t\t}", "wrong argument count"},
		{"unknown subdirective", "policy a 1/s\n\t\tburst 5", `unknown subdirective "burst"`},
		{"unknown store subdirective", "policy a 1/s\n\t\tstore {\n\t\t\tcluster yes\n\t\t}", `unknown subdirective "cluster"`},
		{"bad pipelining", "policy a 1/s\n\t\tstore {\n\t\t\tpipelining maybe\n\t\t}", `pipelining "maybe": want on or off`},
		{"bad count_status", "policy a 1/s {\n\t\t\tcount_status 4xx\n\t\t}", `count_status "4xx"`},
		{"count_status out of range", "policy a 1/s {\n\t\t\tcount_status 999\n\t\t}", `count_status "999"`},
		{"bad log_denied", "policy a 1/s\n\t\tlog_denied often", `log_denied "often"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := caddytest.Adapt(":8080 {\n\trate_limit {\n\t\t" + tc.block + "\n\t}\n}\n")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Caddyfile:") {
				t.Fatalf("error %v: want one naming the file and line and containing %q", err, tc.want)
			}
		})
	}
}

// TestProvisionErrors covers JSON configs, which skip the Caddyfile checks.
func TestProvisionErrors(t *testing.T) {
	cases := []struct {
		name string
		h    RateLimit
		want string
	}{
		{"no policy", RateLimit{}, "at least one policy"},
		{"bad rate", RateLimit{Policies: []PolicyConfig{{Name: "a", Rate: "ten"}}}, `policy "a": rate "ten"`},
		{"bad tier limit", RateLimit{Policies: []PolicyConfig{{Name: "a", Rate: "1/s", Tiers: map[string]int64{"pro": 0}}}}, `tier "pro"`},
		{"bad emergency", RateLimit{Policies: []PolicyConfig{{Name: "a", Rate: "1/s"}}, Emergency: "x"}, "emergency"},
		{"bad count status", RateLimit{Policies: []PolicyConfig{{Name: "a", Rate: "1/s", CountStatuses: []int{42}}}}, "count_status 42"},
		{"bad log_denied", RateLimit{Policies: []PolicyConfig{{Name: "a", Rate: "1/s"}}, LogDenied: "x"}, "log_denied"},
		{"bad store scheme", RateLimit{Policies: []PolicyConfig{{Name: "a", Rate: "1/s"}}, Store: &StoreConfig{URL: "http://u:hunter2@h"}}, "scheme must be redis"},
		{"store URL password not echoed", RateLimit{Policies: []PolicyConfig{{Name: "a", Rate: "1/s"}}, Store: &StoreConfig{URL: "redis://u:hunter2@h:port/x"}}, "store url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
			defer cancel()
			err := tc.h.Provision(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "rate_limit: ") {
				t.Fatalf("Provision error %v: want one naming rate_limit and %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks the password: %v", err)
			}
			if err := tc.h.Cleanup(); err != nil {
				t.Fatal(err)
			}
		})
	}
	bad := RateLimit{Policies: []PolicyConfig{{Name: "a", Rate: "1/s"}}, OnStoreError: FailClosed, Emergency: "1/s"}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	if err := bad.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer bad.Cleanup()
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "applies only with on_store_error fail_open") {
		t.Fatalf("Validate: %v", err)
	}
}
