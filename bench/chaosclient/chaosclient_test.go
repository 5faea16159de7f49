package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0)

func rec(startMS, durMS int, status int, outcome, problem string) record {
	return record{start: t0.Add(time.Duration(startMS) * time.Millisecond), duration: time.Duration(durMS) * time.Millisecond,
		status: status, outcome: outcome, problem: problem}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []record{rec(5, 12, 200, outcomeOK, ""), rec(7, 3, 503, outcomeOK, "circuit-open"), rec(9, 30000, 0, outcomeTimeout, "")} {
		got, err := parseRecord(r.String())
		if err != nil {
			t.Fatal(err)
		}
		if !got.start.Equal(r.start) || got.duration != r.duration || got.status != r.status || got.outcome != r.outcome || got.problem != r.problem {
			t.Fatalf("%q read back as %+v, want %+v", r.String(), got, r)
		}
	}
	if _, err := parseRecord("1 2 200 ok"); err == nil {
		t.Fatal("a line of 4 fields was accepted")
	}
}

func TestSummarize(t *testing.T) {
	recs := []record{
		rec(0, 10, 200, outcomeOK, ""),
		rec(100, 20, 200, outcomeOK, ""),
		rec(200, 2, 503, outcomeOK, "circuit-open"),
		rec(300, 3, 503, outcomeOK, "circuit-open"),
		rec(400, 4, 502, outcomeOK, ""),
		rec(500, 50, 0, outcomeError, ""),
		rec(600, 900, 0, outcomeTimeout, ""),
		rec(700, 400, 200, outcomeOK, ""), // ends at 1100
		rec(800, 30, 201, outcomeOK, ""),  // ends at 830: the first 2xx after 650
	}
	tests := []struct {
		name           string
		from, to, rcvy int // ms after t0; -1: unset
		want           map[string]float64
	}{
		{"whole log", -1, -1, -1, map[string]float64{
			"sent": 9, "2xx": 4, "5xx": 3, "4xx": 0, "errors": 1, "timeouts": 1, "lost": 2,
			"code_503": 2, "code_502": 1, "p50_ms": 20, "max_ms": 900, "problem_pct": 200.0 / 3,
		}},
		{"outage slice", 200, 500, -1, map[string]float64{
			"sent": 3, "2xx": 0, "5xx": 3, "lost": 0, "ok_pct": 0, "p99_ms": 4, "problem_pct": 200.0 / 3,
		}},
		{"recovery", 700, -1, 650, map[string]float64{"sent": 2, "ok_pct": 100, "problem_pct": 100, "recover_s": 0.18}},
	}
	at := func(ms int) time.Time {
		if ms < 0 {
			return time.Time{}
		}
		return t0.Add(time.Duration(ms) * time.Millisecond)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := summarize(recs, at(tc.from), at(tc.to), at(tc.rcvy))
			for k, v := range tc.want {
				if got, ok := s.values[k]; !ok || got < v-1e-9 || got > v+1e-9 {
					t.Errorf("%s = %v (present %v), want %v; line: %s", k, got, ok, v, s)
				}
			}
		})
	}
	if _, ok := summarize(recs[:7], time.Time{}, time.Time{}, at(650)).values["recover_s"]; ok {
		t.Fatal("recover_s reported without a 2xx after the recovery time")
	}
}

func TestInFlightAt(t *testing.T) {
	recs := []record{rec(0, 100, 200, outcomeOK, ""), rec(10, 20, 200, outcomeOK, ""), rec(40, 200, 0, outcomeError, ""), rec(60, 5, 200, outcomeOK, "")}
	if got := summarizeAt(recs, time.Time{}, time.Time{}, time.Time{}, t0.Add(50*time.Millisecond)).values["in_flight_at"]; got != 2 {
		t.Fatalf("in_flight_at = %v, want 2 (the first and the third request)", got)
	}
	if _, ok := summarize(recs, time.Time{}, time.Time{}, time.Time{}).values["in_flight_at"]; ok {
		t.Fatal("in_flight_at reported without -at")
	}
}

func TestCheck(t *testing.T) {
	s := summarize([]record{rec(0, 10, 200, outcomeOK, ""), rec(5, 0, 0, outcomeError, "")}, time.Time{}, time.Time{}, t0)
	tests := []struct {
		want  string
		unmet int
	}{
		{"lost==0", 1},
		{"lost<=1, sent>=2, ok_pct==50", 0},
		{"code_503==0,code_200>0", 0},
		{"recover_s<1", 0},
		{"p99_ms<5", 1},
		{"lost!=1,sent<2,sent>2", 3},
		{"", 0},
	}
	for _, tc := range tests {
		unmet, err := s.check(tc.want)
		if err != nil || len(unmet) != tc.unmet {
			t.Errorf("check(%q) = %q, %v: want %d unmet", tc.want, unmet, err, tc.unmet)
		}
	}
	if unmet, _ := summarize(nil, time.Time{}, time.Time{}, t0).check("recover_s<=5"); len(unmet) != 1 {
		t.Errorf("no recovery passed recover_s<=5: %q", unmet)
	}
	for _, bad := range []string{"lost", "lost==x", "lost=0"} {
		if _, err := s.check(bad); err == nil {
			t.Errorf("check(%q) accepted", bad)
		}
	}
}

func TestOnly(t *testing.T) {
	s := summarize([]record{rec(0, 10, 200, outcomeOK, ""), rec(5, 3, 503, outcomeOK, "")}, time.Time{}, time.Time{}, time.Time{})
	if got, want := s.only([]string{"sent", "ok_pct", "p99_ms", "recover_s"}), "sent=2 ok_pct=50 p99_ms=10 recover_s=none"; got != want {
		t.Fatalf("only = %q, want %q", got, want)
	}
}

