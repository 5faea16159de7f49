package identity

import (
	"maps"
	"strings"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// The token cache's defaults and bounds (cache_ttl, cache_size).
const (
	DefaultCacheTTL  = time.Minute
	DefaultCacheSize = 10000
	maxCacheTTL      = time.Hour
	maxCacheSize     = 1000000
)

// TokenCache remembers successful token verifications, keyed by the exact
// token, so that a client sending the same bearer token on every request
// pays for the signature check and the claims' decoding once per TTL.
// Refusals are never remembered: garbage cannot fill the cache, and a
// refused token is checked in full every time. It is safe for concurrent
// use.
//
// The key is the token itself rather than its SHA-256: hashing costs more
// per lookup than the map does, and only tokens signed by a trusted key get
// in, so the memory is bounded by size × max_token_size.
type TokenCache struct {
	entries *lru.Cache[string, cachedToken]
	ttl     time.Duration
	// generation counts purges. An entry records the generation in which its
	// verification started and is used only within it, so a verification
	// that raced a purge (checked with a key the purge was meant to drop)
	// cannot outlive it.
	generation atomic.Uint64
}

// cachedToken is one successful verification, valid on the Verifier's
// clock from from (inclusive) to until (exclusive).
type cachedToken struct {
	out         Outcome
	from, until time.Time
	generation  uint64
}

// NewTokenCache returns a cache of at most size tokens, each kept at most
// ttl. Expiry is checked on lookup against the caller's clock, not by a
// background sweep, so the cache owns no goroutine.
func NewTokenCache(size int, ttl time.Duration) (*TokenCache, error) {
	entries, err := lru.New[string, cachedToken](size)
	if err != nil {
		return nil, err
	}
	return &TokenCache{entries: entries, ttl: ttl}, nil
}

// Purge forgets every token: the keys they were checked with may have
// changed.
func (c *TokenCache) Purge() {
	c.generation.Add(1)
	c.entries.Purge()
}

// get returns the outcome remembered for token if it is valid at now, with
// a Metadata map of the caller's own. gen is the generation to pass to add
// after a miss.
func (c *TokenCache) get(token string, now time.Time) (out Outcome, gen uint64, ok bool) {
	gen = c.generation.Load()
	e, ok := c.entries.Get(token)
	if ok && (e.generation != gen || now.Before(e.from) || !now.Before(e.until)) {
		// Outside its window the token is checked in full again, so the
		// refusal is exactly the uncached one.
		c.entries.Remove(token)
		ok = false
	}
	if !ok {
		tokenCacheMisses.Inc()
		return Outcome{}, gen, false
	}
	tokenCacheHits.Inc()
	out = e.out
	out.User.Metadata = maps.Clone(e.out.User.Metadata)
	return out, gen, true
}

// add remembers a successful verification that started at now in
// generation gen, for at most the TTL and never past the token's own
// validity [from, until).
func (c *TokenCache) add(token string, out Outcome, from, until time.Time, gen uint64, now time.Time) {
	if limit := now.Add(c.ttl); limit.Before(until) {
		until = limit
	}
	if !now.Before(until) {
		return
	}
	out.User.Metadata = maps.Clone(out.User.Metadata)
	// A copy of the token, so that the entry does not pin whatever buffer
	// the token was cut from.
	c.entries.Add(strings.Clone(token), cachedToken{out: out, from: from, until: until, generation: gen})
}
