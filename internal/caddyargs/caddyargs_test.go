package caddyargs

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// at returns a dispenser on the option token of "opt args...".
func at(input string) *caddyfile.Dispenser {
	d := caddyfile.NewTestDispenser(input)
	d.Next()
	return d
}

func TestSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"max_body 1MiB", 1 << 20, true},
		{"max_body 512", 512, true},
		{"max_body 0", 0, false},
		{"max_body lots", 0, false},
		{"max_body", 0, false},
		{"max_body 1MiB 2MiB", 0, false},
	}
	for _, tc := range cases {
		var got int64
		err := Size(at(tc.in), &got)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%q: got %d, %v", tc.in, got, err)
		}
	}
}

func TestIntAtLeast(t *testing.T) {
	cases := []struct {
		in   string
		want int
		ok   bool
	}{
		{"cache_size 1", 1, true},
		{"cache_size 0", -1, false},
		{"cache_size -5", -1, false},
		{"cache_size many", -1, false},
		{"cache_size", -1, false},
	}
	for _, tc := range cases {
		got := -1
		err := IntAtLeast(at(tc.in), 1, &got)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%q: got %d, %v", tc.in, got, err)
		}
	}
	err := IntAtLeast(at("cache_size 0"), 1, new(int))
	if err == nil || !strings.Contains(err.Error(), `cache_size "0": want a whole number of at least 1`) {
		t.Errorf("error %v: want one naming the option, the value and the bound", err)
	}
}

func TestNumbersAndDurations(t *testing.T) {
	var dur caddy.Duration
	if err := Duration(at("timeout 250ms"), &dur); err != nil || time.Duration(dur) != 250*time.Millisecond {
		t.Errorf("duration: %v, %v", dur, err)
	}
	if err := Duration(at("timeout soon"), &dur); err == nil {
		t.Error("bad duration accepted")
	}
	var n int
	if err := Int(at("max 3"), &n); err != nil || n != 3 {
		t.Errorf("int: %d, %v", n, err)
	}
	if err := Int(at("max three"), &n); err == nil {
		t.Error("bad int accepted")
	}
	var f float64
	if err := Float(at("ratio 0.75"), &f); err != nil || f != 0.75 {
		t.Errorf("float: %v, %v", f, err)
	}
	if err := Float(at("ratio"), &f); err == nil {
		t.Error("missing float accepted")
	}
}

func TestPositiveDuration(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"timeout 50ms", 50 * time.Millisecond, true},
		{"timeout 0", 0, false},
		{"timeout -1s", 0, false},
		{"timeout soon", 0, false},
		{"timeout", 0, false},
	}
	for _, tc := range cases {
		var got caddy.Duration
		err := PositiveDuration(at(tc.in), "timeout", &got)
		if (err == nil) != tc.ok || (tc.ok && time.Duration(got) != tc.want) {
			t.Errorf("%q: got %v, %v", tc.in, time.Duration(got), err)
		}
		if err != nil && !strings.Contains(err.Error(), "timeout") {
			t.Errorf("%q: error %v does not name the option", tc.in, err)
		}
	}
}

func TestNoArgs(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr string
	}{
		{"handoff", ""},
		{"handoff now", "wrong argument count"},
		{"handoff {\n\tdelay 1s\n}", `handoff: unknown subdirective "delay"`},
	} {
		err := NoArgs(caddyfile.NewTestDispenser(tc.in))
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.wantErr)
		}
	}
}
