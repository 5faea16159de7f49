package httpsig

import (
	"crypto/sha256"
	"fmt"
	"math"
	"sync"
	"time"
)

// DefaultReplayCacheSize is the default of Options.ReplayCacheSize: room
// for 35,000 signed requests a second with a 30 s MaxAge, in 25 to 40 MiB.
const DefaultReplayCacheSize = 1 << 20

// replayCache remembers the nonce of every accepted signature for as long as
// its created time is within the verifier's window, so that each signature
// is accepted once. It is safe for concurrent use.
//
// Nonces sit in one set per second of created. A signature is only
// acceptable while now - created <= maxAge, so the set of a second that has
// left the window can never be asked about again and is dropped whole: the
// cache holds the window and nothing else, with no per-entry expiry and no
// sweep. An LRU would fit badly: when full it evicts the least recently
// added entry whether or not its second is still acceptable, which would
// silently let that request be replayed. Here a full cache refuses new
// signatures instead (ErrReplayCacheFull) until a second ages out.
type replayCache struct {
	maxAge time.Duration
	limit  int

	mu sync.Mutex
	// seconds holds the nonces of accepted signatures by created second.
	seconds map[int64]map[nonceKey]struct{}
	// size is the number of nonces in all of seconds.
	size int
	// dropped is the latest second whose set has been dropped, at the
	// clock reading droppedAt. Signatures created in it or earlier are
	// refused: without the floor, a request checked against a slightly older
	// clock reading on another goroutine could pass the age check after its
	// second's set was dropped, and be accepted as new.
	dropped   int64
	droppedAt time.Time
}

// nonceKey is a (key ID, nonce) pair, hashed so that every entry has the
// same small size whatever the nonce's length, and holds no pointer for the
// garbage collector to scan (the map may hold a million).
type nonceKey [16]byte

func newNonceKey(keyID, nonce string) nonceKey {
	// Key IDs are printable ASCII, so the zero byte separates unambiguously.
	b := make([]byte, 0, 256)
	b = append(append(append(b, keyID...), 0), nonce...)
	sum := sha256.Sum256(b)
	return nonceKey(sum[:16])
}

func newReplayCache(maxAge time.Duration, limit int) *replayCache {
	return &replayCache{
		maxAge:  maxAge,
		limit:   limit,
		seconds: make(map[int64]map[nonceKey]struct{}),
		dropped: math.MinInt64,
	}
}

// add records the nonce of a verified signature created at created (Unix
// seconds), read at now. It fails with ErrReplayed if the nonce is known
// under keyID, with ErrReplayCacheFull if the cache holds limit nonces all
// still within the window, and with ErrExpired if created has left it.
//
// A replay carries the same signed created as the original, so only the set
// of that second is searched.
func (c *replayCache) add(keyID, nonce string, created int64, now time.Time) error {
	k := newNonceKey(keyID, nonce)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropExpired(now)
	if created <= c.dropped {
		if !now.Before(c.droppedAt.Add(-c.maxAge)) {
			return fmt.Errorf("%w: created before the replay window", ErrExpired)
		}
		// Not a late reading but a wall clock set back by more than the
		// window (an NTP correction): without starting the floor over,
		// every request would be refused until the clock caught up.
		c.dropped, c.droppedAt = lastExpired(now, c.maxAge), now
	}
	set := c.seconds[created]
	if _, seen := set[k]; seen {
		return ErrReplayed
	}
	if c.size >= c.limit {
		return ErrReplayCacheFull
	}
	if set == nil {
		set = make(map[nonceKey]struct{})
		c.seconds[created] = set
	}
	set[k] = struct{}{}
	c.size++
	return nil
}

// dropExpired drops the sets of the seconds that are no longer acceptable at
// now: those more than maxAge before it, as Verify counts age. It walks the
// at most maxAge + maxSkew + 1 live seconds, once per second of now.
func (c *replayCache) dropExpired(now time.Time) {
	last := lastExpired(now, c.maxAge)
	if last <= c.dropped {
		return
	}
	for s, set := range c.seconds {
		if s <= last {
			c.size -= len(set)
			delete(c.seconds, s)
		}
	}
	c.dropped, c.droppedAt = last, now
}

// lastExpired is the latest second a signature created in which is more
// than maxAge old at now.
func lastExpired(now time.Time, maxAge time.Duration) int64 {
	edge := now.Add(-maxAge)
	last := edge.Unix()
	if edge.Equal(time.Unix(last, 0)) {
		// Exactly maxAge old is still acceptable.
		last--
	}
	return last
}
