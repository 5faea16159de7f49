package identity

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/golang-jwt/jwt/v5"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
)

// cacheCounts reads gateway_auth_token_cache_total. Tests that use a cache
// do not run in parallel, so a difference of two readings is their own.
func cacheCounts(t testing.TB) (hits, misses float64) {
	t.Helper()
	return testkit.Value(tokenCacheHits), testkit.Value(tokenCacheMisses)
}

// cachedTestVerifier is newTestVerifier with a cache and the clock now.
func cachedTestVerifier(t testing.TB, size int, ttl time.Duration, now func() time.Time) (*Verifier, *TokenCache) {
	t.Helper()
	c, err := NewTokenCache(size, ttl)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testVerifierConfig(t)
	cfg.Cache, cfg.Now = c, now
	return NewVerifier(cfg), c
}

func TestTokenCacheHitIsTheUncachedOutcome(t *testing.T) {
	k := keys(t)
	uncached := newTestVerifier(t)
	cached, _ := cachedTestVerifier(t, 100, time.Minute, fixedClock)
	cases := map[string]string{
		"HS256 default key": sign(t, jwt.SigningMethodHS256, testSecret, "", claims(nil)),
		"HS512 by kid":      sign(t, jwt.SigningMethodHS512, []byte("new-0123456789abcdefghijklmnopqrstuv"), "hmac-2026", claims(nil)),
		"RS256":             sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", claims(nil)),
		"ES256":             sign(t, jwt.SigningMethodES256, k.ec, "ec-1", claims(nil)),
		"EdDSA":             sign(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claims(nil)),
		"no tier or tenant": sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"tier": nil, "tenant": nil})),
	}
	for name, token := range cases {
		t.Run(name, func(t *testing.T) {
			want := uncached.Verify(context.Background(), token)
			if want.Result != ResultSuccess {
				t.Fatalf("uncached: %q (%v)", want.Result, want.Err)
			}
			hits, misses := cacheCounts(t)
			first := cached.Verify(context.Background(), token)
			second := cached.Verify(context.Background(), token)
			h, m := cacheCounts(t)
			if h-hits != 1 || m-misses != 1 {
				t.Fatalf("%v hits and %v misses, want 1 and 1", h-hits, m-misses)
			}
			for i, got := range []Outcome{first, second} {
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("call %d: %+v, want the uncached %+v", i+1, got, want)
				}
			}
		})
	}
}

// TestTokenCacheFollowsTheClock moves the clock (also backwards, as NTP may)
// and checks that at every step the cached verifier answers as an uncached
// one does at the same time, and whether that answer came from the cache.
func TestTokenCacheFollowsTheClock(t *testing.T) {
	type step struct {
		at   time.Duration // since testNow
		want Result
		hit  bool
	}
	cases := []struct {
		name   string
		edits  map[string]any
		leeway time.Duration
		ttl    time.Duration
		steps  []step
	}{
		{"refused at exp+leeway", map[string]any{"exp": testNow.Add(10 * time.Minute).Unix()}, 30 * time.Second, time.Hour, []step{
			{0, ResultSuccess, false},
			{10*time.Minute + 30*time.Second - time.Nanosecond, ResultSuccess, true},
			{10*time.Minute + 30*time.Second, ResultExpired, false},
			{10*time.Minute + 30*time.Second, ResultExpired, false},
		}},
		{"refused at exp without leeway", map[string]any{"exp": testNow.Add(time.Minute).Unix()}, 0, time.Hour, []step{
			{0, ResultSuccess, false},
			{time.Minute - time.Nanosecond, ResultSuccess, true},
			{time.Minute, ResultExpired, false},
		}},
		{"an entry lives at most the TTL", nil, 30 * time.Second, time.Minute, []step{
			{0, ResultSuccess, false},
			{time.Minute - time.Nanosecond, ResultSuccess, true},
			{time.Minute, ResultSuccess, false},
			{2*time.Minute - time.Nanosecond, ResultSuccess, true},
			{2 * time.Minute, ResultSuccess, false},
		}},
		{"nbf-leeway after the clock steps back", map[string]any{"nbf": testNow.Add(10 * time.Second).Unix()}, 30 * time.Second, time.Hour, []step{
			{0, ResultSuccess, false},
			{-20 * time.Second, ResultSuccess, true},
			{-20*time.Second - time.Nanosecond, ResultNotYetValid, false},
			{0, ResultSuccess, false},
		}},
		{"iat-leeway after the clock steps back", map[string]any{"iat": testNow.Add(10 * time.Second).Unix(), "nbf": nil}, 30 * time.Second, time.Hour, []step{
			{0, ResultSuccess, false},
			{-20 * time.Second, ResultSuccess, true},
			{-21 * time.Second, ResultIssuedInFuture, false},
		}},
		{"without nbf and iat, exp and max_lifetime bound it", map[string]any{"iat": nil, "nbf": nil}, 30 * time.Second, time.Hour, []step{
			{0, ResultSuccess, false},
			{-23*time.Hour - 30*time.Second, ResultSuccess, true},
			{-23*time.Hour - 30*time.Second - time.Nanosecond, ResultLifetimeTooLong, false},
		}},
		{"a token that becomes valid later is cached from then", map[string]any{"nbf": testNow.Add(5 * time.Minute).Unix()}, 30 * time.Second, time.Hour, []step{
			{0, ResultNotYetValid, false},
			{4*time.Minute + 30*time.Second, ResultSuccess, false},
			{4*time.Minute + 31*time.Second, ResultSuccess, true},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var at time.Duration
			clock := func() time.Time { return testNow.Add(at) }
			cfg := testVerifierConfig(t)
			cfg.Leeway, cfg.Now = tc.leeway, clock
			uncached := NewVerifier(cfg)
			cfg.Cache, _ = NewTokenCache(10, tc.ttl)
			cached := NewVerifier(cfg)
			token := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(tc.edits))
			for _, s := range tc.steps {
				at = s.at
				want := uncached.Verify(context.Background(), token)
				hits, _ := cacheCounts(t)
				got := cached.Verify(context.Background(), token)
				h, _ := cacheCounts(t)
				if got.Result != s.want || want.Result != s.want || (h-hits == 1) != s.hit {
					t.Fatalf("at %s: %q (hit: %v), uncached %q; want %q (hit: %v)", s.at, got.Result, h-hits == 1, want.Result, s.want, s.hit)
				}
				if got.Result == ResultSuccess && !reflect.DeepEqual(got, want) {
					t.Fatalf("at %s: %+v, want the uncached %+v", s.at, got, want)
				}
			}
		})
	}
}

