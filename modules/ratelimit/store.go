package ratelimit

import (
	"cmp"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/memory"
	limiterredis "github.com/ulule/limiter/v3/drivers/store/redis"
	"go.uber.org/zap"
)

// Store defaults.
const (
	DefaultStorePrefix     = "gateway:ratelimit"
	DefaultBreakerFailures = 5
	DefaultBreakerDelay    = 5 * time.Second
)

// StoreConfig chooses where counters live: the in-process memory store (the
// default; per gateway instance) or Redis (shared by every instance).
type StoreConfig struct {
	// URL of Redis: redis://[user:password@]host[:port][/db], or rediss://
	// for TLS; go-redis's URL options (dial_timeout, pool_size, ...) apply.
	// Placeholders are replaced at provision, so "{env.REDIS_URL}" keeps
	// the password out of the JSON config. Empty or "memory", with no
	// Addrs: the memory store.
	URL string `json:"url,omitempty"`
	// Addrs are more Redis nodes (host:port). Each entry may be a
	// placeholder holding a comma- or space-separated list. With
	// MasterName they are Sentinels; otherwise, together with the URL's
	// host, more than one address means a Redis Cluster.
	Addrs []string `json:"addrs,omitempty"`
	// MasterName selects Redis Sentinel: the name of the monitored master.
	// Placeholders allowed.
	MasterName string `json:"master_name,omitempty"`
	// Username for Redis ACLs, overriding the URL's. Placeholders allowed.
	Username string `json:"username,omitempty"`
	// Password for Redis when the URL has none. Placeholders allowed.
	// Default: {env.REDIS_PASSWORD}.
	Password string `json:"password,omitempty"`
	// SentinelPassword authenticates to the Sentinels. Placeholders allowed.
	SentinelPassword string `json:"sentinel_password,omitempty"`
	// DB selects the Redis database, overriding the URL's. Default: 0.
	DB int `json:"db,omitempty"`
	// Prefix starts every key written in Redis. Default: gateway:ratelimit.
	Prefix string `json:"prefix,omitempty"`
	// BreakerFailures consecutive failed calls open the circuit breaker
	// around Redis; while it is open, requests do not wait for Redis at all
	// and follow the handlers' on_store_error. Default: 5.
	BreakerFailures int `json:"breaker_failures,omitempty"`
	// BreakerDelay is how long the breaker stays open before one call may
	// test Redis again: shorter notices recovery sooner, longer costs a
	// timeout less often while Redis is down. Default: 5s.
	BreakerDelay caddy.Duration `json:"breaker_delay,omitempty"`
	// NoPipelining sends each request's calls in a round trip of their own
	// instead of through go-redis's autopipeliner, which batches the calls
	// of every request waiting at the same moment into one pipeline. The
	// autopipeliner halves the gateway's CPU per limited request and
	// quarters Redis's; it is marked experimental in go-redis, and this is
	// the way back without a new build. Default: false (pipelined).
	NoPipelining bool `json:"no_pipelining,omitempty"`
}

// storeSpec is a StoreConfig with its placeholders replaced: what the pool
// shares a store by.
type storeSpec struct {
	// key identifies the store in the pool; it holds a hash of the
	// password, never the password.
	key      string
	redis    *redis.UniversalOptions
	prefix   string
	failures int
	delay    time.Duration
	pipeline bool
}

// memoryKey is the pool key of the one in-process memory store.
const memoryKey = "memory"

