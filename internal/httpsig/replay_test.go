package httpsig

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"
)

// signedWithNonce is signedRequest with a chosen nonce.
func signedWithNonce(t *testing.T, key Key, at time.Time, nonce, target string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Header.Set("X-Request-ID", "req-1")
	s, err := NewSigner(key, func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	s.nonce = func() string { return nonce }
	if err := s.Sign(r, sha256.Sum256(nil)); err != nil {
		t.Fatal(err)
	}
	return r
}

// resend is r as an attacker who captured it would send it again.
func resend(r *http.Request) *http.Request {
	c := httptest.NewRequest(r.Method, r.URL.String(), nil)
	c.Header = r.Header.Clone()
	return c
}

func nonceOf(t *testing.T, r *http.Request) string {
	t.Helper()
	d, err := httpsfv.UnmarshalDictionary(r.Header.Values(HeaderSignatureInput))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := d.Get(Label)
	n, _ := m.(httpsfv.InnerList).Params.Get("nonce")
	s, _ := n.(string)
	return s
}

func TestSignerNonces(t *testing.T) {
	s, err := NewSigner(keyOld, func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	r := httptest.NewRequest(http.MethodGet, "/v1/scores/abc", nil)
	for range 1000 {
		// The same request signed again, as for a retry: a new nonce.
		if err := s.Sign(r, sha256.Sum256(nil)); err != nil {
			t.Fatal(err)
		}
		n := nonceOf(t, r)
		if len(n) != 26 || seen[n] {
			t.Fatalf("nonce %q: want 26 characters, never repeated", n)
		}
		seen[n] = true
	}
}

// step is one request in a replay scenario: a new one signed by key with
// nonce, or a resend of an earlier step; signed and sent at offsets from t0.
type step struct {
	key        Key
	nonce      string
	resendOf   int // 1-based index of an earlier step; 0: a new request
	signed, at time.Duration
	want       int
	wantReason string
}

func TestReplayCache(t *testing.T) {
	ok := func(key Key, nonce string) step { return step{key: key, nonce: nonce, want: http.StatusNoContent} }
	cases := []struct {
		name  string
		size  int
		steps []step
		held  int // nonces in the cache at the end
	}{
		{name: "fresh nonces are accepted", held: 3, steps: []step{
			ok(keyOld, "n1"), ok(keyOld, "n2"), ok(keyOld, "n3"),
		}},
		{name: "the same request twice is refused", held: 1, steps: []step{
			ok(keyOld, "n1"),
			{resendOf: 1, want: 401, wantReason: "replayed"},
			{resendOf: 1, at: 10 * time.Second, want: 401, wantReason: "replayed"},
		}},
		{name: "a request replayed at exactly MaxAge is still refused as a replay", held: 1, steps: []step{
			ok(keyOld, "n1"),
			{resendOf: 1, at: 30 * time.Second, want: 401, wantReason: "replayed"},
		}},
		{name: "the same nonce under another key is another entry", held: 2, steps: []step{
			ok(keyOld, "shared"), ok(keyNew, "shared"),
			{resendOf: 1, want: 401, wantReason: "replayed"},
			{resendOf: 2, want: 401, wantReason: "replayed"},
		}},
		{name: "a nonce seen long ago is refused by its age, not by the cache", held: 1, steps: []step{
			ok(keyOld, "n1"),
			// A later request moves the cache past the first one's second,
			// which it forgets.
			{key: keyOld, nonce: "n2", signed: 31 * time.Second, at: 31 * time.Second, want: http.StatusNoContent},
			{resendOf: 1, at: 31 * time.Second, want: 401, wantReason: "expired"},
			{resendOf: 1, at: time.Hour, want: 401, wantReason: "expired"},
		}},
		{name: "a full cache refuses new signatures but still recognises replays", size: 2, held: 1, steps: []step{
			ok(keyOld, "n1"), ok(keyNew, "n2"),
			{key: keyOld, nonce: "n3", want: http.StatusServiceUnavailable},
			{resendOf: 1, want: 401, wantReason: "replayed"},
			{key: keyOld, nonce: "n4", signed: 29 * time.Second, at: 29 * time.Second, want: http.StatusServiceUnavailable},
			// t0's second has aged out: n1 and n2 make room for n5.
			{key: keyOld, nonce: "n5", signed: 31 * time.Second, at: 31 * time.Second, want: http.StatusNoContent},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{now: t0}
			v, err := NewVerifier([]Key{keyOld, keyNew}, Options{Now: clk.Now, ReplayCacheSize: tc.size})
			if err != nil {
				t.Fatal(err)
			}
			var sent []*http.Request
			for i, st := range tc.steps {
				var r *http.Request
				if st.resendOf > 0 {
					r = resend(sent[st.resendOf-1])
				} else {
					r = signedWithNonce(t, st.key, t0.Add(st.signed), st.nonce, fmt.Sprintf("/v1/scores/%d", i))
				}
				sent = append(sent, resend(r))
				clk.now = t0.Add(st.at)
				status, reached, _, problem := serve(t, v, r)
				if status != st.want || reached != (st.want < 400) {
					t.Fatalf("step %d: status %d (handler ran: %v), want %d; %v", i+1, status, reached, st.want, problem)
				}
				if st.want == 401 && problem["reason"] != st.wantReason {
					t.Fatalf("step %d: reason %v, want %q", i+1, problem["reason"], st.wantReason)
				}
			}
			v.replays.mu.Lock()
			defer v.replays.mu.Unlock()
			if v.replays.size != tc.held {
				t.Fatalf("the cache holds %d nonces, want %d", v.replays.size, tc.held)
			}
		})
	}
}

func TestReplayCacheFullAnswer(t *testing.T) {
	clk := &clock{now: t0}
	v, err := NewVerifier([]Key{keyOld}, Options{Now: clk.Now, ReplayCacheSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if status, _, _, _ := serve(t, v, signedRequest(t, keyOld, t0, http.MethodGet, "/v1/scores/a", "", nil)); status != http.StatusNoContent {
		t.Fatalf("first request: %d", status)
	}
	rec := httptest.NewRecorder()
	r := signedRequest(t, keyOld, t0, http.MethodGet, "/v1/scores/b", "", map[string]string{"X-Request-ID": "req-9"})
	VerifyMiddleware(v, nil)(http.NotFoundHandler()).ServeHTTP(rec, r)
	body := rec.Body.String()
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" ||
		!strings.Contains(body, `"type":"`+ProblemTypeBase+`replay-cache-full"`) || !strings.Contains(body, `"request_id":"req-9"`) {
		t.Fatalf("full cache: %d Retry-After %q %s", rec.Code, rec.Header().Get("Retry-After"), body)
	}

	// Once the first request's second has left the window there is room.
	clk.now = t0.Add(31 * time.Second)
	if status, _, _, p := serve(t, v, signedRequest(t, keyOld, clk.now, http.MethodGet, "/v1/scores/c", "", nil)); status != http.StatusNoContent {
		t.Fatalf("after the window: %d %v", status, p)
	}
}

// The cache holds the window and no more: each second's nonces go as a
// whole once that second is more than MaxAge old.
func TestReplayCacheDropsSecondsAsTheyAgeOut(t *testing.T) {
	const maxAge = 30 * time.Second
	c := newReplayCache(maxAge, 100)
	base := t0.Unix()
	for s := range int64(5) {
		for n := range 3 {
			if err := c.add("k", fmt.Sprint(n), base+s, t0.Add(time.Duration(s)*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		now  time.Duration // after t0
		size int
	}{
		{maxAge, 15},                        // t0 is exactly MaxAge old: still acceptable
		{maxAge + time.Nanosecond, 12},      // t0's second has gone
		{maxAge + 2500*time.Millisecond, 6}, // t0+1, t0+2 too
		{maxAge + 5*time.Second, 0},
	}
	for _, tc := range cases {
		now := t0.Add(tc.now)
		// A new key each time, so that the add itself succeeds and is counted.
		if err := c.add("other", tc.now.String(), now.Unix(), now); err != nil {
			t.Fatalf("at +%s: %v", tc.now, err)
		}
		c.mu.Lock()
		size := 0
		for s, set := range c.seconds {
			if s < base+5 {
				size += len(set)
			}
		}
		c.mu.Unlock()
		if size != tc.size {
			t.Fatalf("at +%s: %d nonces held from the first five seconds, want %d", tc.now, size, tc.size)
		}
	}
}

// A goroutine whose clock reading is older than the one that dropped a
// second must not find that second empty and take a replay for new.
func TestReplayCacheRefusesDroppedSecondsOnAnOlderClock(t *testing.T) {
	c := newReplayCache(30*time.Second, 100)
	created := t0.Unix()
	if err := c.add("k", "n", created, t0); err != nil {
		t.Fatal(err)
	}
	if err := c.add("k", "other", created+31, t0.Add(31*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Read at t0+29s (the age check passed), checked after the drop.
	if err := c.add("k", "n", created, t0.Add(29*time.Second)); !errors.Is(err, ErrExpired) {
		t.Fatalf("replay of a dropped second: %v, want ErrExpired", err)
	}
}

// A wall clock set back by more than the window (the correction of a clock
// that ran ahead) must not leave every request refused until it catches up.
func TestReplayCacheAfterTheClockIsSetBack(t *testing.T) {
	c := newReplayCache(30*time.Second, 100)
	ahead := t0.Add(time.Hour)
	if err := c.add("k", "n1", ahead.Unix(), ahead); err != nil {
		t.Fatal(err)
	}
	if err := c.add("k", "n2", t0.Unix(), t0); err != nil {
		t.Fatalf("after the clock was set back an hour: %v", err)
	}
	if err := c.add("k", "n2", t0.Unix(), t0); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replay after the clock was set back: %v, want ErrReplayed", err)
	}
}

func TestReplayCacheConcurrent(t *testing.T) {
	v, err := NewVerifier([]Key{keyOld, keyNew}, Options{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 200
	captured := signedRequest(t, keyOld, t0, http.MethodGet, "/v1/scores/abc", "", nil)
	var fresh, replayAccepted, replayRefused atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := []Key{keyOld, keyNew}[w%2]
			s, _ := NewSigner(key, func() time.Time { return t0 })
			for range each {
				r := httptest.NewRequest(http.MethodGet, "/v1/scores/abc", nil)
				if err := s.Sign(r, sha256.Sum256(nil)); err != nil {
					t.Error(err)
					return
				}
				if _, err := v.Verify(r); err != nil {
					t.Errorf("fresh request refused: %v", err)
					return
				}
				fresh.Add(1)
				// Every worker races to replay the same captured request.
				switch _, err := v.Verify(resend(captured)); {
				case err == nil:
					replayAccepted.Add(1)
				case errors.Is(err, ErrReplayed):
					replayRefused.Add(1)
				default:
					t.Errorf("replay: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if fresh.Load() != workers*each || replayAccepted.Load() != 1 || replayRefused.Load() != workers*each-1 {
		t.Fatalf("fresh accepted %d of %d; the captured request accepted %d times (want once), refused %d",
			fresh.Load(), workers*each, replayAccepted.Load(), replayRefused.Load())
	}
	v.replays.mu.Lock()
	defer v.replays.mu.Unlock()
	if v.replays.size != workers*each+1 {
		t.Fatalf("cache holds %d nonces, want %d", v.replays.size, workers*each+1)
	}
}

// The documented memory bound: bytes held per remembered nonce.
func TestReplayCacheMemoryPerEntry(t *testing.T) {
	const n = 200_000
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c := newReplayCache(30*time.Second, n)
	// Spread over a 30 s window, as a steady load would.
	for i := range n {
		created := t0.Unix() + int64(i*30/n)
		if err := c.add("gateway-1", fmt.Sprintf("%026d", i), created, time.Unix(created, 0)); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEntry := float64(after.HeapAlloc-before.HeapAlloc) / n
	runtime.KeepAlive(c)
	t.Logf("%.1f bytes per nonce for %d nonces", perEntry, n)
	if perEntry > 48 {
		t.Fatalf("%.1f bytes per nonce, documented as 20 to 40", perEntry)
	}
}

// BenchmarkReplayCacheAdd is the cost of remembering one nonce, from all
// cores at once, with the clock moving a second every 20,000 nonces so that
// old seconds are dropped as in service.
func BenchmarkReplayCacheAdd(b *testing.B) {
	c := newReplayCache(30*time.Second, DefaultReplayCacheSize)
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			now := t0.Add(time.Duration(i/20_000) * time.Second)
			if err := c.add("gateway-1", strconv.FormatInt(i, 32), now.Unix(), now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
