package main

import (
	"net/http"
	"sync"
	"time"
)

// requestLogSize is how many /v1 requests GET /requests remembers.
const requestLogSize = 200

// requestRecord is what the request log keeps of a request.
type requestRecord struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	// Host is the Host header, which net/http removes from Headers.
	Host    string      `json:"host"`
	Headers http.Header `json:"headers"`
	Time    time.Time   `json:"time"`
}

// requestLog keeps the last requests received, so that tests can assert what
// the gateway forwarded (headers added, stripped or rewritten). It is a ring
// buffer, safe for concurrent use.
type requestLog struct {
	mu      sync.Mutex
	records []requestRecord // ring buffer of at most cap(records) entries
	next    int             // index of the next write once records is full
}

func newRequestLog(size int) *requestLog {
	return &requestLog{records: make([]requestRecord, 0, size)}
}

// add records r as received at t.
func (l *requestLog) add(r *http.Request, t time.Time) {
	rec := requestRecord{
		Method:  r.Method,
		Path:    r.URL.Path,
		Query:   r.URL.RawQuery,
		Host:    r.Host,
		Headers: r.Header.Clone(),
		Time:    t.UTC(),
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.records) < cap(l.records) {
		l.records = append(l.records, rec)
		return
	}
	l.records[l.next] = rec
	l.next = (l.next + 1) % len(l.records)
}

// list returns the recorded requests, oldest first.
func (l *requestLog) list() []requestRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]requestRecord, 0, len(l.records))
	out = append(out, l.records[l.next:]...)
	return append(out, l.records[:l.next]...)
}

// clear forgets all recorded requests.
func (l *requestLog) clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.records)
	l.records = l.records[:0]
	l.next = 0
}
