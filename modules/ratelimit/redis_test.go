package ratelimit

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/ulule/limiter/v3/drivers/store/memory"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
	"github.com/lexiscore/gateway/internal/testkit/redistest"
)

// redisSite limits /v1/* per X-User with one policy, burst 3/m unless
// policy says otherwise, in the Redis of RATELIMIT_TEST_REDIS_URL (read at
// provision, as production reads REDIS_URL). The breaker opens after two
// failures and tries again after 300ms, so recovery shows quickly. The store
// timeout is generous: a busy machine must not turn a working Redis into a
// store error (the first call also loads the scripts); TestRedisHungIsBounded
// shortens it.
func redisSite(body, policy, onError string) string {
	if policy == "" {
		policy = "burst 3/m"
	}
	return fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	request_id
	route /v1/* {
		rate_limit {
			key {http.request.header.X-User}
			policy %s
			store {env.RATELIMIT_TEST_REDIS_URL} {
				breaker 2 300ms
			}
			timeout 2s
			%s
		}
		respond %q
	}
	handle_errors {
		problem
	}
}`, policy, onError, body)
}

func startRedis(t *testing.T) *redistest.Server {
	t.Helper()
	srv := redistest.Start(t)
	t.Setenv("RATELIMIT_TEST_REDIS_URL", srv.URL())
	return srv
}

// pooledRedis returns the Redis store in the pool.
func pooledRedis(t *testing.T) *pooledStore {
	t.Helper()
	var found *pooledStore
	stores.Range(func(_, v any) bool {
		if p := v.(*pooledStore); p.client != nil {
			found = p
		}
		return found == nil
	})
	if found == nil {
		t.Fatal("no Redis store in the pool")
	}
	return found
}

// policyOf returns the first policy named in RateLimit-Policy.
func policyOf(r response) string {
	first, _, _ := strings.Cut(r.header.Get("RateLimit-Policy"), ";")
	return strings.Trim(first, `"`)
}

func TestRedisLimitsAndReloadKeepsClient(t *testing.T) {
	srv := startRedis(t)
	in := caddytest.Start(t, "", redisSite("before", "", ""))
	url := in.URL("/v1/scores")
	for i := range 2 {
		if r := get(t, url, "alice"); r.status != 200 || remaining(r, "burst") != 2-i {
			t.Fatalf("request %d: %d, RateLimit %q", i+1, r.status, r.header.Get("RateLimit"))
		}
	}
	if n, err := srv.Client(t).Get(t.Context(), "gateway:ratelimit:burst:id:alice").Int(); err != nil || n != 2 {
		t.Fatalf("Redis counter gateway:ratelimit:burst:id:alice = %d, %v; want 2", n, err)
	}

	before := pooledRedis(t)
	in.Load(t, redisSite("after", "", ""))
	after := pooledRedis(t)
	if before != after {
		t.Fatal("the reload replaced the Redis store: clients and breakers must outlive reloads")
	}
	if err := after.client.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("the kept Redis client no longer works: %v", err)
	}
	if r := get(t, url, "alice"); r.status != 200 || string(r.body) != "after" || remaining(r, "burst") != 0 {
		t.Fatalf("after reload: %d %q, RateLimit %q", r.status, r.body, r.header.Get("RateLimit"))
	}
	problemDoc(t, get(t, url, "alice"), 429, "rate-limited")
	if r := get(t, url, "bob"); r.status != 200 {
		t.Fatalf("bob: %d", r.status)
	}
}

func TestRedisDownAtStartup(t *testing.T) {
	srv := startRedis(t)
	srv.Kill()
	in := caddytest.Start(t, "", redisSite("ok", "", "emergency 10/m"))
	url := in.URL("/v1/scores")
	if r := get(t, url, "alice"); r.status != 200 || policyOf(r) != EmergencyPolicy {
		t.Fatalf("with Redis down: %d, RateLimit-Policy %q; want 200 under the emergency policy", r.status, r.header.Get("RateLimit-Policy"))
	}
	srv.Restart(t)
	testkit.Eventually(t, "Redis to be used once it is up", func() error {
		if r := get(t, url, "alice"); r.status != 200 || policyOf(r) != "burst" {
			return fmt.Errorf("%d, RateLimit-Policy %q", r.status, r.header.Get("RateLimit-Policy"))
		}
		return nil
	})
}

func TestRedisKilledFailsOpenToEmergencyLimit(t *testing.T) {
	srv := startRedis(t)
	in := caddytest.Start(t, "", redisSite("ok", "burst 100/m", "on_store_error fail_open\n\t\t\temergency 3/m"))
	url := in.URL("/v1/scores")
	for range 2 {
		if r := get(t, url, "alice"); r.status != 200 || policyOf(r) != "burst" {
			t.Fatalf("%d, RateLimit-Policy %q", r.status, r.header.Get("RateLimit-Policy"))
		}
	}
	failOpen := decisions.WithLabelValues("burst", decisionFailOpen)
	errs := storeErrors.WithLabelValues("redis")
	beforeFailOpen, beforeErrs := testkit.Value(failOpen), testkit.Value(errs)

	srv.Kill()
	var statuses []int
	for range 6 {
		r := get(t, url, "alice")
		if got, want := r.header.Get("RateLimit-Policy"), `"emergency";q=3;w=60`; got != want {
			t.Fatalf("RateLimit-Policy %q with Redis down, want %q", got, want)
		}
		if r.status == 429 {
			if doc := problemDoc(t, r, 429, "rate-limited"); doc["policy"] != EmergencyPolicy {
				t.Fatalf("refused by %v, want the emergency policy", doc["policy"])
			}
		}
		statuses = append(statuses, r.status)
	}
	if want := []int{200, 200, 200, 429, 429, 429}; !equal(statuses, want) {
		t.Fatalf("statuses %v with Redis down, want %v (emergency limit 3/m)", statuses, want)
	}
	if d := testkit.Value(failOpen) - beforeFailOpen; d != 6 {
		t.Errorf("fail_open decisions +%v, want +6", d)
	}
	if d := testkit.Value(errs) - beforeErrs; d < 2 {
		t.Errorf("store errors +%v, want at least the 2 that open the breaker", d)
	}
	if testkit.Value(breakerState.WithLabelValues("redis", "closed")) != 0 {
		t.Error("breaker state still closed after Redis died")
	}

	srv.Restart(t)
	testkit.Eventually(t, "recovery on the restarted Redis", func() error {
		if r := get(t, url, "alice"); r.status != 200 || policyOf(r) != "burst" {
			return fmt.Errorf("%d, RateLimit-Policy %q", r.status, r.header.Get("RateLimit-Policy"))
		}
		return nil
	})
	if testkit.Value(breakerState.WithLabelValues("redis", "closed")) != 1 {
		t.Error("breaker state not closed after recovery")
	}
}

func TestRedisKilledFailsClosed(t *testing.T) {
	srv := startRedis(t)
	in := caddytest.Start(t, "", redisSite("ok", "burst 100/m", "on_store_error fail_closed"))
	url := in.URL("/v1/scores")
	if r := get(t, url, "alice"); r.status != 200 {
		t.Fatalf("%d", r.status)
	}
	srv.Kill()
	for range 4 {
		r := get(t, url, "alice")
		doc := problemDoc(t, r, 503, "rate-limit-unavailable")
		wait := retryAfter(t, r, 1)
		if doc["retry_after"] != float64(wait) {
			t.Fatalf("problem retry_after %v, Retry-After %d", doc["retry_after"], wait)
		}
		if d, _ := doc["detail"].(string); strings.Contains(d, "127.0.0.1") || strings.Contains(d, "redis") {
			t.Fatalf("problem detail leaks internals: %q", d)
		}
		if r.header.Get("RateLimit-Policy") != `"burst";q=100;w=60` || r.header.Get("RateLimit") != "" {
			t.Fatalf("503 headers: RateLimit-Policy %q, RateLimit %q: want the quota only", r.header.Get("RateLimit-Policy"), r.header.Get("RateLimit"))
		}
	}
	srv.Restart(t)
	testkit.Eventually(t, "recovery on the restarted Redis", func() error {
		if r := get(t, url, "alice"); r.status != 200 {
			return fmt.Errorf("%d %s", r.status, r.body)
		}
		return nil
	})
}

// TestRedisHungIsBounded pauses Redis: connections stay open and nothing
// answers, the worst case for a client. Every request must still finish
// promptly, and Redis must be used again once it resumes.
func TestRedisHungIsBounded(t *testing.T) {
	srv := startRedis(t)
	in := caddytest.Start(t, "", strings.Replace(redisSite("ok", "burst 1000/m", "emergency 1000/m"), "timeout 2s", "timeout 100ms", 1))
	url := in.URL("/v1/scores")
	if r := get(t, url, "alice"); r.status != 200 {
		t.Fatalf("%d", r.status)
	}

	srv.Pause(t)
	const n = 30
	deadline := 5 * time.Second // each request costs at most one 100ms store timeout
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var inTime, ok int
	for i := range n {
		wg.Go(func() {
			r := get(t, url, fmt.Sprintf("user-%d", i%5))
			mu.Lock()
			defer mu.Unlock()
			if time.Since(start) <= deadline {
				inTime++
			}
			if r.status == 200 && policyOf(r) == EmergencyPolicy {
				ok++
			}
		})
	}
	wg.Wait()
	if inTime != n || ok != n {
		t.Fatalf("with Redis hung: %d of %d requests finished within %s, %d answered 200 under the emergency policy", inTime, n, deadline, ok)
	}

	srv.Resume(t)
	testkit.Eventually(t, "recovery after Redis resumed", func() error {
		if r := get(t, url, "alice"); r.status != 200 || policyOf(r) != "burst" {
			return fmt.Errorf("%d, RateLimit-Policy %q", r.status, r.header.Get("RateLimit-Policy"))
		}
		return nil
	})
}

// TestRedisPipelining: with pipelining on, the policies of concurrent
// requests reach Redis in shared pipelines, so Redis reads far fewer times
// from its sockets than it serves requests; with it off, the policies of one
// request still travel together, one read (a round trip) per request, not
// one per policy. Counts exact limits either way.
func TestRedisPipelining(t *testing.T) {
	srv := redistest.Start(t)
	info := srv.Client(t)
	// The limiter's EVALSHA calls, and the reads Redis made from its
	// sockets (each a batch of whatever a client had sent).
	stats := func() (calls, reads int64) {
		t.Helper()
		out, err := info.Info(t.Context(), "stats", "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(out) {
			name, value, _ := strings.Cut(strings.TrimSpace(line), ":")
			switch name {
			case "cmdstat_evalsha":
				fmt.Sscanf(value, "calls=%d,", &calls)
			case "total_reads_processed":
				fmt.Sscan(value, &reads)
			}
		}
		return calls, reads
	}
	const requests = 400
	for _, tc := range []struct {
		name          string
		off           bool
		maxPerRequest float64 // reads per request of 2 policies
		minPerRequest float64
	}{
		{name: "on", maxPerRequest: 0.5},
		{name: "off", off: true, minPerRequest: 0.95, maxPerRequest: 1.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := testRedisStore(t, &StoreConfig{URL: srv.URL(), Prefix: "pipelining-" + tc.name, NoPipelining: tc.off})
			l := New(Config{
				Policies: []Policy{{Name: "burst", Rate: Rate{1000, time.Minute}}, {Name: "sustained", Rate: Rate{1000, time.Hour}}},
				Store:    store, Timeout: 5 * time.Second, Local: memory.NewStore(),
			})
			// Warm the connections and load the scripts outside the count.
			if d := l.Decide(t.Context(), "warm", ""); d.Err != nil {
				t.Fatal(d.Err)
			}
			commands, reads := stats()
			var wg sync.WaitGroup
			var mu sync.Mutex
			var refused, failed int
			for i := range requests {
				wg.Go(func() {
					d := l.Decide(t.Context(), fmt.Sprintf("user-%d", i%4), "")
					mu.Lock()
					defer mu.Unlock()
					if d.Err != nil {
						failed++
					} else if d.Outcome == Denied {
						refused++
					}
				})
			}
			wg.Wait()
			if failed > 0 || refused > 0 {
				t.Fatalf("%d store failures, %d refusals: want every request counted and allowed", failed, refused)
			}
			c, r := stats()
			// The second INFO is one read too.
			c, r = c-commands, r-reads-1
			if c != 2*requests {
				t.Fatalf("Redis ran %d scripts for %d requests of 2 policies", c, requests)
			}
			perRequest := float64(r) / requests
			t.Logf("pipelining %s: %d scripts in %d reads (%.2f per request)", tc.name, c, r, perRequest)
			if perRequest > tc.maxPerRequest {
				t.Errorf("%.2f reads per request: want at most %.2f", perRequest, tc.maxPerRequest)
			}
			if perRequest < tc.minPerRequest {
				t.Errorf("%.2f reads per request: want at least %.2f, one round trip per request", perRequest, tc.minPerRequest)
			}
		})
	}
}

// TestRedisScriptsLost: Redis that lost limiter's scripts (restarted, or
// SCRIPT FLUSH) gets them again and every policy of the request is counted
// exactly once, the peeked one not at all, with pipelining on and off.
func TestRedisScriptsLost(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("no_pipelining=%t", off), func(t *testing.T) {
			store := testRedisStore(t, &StoreConfig{URL: srv.URL(), Prefix: fmt.Sprintf("lost-%t", off), NoPipelining: off})
			l := New(Config{
				Policies: []Policy{
					{Name: "burst", Rate: Rate{10, time.Minute}},
					{Name: "failures", Rate: Rate{10, time.Minute}, CountStatuses: []int{401}},
				},
				Store: store, Timeout: 5 * time.Second, Local: memory.NewStore(),
			})
			for i := range 3 {
				if err := admin.ScriptFlush(t.Context()).Err(); err != nil {
					t.Fatal(err)
				}
				d := l.Decide(t.Context(), "u1", "")
				if d.Err != nil || d.Outcome != Allowed {
					t.Fatalf("request %d after SCRIPT FLUSH: %+v, want allowed with no store error", i+1, d)
				}
				if got, want := d.States[0].Remaining, int64(10-(i+1)); got != want {
					t.Fatalf("request %d: burst remaining %d, want %d: counted once per request", i+1, got, want)
				}
				if got := d.States[1].Remaining; got != 10 {
					t.Fatalf("request %d: failures remaining %d, want 10: a peek counts nothing", i+1, got)
				}
			}
		})
	}
}

// testRedisStore takes the store of cfg from the pool for the test.
func testRedisStore(t *testing.T, cfg *StoreConfig) *Store {
	t.Helper()
	spec, err := cfg.resolve(caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	store, err := acquire(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = stores.Delete(spec.key) })
	return store
}
