package ratelimit

import (
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	cases := []struct {
		in   string
		want Rate
		err  string
	}{
		{"10/s", Rate{10, time.Second}, ""},
		{"100/m", Rate{100, time.Minute}, ""},
		{"1000/h", Rate{1000, time.Hour}, ""},
		{"5/d", Rate{5, 24 * time.Hour}, ""},
		{"5/10s", Rate{5, 10 * time.Second}, ""},
		{"90/1m30s", Rate{90, 90 * time.Second}, ""},
		{"10", Rate{}, "want <limit>/<window>"},
		{"0/s", Rate{}, "positive integer"},
		{"-1/s", Rate{}, "positive integer"},
		{"10/fortnight", Rate{}, "window"},
		{"10/500ms", Rate{}, "whole number of seconds"},
		{"10/1500ms", Rate{}, "whole number of seconds"},
	}
	for _, tc := range cases {
		got, err := ParseRate(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.in) {
				t.Errorf("ParseRate(%q) = %v, %v; want an error naming the value and %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if back, _ := ParseRate(got.String()); back != got {
			t.Errorf("%v does not round-trip through %q", got, got.String())
		}
	}
}