// resolve replaces placeholders and reads the URL. Errors never contain
// the URL's password.
func (c *StoreConfig) resolve(repl *caddy.Replacer) (storeSpec, error) {
	if c == nil {
		return storeSpec{key: memoryKey}, nil
	}
	rawURL := strings.TrimSpace(repl.ReplaceAll(c.URL, ""))
	var addrs []string
	for _, a := range c.Addrs {
		addrs = append(addrs, strings.FieldsFunc(repl.ReplaceAll(a, ""), func(r rune) bool {
			return r == ',' || unicode.IsSpace(r)
		})...)
	}
	if (rawURL == "" || rawURL == "memory") && len(addrs) == 0 {
		return storeSpec{key: memoryKey}, nil
	}

	opts := &redis.UniversalOptions{}
	if rawURL != "" && rawURL != "memory" {
		u, err := url.Parse(rawURL)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // *url.Error quotes the whole URL, password included
			}
			return storeSpec{}, fmt.Errorf("store url: %w", err)
		}
		if u.Scheme != "redis" && u.Scheme != "rediss" {
			return storeSpec{}, fmt.Errorf("store url %s: the scheme must be redis or rediss", u.Redacted())
		}
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return storeSpec{}, fmt.Errorf("store url %s: %w", u.Redacted(), err)
		}
		opts.Addrs = []string{o.Addr}
		opts.Username, opts.Password, opts.DB, opts.TLSConfig = o.Username, o.Password, o.DB, o.TLSConfig
		opts.ClientName, opts.Protocol = o.ClientName, o.Protocol
		opts.MaxRetries, opts.MinRetryBackoff, opts.MaxRetryBackoff = o.MaxRetries, o.MinRetryBackoff, o.MaxRetryBackoff
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = o.DialTimeout, o.ReadTimeout, o.WriteTimeout
		opts.PoolFIFO, opts.PoolSize, opts.PoolTimeout = o.PoolFIFO, o.PoolSize, o.PoolTimeout
		opts.MinIdleConns, opts.MaxIdleConns, opts.MaxActiveConns = o.MinIdleConns, o.MaxIdleConns, o.MaxActiveConns
		opts.ConnMaxIdleTime, opts.ConnMaxLifetime = o.ConnMaxIdleTime, o.ConnMaxLifetime
	}
	opts.Addrs = append(opts.Addrs, addrs...)
	opts.MasterName = repl.ReplaceAll(c.MasterName, "")
	if u := repl.ReplaceAll(c.Username, ""); u != "" {
		opts.Username = u
	}
	if opts.Password == "" {
		opts.Password = repl.ReplaceAll(cmp.Or(c.Password, "{env.REDIS_PASSWORD}"), "")
	}
	opts.SentinelPassword = repl.ReplaceAll(c.SentinelPassword, "")
	if c.DB != 0 {
		opts.DB = c.DB
	}
	// Without this, go-redis ignores context deadlines on the socket and a
	// hung Redis holds a request for its 3s read timeout, not our timeout.
	opts.ContextTimeoutEnabled = true
	// The limiter only runs scripts; the maintenance-notification handshake
	// (for Redis Enterprise failovers) would be one more thing to go wrong.
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	spec := storeSpec{
		redis:    opts,
		prefix:   cmp.Or(c.Prefix, DefaultStorePrefix),
		failures: cmp.Or(c.BreakerFailures, DefaultBreakerFailures),
		delay:    cmp.Or(time.Duration(c.BreakerDelay), DefaultBreakerDelay),
		pipeline: !c.NoPipelining,
	}
	// The URL (its options change the client too) and the passwords enter
	// the key hashed, so the key can be shown without leaking them.
	secrets := sha256.Sum256([]byte(rawURL + "\x00" + opts.Password + "\x00" + opts.SentinelPassword))
	spec.key = fmt.Sprintf("redis addrs=%v master=%q user=%q db=%d prefix=%q breaker=%d/%s pipeline=%t url+secrets=%x",
		opts.Addrs, opts.MasterName, opts.Username, opts.DB, spec.prefix, spec.failures, spec.delay, spec.pipeline, secrets[:12])
	return spec, nil
}

// stores holds the stores of every loaded config, so that Redis clients,
// breakers and memory counters outlive config reloads: the new config takes
// its reference before the old one's Cleanup drops its own.
var stores = caddy.NewUsagePool()

// pooledStore is a Store in the pool, with the Redis client to close when
// no config uses it any more.
type pooledStore struct {
	*Store
	client redis.UniversalClient
}

// Destruct closes the Redis client.
func (p *pooledStore) Destruct() error {
	if p.client == nil {
		return nil
	}
	return p.client.Close()
}

// acquire takes a reference to the store of spec, creating it if needed.
// Release it with stores.Delete(spec.key).
func acquire(spec storeSpec) (*Store, error) {
	v, _, err := stores.LoadOrNew(spec.key, spec.construct)
	if err != nil {
		return nil, err
	}
	return v.(*pooledStore).Store, nil
}

