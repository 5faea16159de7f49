package main

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/lexiscore/gateway/internal/testkit"
)

func TestRequestLogAndStats(t *testing.T) {
	ts := startServer(t)
	ts.do(t, http.MethodGet, ts.api+"/healthz", nil, nil) // not a /v1 request: not logged
	ts.postJSON(t, `{"audio_base64":"AQID"}`, http.Header{"X-Auth-User-ID": {"carol"}, "X-Forwarded-For": {"203.0.113.7"}})
	ts.do(t, http.MethodGet, ts.api+"/v1/users/carol/scores?limit=5&x=%C3%A9", nil, http.Header{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, "X-Multi": {"a", "b"}})
	ts.do(t, http.MethodGet, ts.api+"/v1/nope", nil, nil)

	var recs []requestRecord
	decodeJSON(t, ts.do(t, http.MethodGet, ts.admin+"/requests", nil, nil), http.StatusOK, &recs)
	if len(recs) != 3 {
		t.Fatalf("GET /requests = %d records, want 3: %+v", len(recs), recs)
	}
	post, list, unknown := recs[0], recs[1], recs[2]
	if post.Method != "POST" || post.Path != "/v1/scores" || post.Headers.Get("X-Auth-User-ID") != "carol" || post.Headers.Get("X-Forwarded-For") != "203.0.113.7" {
		t.Errorf("first record = %+v, want the POST with its headers", post)
	}
	if q, err := url.ParseQuery(list.Query); err != nil || q.Get("limit") != "5" || q.Get("x") != "é" {
		t.Errorf("second record query = %q, want limit=5 and x=é", list.Query)
	}
	if list.Path != "/v1/users/carol/scores" || !reflect.DeepEqual(list.Headers["X-Multi"], []string{"a", "b"}) || list.Headers.Get("Traceparent") == "" || list.Host != strings.TrimPrefix(ts.api, "http://") {
		t.Errorf("second record = %+v, want the list request with all header values and the host", list)
	}
	if unknown.Path != "/v1/nope" || !unknown.Time.After(post.Time) {
		t.Errorf("third record = %+v, want /v1/nope, newest last", unknown)
	}

	// A request leaves the statistics just after its answer is sent.
	testkit.Eventually(t, "no request in flight", func() bool { return ts.stats(t).InFlight == 0 })
	s := ts.stats(t)
	want := statsSnapshot{
		RequestsTotal: 3,
		ByRoute:       map[string]int64{routeCreateScore: 1, routeGetScore: 0, routeUserScores: 1},
		MaxInFlight:   1,
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("stats = %+v, want %+v", s, want)
	}

	if resp := ts.do(t, http.MethodDelete, ts.admin+"/requests", nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /requests = %d, want 204", resp.StatusCode)
	}
	resp := ts.do(t, http.MethodGet, ts.admin+"/requests", nil, nil)
	decodeJSON(t, resp, http.StatusOK, &recs)
	if string(resp.body) != "[]\n" {
		t.Errorf("GET /requests after DELETE = %s, want []", resp.body)
	}
}