func TestTokenCacheNeverRemembersRefusals(t *testing.T) {
	k := keys(t)
	v, c := cachedTestVerifier(t, 100, time.Hour, fixedClock)
	hs := func(edits map[string]any) string {
		return sign(t, jwt.SigningMethodHS256, testSecret, "", claims(edits))
	}
	cases := []struct {
		name  string
		token string
		want  Result
	}{
		{"bad signature", sign(t, jwt.SigningMethodHS256, []byte("zz-0123456789abcdefghijklmnopqrstuv"), "", claims(nil)), ResultBadSignature},
		{"expired", hs(map[string]any{"exp": testNow.Add(-time.Hour).Unix()}), ResultExpired},
		{"not yet valid", hs(map[string]any{"nbf": testNow.Add(time.Hour).Unix()}), ResultNotYetValid},
		{"wrong audience", hs(map[string]any{"aud": "someone-else"}), ResultWrongAudience},
		{"no sub", hs(map[string]any{"sub": nil}), ResultInvalidClaims},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", claims(nil)), ResultAlgNotAllowed},
		{"unknown kid", sign(t, jwt.SigningMethodRS256, k.rsa, "nobody", claims(nil)), ResultUnknownKey},
		{"malformed", "a.b.c", ResultMalformed},
		{"oversized", hs(map[string]any{"pad": strings.Repeat("x", DefaultMaxTokenBytes)}), ResultOversized},
		{"empty", "", ResultMissing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hits, _ := cacheCounts(t)
			for i := range 3 {
				if out := v.Verify(context.Background(), tc.token); out.Result != tc.want {
					t.Fatalf("call %d: %q, want %q", i+1, out.Result, tc.want)
				}
			}
			if h, _ := cacheCounts(t); h != hits {
				t.Fatalf("%v cache hits for a refused token", h-hits)
			}
			if c.entries.Contains(tc.token) || c.entries.Len() != 0 {
				t.Fatalf("the cache holds %d entries after refusals", c.entries.Len())
			}
		})
	}
}

func TestTokenCacheMetadataIsTheCallers(t *testing.T) {
	v, _ := cachedTestVerifier(t, 10, time.Minute, fixedClock)
	token := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(nil))
	want := map[string]string{"provider": "jwt", "tier": "pro", "tenant": "acme"}
	for i := range 3 {
		out := v.Verify(context.Background(), token)
		if !reflect.DeepEqual(out.User.Metadata, want) {
			t.Fatalf("call %d: metadata %v, want %v", i+1, out.User.Metadata, want)
		}
		// What a careless caller could do: it must not reach the next one.
		out.User.Metadata["tier"] = "enterprise"
		delete(out.User.Metadata, "tenant")
	}
}

// keyfuncDuring is a JWKS that runs during before handing out key, as a
// refresh that lands while a token is being checked would.
type keyfuncDuring struct {
	unusedKeyfunc // the methods Verify does not call
	key           any
	during        func()
}

