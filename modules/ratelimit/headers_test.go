package ratelimit

import (
	"net/http"
	"testing"

	"github.com/dunglas/httpsfv"
)

func TestSetHeaders(t *testing.T) {
	burst := State{Policy: "burst", Limit: 10, Window: 1, Known: true, Remaining: 3, Reset: 1}
	sustained := State{Policy: "sustained", Limit: 100, Window: 60, Known: true, Remaining: 50, Reset: 40}
	reached := func(s State, reset int64) State {
		s.Remaining, s.Reached, s.Reset = 0, true, reset
		return s
	}
	cases := []struct {
		name string
		d    Decision
		want map[string]string // "" means absent
	}{
		{
			name: "allowed: the tightest policy is the one with fewest left",
			d:    Decision{States: []State{burst, sustained}},
			want: map[string]string{
				"RateLimit-Policy":      `"burst";q=10;w=1, "sustained";q=100;w=60`,
				"RateLimit":             `"burst";r=3;t=1, "sustained";r=50;t=40`,
				"X-RateLimit-Limit":     "10",
				"X-RateLimit-Remaining": "3",
				"X-RateLimit-Reset":     "1",
			},
		},
		{
			name: "denied by sustained: it is the tightest though burst has fewer left",
			d:    Decision{Outcome: Denied, States: []State{{Policy: "burst", Limit: 10, Window: 1, Known: true, Remaining: 0, Reset: 1}, reached(sustained, 40)}},
			want: map[string]string{
				"RateLimit":             `"burst";r=0;t=1, "sustained";r=0;t=40`,
				"X-RateLimit-Limit":     "100",
				"X-RateLimit-Remaining": "0",
				"X-RateLimit-Reset":     "40",
			},
		},
		{
			name: "both over: the longer wait",
			d:    Decision{Outcome: Denied, States: []State{reached(burst, 1), reached(sustained, 7)}},
			want: map[string]string{"X-RateLimit-Limit": "100", "X-RateLimit-Reset": "7"},
		},
		{
			name: "equal remaining: the later reset",
			d: Decision{States: []State{
				{Policy: "a", Limit: 5, Window: 1, Known: true, Remaining: 2, Reset: 1},
				{Policy: "b", Limit: 9, Window: 60, Known: true, Remaining: 2, Reset: 30},
			}},
			want: map[string]string{"X-RateLimit-Limit": "9", "X-RateLimit-Reset": "30"},
		},
		{
			name: "store unavailable: quotas only",
			d: Decision{Outcome: Unavailable, States: []State{
				{Policy: "burst", Limit: 10, Window: 1}, {Policy: "sustained", Limit: 100, Window: 60},
			}},
			want: map[string]string{
				"RateLimit-Policy":      `"burst";q=10;w=1, "sustained";q=100;w=60`,
				"RateLimit":             "",
				"X-RateLimit-Limit":     "",
				"X-RateLimit-Remaining": "",
				"X-RateLimit-Reset":     "",
			},
		},
		{
			name: "failed open: the emergency policy",
			d:    Decision{FailedOpen: true, States: []State{{Policy: EmergencyPolicy, Limit: 5, Window: 1, Known: true, Remaining: 4, Reset: 1}}},
			want: map[string]string{
				"RateLimit-Policy": `"emergency";q=5;w=1`,
				"RateLimit":        `"emergency";r=4;t=1`,
			},
		},
		{
			name: "no decision: no fields",
			d:    Decision{},
			want: map[string]string{"RateLimit-Policy": "", "RateLimit": "", "X-RateLimit-Limit": ""},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			SetHeaders(h, tc.d)
			for k, want := range tc.want {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			// Both fields must be valid structured-field lists, serialized
			// canonically.
			for _, k := range []string{"RateLimit-Policy", "RateLimit"} {
				v := h.Get(k)
				if v == "" {
					continue
				}
				list, err := httpsfv.UnmarshalList([]string{v})
				if err != nil {
					t.Fatalf("%s %q is not a structured-field list: %v", k, v, err)
				}
				if again, _ := httpsfv.Marshal(list); again != v {
					t.Errorf("%s %q is not in canonical form %q", k, v, again)
				}
			}
		})
	}
}
