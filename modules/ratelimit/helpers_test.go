package ratelimit

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/lexiscore/gateway/modules/correlation"
	"github.com/lexiscore/gateway/modules/problem"
)

var testClient = &http.Client{Timeout: 10 * time.Second}

type response struct {
	status int
	header http.Header
	body   []byte
}

// get sends GET url as user (X-User; none when empty) with extra headers.
func get(t *testing.T, url, user string, extra ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("X-User", user)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, body}
}

// problemDoc decodes a problem+json response of status and type slug.
func problemDoc(t *testing.T, r response, status int, slug string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var doc map[string]any
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("decoding problem %q: %v", r.body, err)
	}
	if doc["type"] != problem.DefaultTypeBase+slug || doc["status"] != float64(status) {
		t.Fatalf("problem %v: want type %s, status %d", doc, slug, status)
	}
	if id := r.header.Get("X-Request-ID"); id == "" || doc["request_id"] != id {
		t.Fatalf("problem request_id %v, X-Request-ID %q", doc["request_id"], id)
	}
	return doc
}

// retryAfter reads Retry-After, failing unless it is 1 to max seconds.
func retryAfter(t *testing.T, r response, max int) int {
	t.Helper()
	n, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || n < 1 || n > max {
		t.Fatalf("Retry-After %q: want 1 to %d seconds", r.header.Get("Retry-After"), max)
	}
	return n
}

// remaining reads r= of policy from the RateLimit header, or -1.
func remaining(r response, policy string) int {
	for _, item := range strings.Split(r.header.Get("RateLimit"), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(item), ";")
		if name != strconv.Quote(policy) {
			continue
		}
		for _, p := range strings.Split(params, ";") {
			if v, ok := strings.CutPrefix(p, "r="); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
	}
	return -1
}