// unusedKeyfunc names the embedded interface, whose own name would clash
// with its Keyfunc method.
type unusedKeyfunc = keyfunc.Keyfunc

func (k keyfuncDuring) KeyfuncCtx(context.Context) jwt.Keyfunc {
	return func(*jwt.Token) (any, error) {
		k.during()
		return k.key, nil
	}
}

// TestTokenCacheVerificationRacingAPurge pins the generation check: a token
// checked with keys that a concurrent JWKS refresh replaced is not served
// from the cache afterwards, though the verification had started before the
// purge and was stored after it.
func TestTokenCacheVerificationRacingAPurge(t *testing.T) {
	k := keys(t)
	token := sign(t, jwt.SigningMethodEdDSA, k.ed, "jwks-1", claims(nil))
	for _, tc := range []struct {
		name     string
		purge    bool
		wantHits float64
	}{{"no refresh", false, 1}, {"a refresh during the check", true, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewTokenCache(10, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			jwks := keyfuncDuring{key: k.ed.Public(), during: func() {}}
			if tc.purge {
				jwks.during = c.Purge
			}
			v := NewVerifier(VerifierConfig{JWKS: jwks, Cache: c, Now: fixedClock})
			hits, _ := cacheCounts(t)
			for i := range 2 {
				if out := v.Verify(context.Background(), token); out.Result != ResultSuccess {
					t.Fatalf("call %d: %q (%v)", i+1, out.Result, out.Err)
				}
			}
			if h, _ := cacheCounts(t); h-hits != tc.wantHits {
				t.Fatalf("%v hits, want %v", h-hits, tc.wantHits)
			}
		})
	}
}

func TestTokenCachePurgedOnJWKSRefresh(t *testing.T) {
	k := keys(t)
	srv := newJWKSServer(t, map[string]any{"ed-1": k.ed.Public()})
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	j := &JWT{
		JWKSURL:                srv.URL,
		JWKSRefreshInterval:    caddy.Duration(time.Hour),
		JWKSMinRefreshInterval: caddy.Duration(time.Hour),
		JWKSTimeout:            caddy.Duration(2 * time.Second),
	}
	if err := j.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := j.Validate(); err != nil {
		t.Fatal(err)
	}
	// The provider uses the real clock.
	live := map[string]any{"exp": time.Now().Add(time.Hour).Unix(), "iat": nil, "nbf": nil}
	edToken := sign(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claims(live))
	ecToken := sign(t, jwt.SigningMethodES256, k.ec, "ec-2", claims(live))
	verify := func(token string) Result { return j.verifier.Verify(context.Background(), token).Result }

	hits, _ := cacheCounts(t)
	for i := range 2 {
		if got := verify(edToken); got != ResultSuccess {
			t.Fatalf("call %d with the JWKS key: %q", i+1, got)
		}
	}
	if h, _ := cacheCounts(t); h-hits != 1 {
		t.Fatalf("%v hits before the rotation, want 1: the token was not cached", h-hits)
	}

	// The issuer rotates ed-1 out and ec-2 in; ec-2's first token makes the
	// gateway fetch the set, which must drop ed-1's tokens from the cache.
	srv.set(func() { delete(srv.keys, "ed-1"); srv.keys["ec-2"] = &k.ec.PublicKey })
	refreshes := testkit.Value(jwksRefreshes.WithLabelValues("success"))
	if got := verify(ecToken); got != ResultSuccess {
		t.Fatalf("the rotated-in key: %q", got)
	}
	if d := testkit.Value(jwksRefreshes.WithLabelValues("success")) - refreshes; d != 1 {
		t.Fatalf("%v successful refreshes, want 1", d)
	}
	if got := verify(edToken); got != ResultUnknownKey {
		t.Fatalf("a cached token of the rotated-out key after the refresh: %q, want %q", got, ResultUnknownKey)
	}
}

