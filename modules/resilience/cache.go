package resilience

import (
	"bytes"
	"container/list"
	"net/http"
	"sync"
	"time"
)

// staleHeaders are the response headers a stale copy keeps: those that
// describe the representation. Per-response headers (request ID, cookies,
// dates, hop-by-hop) would be wrong or unsafe to replay to someone else.
var staleHeaders = []string{
	"Content-Type", "Content-Encoding", "Content-Language", "Cache-Control",
	"ETag", "Last-Modified", "Vary",
}

// cachedResponse is a good response kept for stale-if-error. Its fields
// other than stored never change once it is in the cache.
type cachedResponse struct {
	status int
	header http.Header
	body   []byte
	stored time.Time
}

// staleCache is a bounded, least-recently-used store of the last good
// response per key. It is safe for concurrent use.
type staleCache struct {
	maxEntries int
	maxAge     time.Duration
	now        func() time.Time

	mu    sync.Mutex
	order *list.List // front: most recently used; values are *cacheItem
	items map[uint64]*list.Element
}

type cacheItem struct {
	key uint64
	res *cachedResponse
}

func newStaleCache(maxEntries int, maxAge time.Duration, now func() time.Time) *staleCache {
	return &staleCache{
		maxEntries: maxEntries,
		maxAge:     maxAge,
		now:        now,
		order:      list.New(),
		items:      map[uint64]*list.Element{},
	}
}

// put stores a copy of the response under key, evicting the least recently
// used entry when full. The same answer as the one stored only refreshes
// its age.
func (c *staleCache) put(key uint64, status int, header http.Header, body []byte) {
	now := c.now()
	c.mu.Lock()
	if el, ok := c.items[key]; ok {
		if old := el.Value.(*cacheItem).res; old.status == status && bytes.Equal(old.body, body) {
			old.stored = now
			c.order.MoveToFront(el)
			c.mu.Unlock()
			return
		}
	}
	c.mu.Unlock()

	res := &cachedResponse{status: status, header: http.Header{}, body: bytes.Clone(body), stored: now}
	for _, k := range staleHeaders {
		if v := header.Values(k); len(v) > 0 {
			res.header[http.CanonicalHeaderKey(k)] = append([]string(nil), v...)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value.(*cacheItem).res = res
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&cacheItem{key: key, res: res})
	for c.order.Len() > c.maxEntries {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*cacheItem).key)
	}
}

// get returns the response stored under key and its age, unless it is
// older than maxAge (it is then dropped).
func (c *staleCache) get(key uint64) (*cachedResponse, time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, 0, false
	}
	res := el.Value.(*cacheItem).res
	age := c.now().Sub(res.stored)
	if age > c.maxAge {
		c.order.Remove(el)
		delete(c.items, key)
		return nil, 0, false
	}
	c.order.MoveToFront(el)
	return res, age, true
}

// len is the number of entries held.
func (c *staleCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
