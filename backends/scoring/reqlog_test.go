package main

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRequestLogRing(t *testing.T) {
	l := newRequestLog(3)
	paths := func() string {
		var out []string
		for _, rec := range l.list() {
			out = append(out, rec.Path)
		}
		return strings.Join(out, ",")
	}
	for i := range 5 {
		l.add(httptest.NewRequest("GET", fmt.Sprintf("/v1/%d", i), nil), time.Now())
		want := []string{"/v1/0", "/v1/0,/v1/1", "/v1/0,/v1/1,/v1/2", "/v1/1,/v1/2,/v1/3", "/v1/2,/v1/3,/v1/4"}[i]
		if got := paths(); got != want {
			t.Errorf("after %d adds: %s, want %s", i+1, got, want)
		}
	}
	l.clear()
	if got := l.list(); len(got) != 0 {
		t.Errorf("after clear: %+v, want none", got)
	}
	l.add(httptest.NewRequest("GET", "/v1/x", nil), time.Now())
	if got := paths(); got != "/v1/x" {
		t.Errorf("after clear and add: %s, want /v1/x", got)
	}
}
