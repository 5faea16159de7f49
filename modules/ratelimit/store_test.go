package ratelimit

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func TestStoreResolve(t *testing.T) {
	t.Setenv("RL_TEST_URL", "rediss://gw:from-url@redis.example:6380/3")
	t.Setenv("RL_TEST_PASSWORD", "from-env")
	t.Setenv("RL_TEST_ADDRS", "n2:6379, n3:6379")
	t.Setenv("RL_TEST_EMPTY", "")
	cases := []struct {
		name     string
		cfg      *StoreConfig
		memory   bool
		addrs    string
		password string
		db       int
		tls      bool
		master   string
	}{
		{name: "no store", cfg: nil, memory: true},
		{name: "empty URL", cfg: &StoreConfig{URL: "{env.RL_TEST_EMPTY}", Addrs: []string{"{env.RL_TEST_EMPTY}"}}, memory: true},
		{name: "memory", cfg: &StoreConfig{URL: "memory"}, memory: true},
		{
			name: "URL from the environment, TLS, password and db in it", cfg: &StoreConfig{URL: "{env.RL_TEST_URL}"},
			addrs: "redis.example:6380", password: "from-url", db: 3, tls: true,
		},
		{
			name: "password from its own setting when the URL has none", cfg: &StoreConfig{URL: "redis://r:6379", Password: "{env.RL_TEST_PASSWORD}"},
			addrs: "r:6379", password: "from-env",
		},
		{
			name: "cluster: the URL's host and more addresses", cfg: &StoreConfig{URL: "redis://r:6379", Addrs: []string{"{env.RL_TEST_ADDRS}"}, DB: 1},
			addrs: "r:6379 n2:6379 n3:6379", db: 1,
		},
		{
			name: "sentinel: addresses and a master, no URL", cfg: &StoreConfig{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "main"},
			addrs: "s1:26379 s2:26379", master: "main",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := tc.cfg.resolve(caddy.NewReplacer())
			if err != nil {
				t.Fatal(err)
			}
			if tc.memory {
				if spec.key != memoryKey || spec.redis != nil {
					t.Fatalf("spec %+v: want the memory store", spec)
				}
				return
			}
			o := spec.redis
			if o == nil {
				t.Fatalf("spec %+v: want Redis", spec)
			}
			if got := strings.Join(o.Addrs, " "); got != tc.addrs || o.Password != tc.password || o.DB != tc.db ||
				(o.TLSConfig != nil) != tc.tls || o.MasterName != tc.master {
				t.Fatalf("options: addrs %q password %q db %d tls %v master %q", got, o.Password, o.DB, o.TLSConfig != nil, o.MasterName)
			}
			if !o.ContextTimeoutEnabled {
				t.Fatal("context deadlines are not applied to Redis sockets")
			}
			if tc.password != "" && strings.Contains(spec.key, tc.password) {
				t.Fatalf("pool key %q contains the password", spec.key)
			}
			if spec.prefix != DefaultStorePrefix || spec.failures != DefaultBreakerFailures || spec.delay != DefaultBreakerDelay || !spec.pipeline {
				t.Fatalf("defaults: prefix %q breaker %d/%s pipeline %t", spec.prefix, spec.failures, spec.delay, spec.pipeline)
			}
		})
	}
}

// TestStorePoolKey: configs that resolve alike share a store; any
// difference that changes the client, including the password, does not.
func TestStorePoolKey(t *testing.T) {
	key := func(c *StoreConfig) string {
		t.Helper()
		spec, err := c.resolve(caddy.NewReplacer())
		if err != nil {
			t.Fatal(err)
		}
		return spec.key
	}
	base := key(&StoreConfig{URL: "redis://:a@r:6379"})
	if key(&StoreConfig{URL: "redis://:a@r:6379"}) != base {
		t.Fatal("identical configs got different stores")
	}
	for _, c := range []*StoreConfig{
		{URL: "redis://:b@r:6379"},
		{URL: "redis://:a@r:6379/1"},
		{URL: "redis://:a@r:6379?pool_size=3"},
		{URL: "redis://:a@r:6379", Prefix: "other"},
		{URL: "redis://:a@r:6379", BreakerFailures: 9},
		{URL: "redis://:a@r:6379", NoPipelining: true},
	} {
		if key(c) == base {
			t.Errorf("%+v shares the store of redis://:a@r:6379", c)
		}
	}
}