func TestProblemType(t *testing.T) {
	tests := []struct{ ct, body, want string }{
		{"application/problem+json", `{"type":"https://lexiscore.example/problems#circuit-open"}`, "circuit-open"},
		{"application/problem+json; charset=utf-8", `{"type":"https://x.example/probs/too-many"}`, "too-many"},
		{"application/problem+json", `not json`, "about:blank"},
		{"application/json", `{"type":"x#y"}`, ""},
		{"", ``, ""},
	}
	for _, tc := range tests {
		if got := problemType(tc.ct, []byte(tc.body)); got != tc.want {
			t.Errorf("problemType(%q, %q) = %q, want %q", tc.ct, tc.body, got, tc.want)
		}
	}
}

func TestSumMetric(t *testing.T) {
	scrape := `# TYPE gateway_upstream_requests_total counter
gateway_upstream_requests_total{code_class="2xx",upstream="a"} 3
gateway_upstream_requests_total{code_class="5xx",upstream="a"} 4
gateway_upstream_requests_total{code_class="2xx",upstream="b"} 5
# TYPE gateway_upstream_duration_seconds histogram
gateway_upstream_duration_seconds_bucket{upstream="a",le="+Inf"} 7
gateway_upstream_duration_seconds_sum{upstream="a"} 1
gateway_upstream_duration_seconds_count{upstream="a"} 7
`
	tests := []struct {
		name string
		sel  []string
		want float64
	}{
		{"gateway_upstream_requests_total", nil, 12},
		{"gateway_upstream_requests_total", []string{"upstream=a"}, 7},
		{"gateway_upstream_requests_total", []string{"upstream=a", "code_class=2xx"}, 3},
		{"gateway_upstream_requests_total", []string{"upstream=c"}, 0},
		{"gateway_upstream_requests_total", []string{"route=x"}, 0},
		{"gateway_not_there_total", nil, 0},
	}
	for _, tc := range tests {
		got, err := sumMetric(strings.NewReader(scrape), tc.name, tc.sel)
		if err != nil || got != tc.want {
			t.Errorf("sumMetric(%s, %v) = %v, %v: want %v", tc.name, tc.sel, got, err, tc.want)
		}
	}
	if _, err := sumMetric(strings.NewReader(scrape), "gateway_upstream_duration_seconds", nil); err == nil {
		t.Error("a histogram was summed")
	}
}

// TestLoadCountsEveryRequest: against a server that answers 200, a problem
// 503, or drops the connection in turn, every request is in the log once,
// with what it got. A POST with an Idempotency-Key (unique per request) is
// resent by Go's client when its kept-alive connection closed under it; one
// without is lost, which is what the reload scenario tells apart.
func TestLoadCountsEveryRequest(t *testing.T) {
	tests := []struct {
		key  string
		want string
	}{
		{"", "sent==30,errors>=1,problem_pct==100"},
		{"k", "sent==30,lost==0,code_503>=1,problem_pct==100"},
	}
	for _, tc := range tests {
		t.Run("key="+tc.key, func(t *testing.T) {
			var n atomic.Int64
			keys := make(chan string, 100)
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				keys <- r.Header.Get("Idempotency-Key")
				switch n.Add(1) % 3 {
				case 0:
					w.Header().Set("Content-Type", "application/problem+json")
					w.WriteHeader(http.StatusServiceUnavailable)
					w.Write([]byte(`{"type":"https://x.example/problems#overloaded"}`))
				case 1:
					w.Write([]byte("ok"))
				default:
					c, _, _ := http.NewResponseController(w).Hijack()
					c.Close()
				}
			}))
			defer srv.Close()
			cfg := loadConfig{url: srv.URL, method: http.MethodPost, body: "x", headers: http.Header{}, idempotencyKey: tc.key,
				workers: 1, count: 30, timeout: 10 * time.Second, http1: true}
			var log bytes.Buffer
			load(newClient(cfg), cfg, &log)
			recs, err := readRecords(&log)
			if err != nil {
				t.Fatal(err)
			}
			s := summarize(recs, time.Time{}, time.Time{}, time.Time{})
			if unmet, _ := s.check(tc.want); len(unmet) > 0 {
				t.Fatalf("unmet %q: %s", unmet, s)
			}
			if s.values["2xx"]+s.values["5xx"]+s.values["lost"] != 30 {
				t.Fatalf("answers and losses do not add up to 30: %s", s)
			}
			close(keys)
			requests := map[string]int{}
			for k := range keys {
				requests[k]++
			}
			if tc.key == "" {
				return
			}
			// A resent request arrives twice with its key; 30 keys in all.
			if len(requests) != 30 {
				t.Fatalf("%d distinct Idempotency-Keys for 30 requests: %v", len(requests), requests)
			}
		})
	}
}

// TestScriptsParse keeps bench/chaos.sh and the scripts it sources from
// rotting between runs of the whole matrix, which make test does not run:
// each parses, and each with a #! line (make runs them) is executable.
func TestScriptsParse(t *testing.T) {
	scripts, _ := filepath.Glob("../*.sh")
	if len(scripts) == 0 {
		t.Fatal("no bench scripts found")
	}
	for _, s := range scripts {
		if out, err := exec.Command("bash", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", s, err, out)
		}
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(s)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.HasPrefix(b, []byte("#!")) && fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s starts with #! but is not executable", s)
		}
	}
}