func TestTokenCacheConfig(t *testing.T) {
	t.Setenv("IDENTITY_CACHE_SECRET", string(testSecret))
	cases := []struct {
		name     string
		ttl      *caddy.Duration
		size     int
		wantOn   bool
		wantSize int
		wantErr  string
	}{
		{"defaults", nil, 0, true, DefaultCacheSize, ""},
		{"set", new(caddy.Duration(5 * time.Minute)), 500, true, 500, ""},
		{"0 turns it off", new(caddy.Duration(0)), 0, false, 0, ""},
		{"ttl above 1h", new(caddy.Duration(2 * time.Hour)), 0, true, DefaultCacheSize, "cache_ttl 2h0m0s"},
		{"negative ttl", new(caddy.Duration(-time.Second)), 0, false, 0, "cache_ttl -1s"},
		{"size above 1e6", nil, 1000001, true, 1000001, "cache_size 1000001"},
		{"negative size", nil, -1, false, 0, "cache_size -1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			j := &JWT{SecretEnv: "IDENTITY_CACHE_SECRET", CacheTTL: tc.ttl, CacheSize: tc.size}
			err := j.Provision(ctx)
			if err == nil {
				err = j.Validate()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := j.verifier.cfg.Cache
			if (c != nil) != tc.wantOn {
				t.Fatalf("cache on: %v, want %v", c != nil, tc.wantOn)
			}
			token := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"exp": time.Now().Add(time.Hour).Unix(), "iat": nil, "nbf": nil}))
			hits, misses := cacheCounts(t)
			for range 2 {
				if out := j.verifier.Verify(context.Background(), token); out.Result != ResultSuccess {
					t.Fatalf("%q (%v)", out.Result, out.Err)
				}
			}
			h, m := cacheCounts(t)
			if want := map[bool]float64{true: 1, false: 0}[tc.wantOn]; h-hits != want || m-misses != want {
				t.Fatalf("%v hits and %v misses, want %v of each", h-hits, m-misses, want)
			}
			if tc.wantOn && c.ttl != time.Duration(*j.CacheTTL) {
				t.Fatalf("ttl %s, want %s", c.ttl, time.Duration(*j.CacheTTL))
			}
		})
	}
}

func TestTokenCacheCaddyfile(t *testing.T) {
	site := func(opts string) string {
		return fmt.Sprintf(":8080 {\n\tauthenticate {\n\t\tjwt {\n\t\t\tsecret_env S\n%s\n\t\t}\n\t}\n}", opts)
	}
	for opts, want := range map[string][]string{
		"cache_ttl 5m\ncache_size 500": {`"cache_ttl":300000000000`, `"cache_size":500`},
		"cache_ttl off":                {`"cache_ttl":0`},
		"cache_ttl 0":                  {`"cache_ttl":0`},
		"":                             nil,
	} {
		cfg, err := caddytest.Adapt(site(opts))
		if err != nil {
			t.Fatalf("%q: %v", opts, err)
		}
		for _, w := range want {
			if !strings.Contains(string(cfg), w) {
				t.Errorf("%q: adapted config lacks %s:\n%s", opts, w, cfg)
			}
		}
		if want == nil && strings.Contains(string(cfg), `"cache_`) {
			t.Errorf("no cache options, yet:\n%s", cfg)
		}
	}

	for opts, want := range map[string]string{
		"cache_ttl soon":    `cache_ttl: bad duration "soon"`,
		"cache_ttl":         "wrong argument count",
		"cache_ttl 1m 2m":   "wrong argument count",
		"cache_size 0":      `cache_size "0"`,
		"cache_size many":   `cache_size "many"`,
		"cache_size -5":     `cache_size "-5"`,
		"cache_size 10 100": "wrong argument count",
	} {
		d := caddyfile.NewTestDispenser("authenticate {\n jwt {\n " + opts + "\n }\n}")
		err := new(Authenticate).UnmarshalCaddyfile(d)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one with %q", opts, err, want)
		}
	}
}

// TestTokenCacheConcurrentUse shares one small cache between goroutines
// that verify good and bad tokens, keep the metadata they get, and purge,
// so that evictions, purges and hits interleave under -race.
func TestTokenCacheConcurrentUse(t *testing.T) {
	k := keys(t)
	clock := testkit.NewClock(testNow)
	v, c := cachedTestVerifier(t, 2, time.Minute, clock.Now)
	type tokenCase struct {
		token, user string
		want        Result
	}
	tokens := []tokenCase{
		{sign(t, jwt.SigningMethodHS256, testSecret, "", claims(nil)), "user-1", ResultSuccess},
		{sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"sub": "user-2"})), "user-2", ResultSuccess},
		{sign(t, jwt.SigningMethodES256, k.ec, "ec-1", claims(map[string]any{"sub": "user-3"})), "user-3", ResultSuccess},
		{sign(t, jwt.SigningMethodHS256, []byte("zz-0123456789abcdefghijklmnopqrstuv"), "", claims(nil)), "", ResultBadSignature},
		{sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"exp": testNow.Add(-time.Hour).Unix()})), "", ResultExpired},
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				tc := tokens[(g+i)%len(tokens)]
				out := v.Verify(context.Background(), tc.token)
				if out.Result != tc.want || out.User.ID != tc.user {
					errs <- fmt.Errorf("goroutine %d: %q for %q, want %q for %q", g, out.Result, out.User.ID, tc.want, tc.user)
					return
				}
				if out.Result == ResultSuccess {
					if out.User.Metadata["tier"] != "pro" {
						errs <- fmt.Errorf("goroutine %d: tier %q", g, out.User.Metadata["tier"])
						return
					}
					out.User.Metadata["tier"] = fmt.Sprint(g)
				}
				switch i % 50 {
				case 0:
					c.Purge()
				case 25:
					clock.Advance(time.Second)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
