package resilience

import (
	"net/http"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit"
)

func TestStaleCacheKeepsRepresentationHeadersOnly(t *testing.T) {
	c := newStaleCache(10, time.Hour, testkit.NewClock(testkit.Epoch).Now)
	c.put(1, 200, http.Header{
		"Content-Type": {"application/json"},
		"Etag":         {`"v1"`},
		"Set-Cookie":   {"session=secret"},
		"X-Request-Id": {"req-1"},
		"Date":         {"yesterday"},
	}, []byte(`{"a":1}`))
	res, _, ok := c.get(1)
	if !ok {
		t.Fatal("entry not found")
	}
	if res.header.Get("Content-Type") != "application/json" || res.header.Get("ETag") != `"v1"` {
		t.Errorf("representation headers lost: %v", res.header)
	}
	for _, k := range []string{"Set-Cookie", "X-Request-Id", "Date"} {
		if res.header.Get(k) != "" {
			t.Errorf("%s kept in the stale copy", k)
		}
	}
	if string(res.body) != `{"a":1}` || res.status != 200 {
		t.Errorf("got %d %q", res.status, res.body)
	}
}

func TestStaleCacheAgeAndExpiry(t *testing.T) {
	clock := testkit.NewClock(testkit.Epoch)
	c := newStaleCache(10, time.Minute, clock.Now)
	c.put(1, 200, nil, []byte("x"))
	clock.Advance(42 * time.Second)
	if _, age, ok := c.get(1); !ok || age != 42*time.Second {
		t.Fatalf("get after 42s: age %v, ok %v", age, ok)
	}
	clock.Advance(19 * time.Second)
	if _, _, ok := c.get(1); ok {
		t.Fatal("an entry older than max age was served")
	}
	if c.len() != 0 {
		t.Fatalf("expired entry kept: %d entries", c.len())
	}
}

func TestStaleCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newStaleCache(2, time.Hour, testkit.NewClock(testkit.Epoch).Now)
	c.put(2, 200, nil, []byte("a"))
	c.put(3, 200, nil, []byte("b"))
	c.get(2) // 2 is now more recent than 3
	c.put(4, 200, nil, []byte("c"))
	if _, _, ok := c.get(3); ok {
		t.Error("the least recently used entry was kept")
	}
	for _, k := range []uint64{2, 4} {
		if _, _, ok := c.get(k); !ok {
			t.Errorf("%d evicted", k)
		}
	}
	c.put(2, 200, nil, []byte("a2"))
	if res, _, _ := c.get(2); string(res.body) != "a2" || c.len() != 2 {
		t.Errorf("replacing an entry: body %q, %d entries", res.body, c.len())
	}
}

func TestStaleCacheSameAnswerRefreshesItsAge(t *testing.T) {
	clock := testkit.NewClock(testkit.Epoch)
	c := newStaleCache(10, time.Minute, clock.Now)
	body := []byte("same")
	c.put(1, 200, nil, body)
	clock.Advance(50 * time.Second)
	c.put(1, 200, nil, []byte("same"))
	clock.Advance(30 * time.Second)
	if res, age, ok := c.get(1); !ok || age != 30*time.Second || string(res.body) != "same" {
		t.Fatalf("after a refresh: ok %v, age %v", ok, age)
	}
	body[0] = 'S' // the cache holds its own copy
	if res, _, _ := c.get(1); string(res.body) != "same" {
		t.Fatalf("the cached body changed with the caller's buffer: %q", res.body)
	}
	c.put(1, 200, nil, []byte("new"))
	if res, age, _ := c.get(1); string(res.body) != "new" || age != 0 {
		t.Fatalf("a new answer: %q, age %v", res.body, age)
	}
}