// construct makes the store. It never contacts Redis, so the gateway
// starts while Redis is down; the first requests then follow
// on_store_error until it is back.
func (s storeSpec) construct() (caddy.Destructor, error) {
	if s.redis == nil {
		backend := memory.NewStoreWithOptions(limiter.StoreOptions{
			Prefix:          "ratelimit",
			CleanUpInterval: limiter.DefaultCleanUpInterval,
		})
		return &pooledStore{Store: NewStore("memory", backend, nil)}, nil
	}
	client := redis.NewUniversalClient(s.redis)
	var pipeliner *redis.AutoPipeliner
	scripts := &deferredScripts{UniversalClient: client}
	if s.pipeline {
		// Calls made at the same time, by any requests, share one round
		// trip: under load, Redis and the gateway each handle a few
		// pipelines instead of one exchange per call (docs/ratelimiting.md).
		// The deferred face queues a request's calls without waiting, so
		// they go out together with no goroutine each (redisCounter).
		var err error
		if pipeliner, err = client.AsyncAutoPipeline(); err != nil {
			_ = client.Close()
			return nil, fmt.Errorf("redis store: %w", err)
		}
		scripts.UniversalClient = pipeliner
	}
	backend, err := limiterredis.NewStoreWithOptions(scripts, limiter.StoreOptions{Prefix: s.prefix})
	scripts.live.Store(true)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis store: %w", err)
	}
	counter, err := newRedisCounter(backend, client, pipeliner, s.prefix, scripts.loaded)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis store: %w", err)
	}
	return &pooledStore{Store: NewStore("redis", counter, newBreaker("redis", s.failures, s.delay)), client: client}, nil
}

// deferredScripts lets limiter's redis.NewStoreWithOptions succeed without
// Redis. That constructor loads its two Lua scripts with SCRIPT LOAD and
// fails when Redis is down. While it runs, ScriptLoad answers with the
// script's SHA-1, which is exactly what Redis would answer; the first
// EVALSHA then meets NOSCRIPT, on which the store loads the scripts itself
// (and does again whenever a restarted Redis has lost them), this time
// through to Redis. It keeps the scripts, which redisCounter runs.
type deferredScripts struct {
	redis.UniversalClient
	live   atomic.Bool
	loaded []string
}

// ScriptLoad loads script into Redis once the store is built.
func (c *deferredScripts) ScriptLoad(ctx context.Context, script string) *redis.StringCmd {
	if c.live.Load() {
		return c.UniversalClient.ScriptLoad(ctx, script)
	}
	c.loaded = append(c.loaded, script)
	sum := sha1.Sum([]byte(script))
	return redis.NewStringResult(hex.EncodeToString(sum[:]), nil)
}

// newBreaker opens after failures consecutive failures, stays open for
// delay, then lets a single call test the store: one success closes it,
// one failure opens it again.
func newBreaker(store string, failures int, delay time.Duration) circuitbreaker.CircuitBreaker[any] {
	setBreakerState(store, circuitbreaker.ClosedState)
	return circuitbreaker.NewBuilder[any]().
		WithFailureThreshold(uint(failures)).
		WithSuccessThreshold(1).
		WithDelay(delay).
		OnStateChanged(func(e circuitbreaker.StateChangedEvent) {
			setBreakerState(store, e.NewState)
			log := caddy.Log().Named("ratelimit")
			fields := []zap.Field{zap.String("store", store), zap.Stringer("from", e.OldState), zap.Stringer("to", e.NewState)}
			if e.NewState == circuitbreaker.OpenState {
				log.Warn("rate limit store unavailable: circuit breaker opened", fields...)
				return
			}
			log.Info("rate limit store circuit breaker changed state", fields...)
		}).
		Build()
}

func setBreakerState(store string, current circuitbreaker.State) {
	for _, s := range []circuitbreaker.State{circuitbreaker.ClosedState, circuitbreaker.OpenState, circuitbreaker.HalfOpenState} {
		v := 0.0
		if s == current {
			v = 1
		}
		breakerState.WithLabelValues(store, s.String()).Set(v)
	}
}
