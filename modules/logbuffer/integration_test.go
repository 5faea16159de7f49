package logbuffer

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
)

// Access log lines wait in the buffer, and a reload that changes the log's
// output writes them out: nothing is lost when a config is replaced.
func TestReloadWritesOutTheBuffer(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	site := func(interval string) string {
		return fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	log {
		output buffered {
			flush_interval %s
			to file %s
		}
		format json
	}
	respond /hello "hi" 200
}`, interval, logFile)
	}
	in := caddytest.Start(t, "", site("1h"))
	lines := func() int {
		raw, _ := os.ReadFile(logFile)
		return strings.Count(string(raw), `"msg":"handled request"`)
	}
	before := lines()
	const requests = 5
	for range requests {
		resp, err := http.Get(in.URL("/hello"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if got := lines(); got != before {
		t.Fatalf("%d lines written within the hour-long interval, want them held", got-before)
	}
	in.Load(t, site("2h"))
	testkit.Eventually(t, "the held lines after the reload", func() error {
		if n := lines() - before; n < requests {
			return fmt.Errorf("%d access lines", n)
		}
		return nil
	})
	if got := lines() - before; got != requests {
		t.Errorf("%d access lines after the reload, want %d", got, requests)
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	cases := []struct {
		name, input string
		want        Buffered
		wantErr     string
	}{
		{name: "defaults", input: `buffered`, want: Buffered{}},
		{name: "all options", input: `buffered {
			flush_interval 250ms
			flush_size 32KiB
			max_buffer 8MiB
			to stdout
		}`, want: Buffered{FlushInterval: 250e6, FlushSize: 32 << 10, MaxBuffer: 8 << 20,
			WriterRaw: []byte(`{"output":"stdout"}`)}},
		{name: "nested file writer", input: `buffered {
			to file /var/log/x.log {
				roll_keep 3
			}
		}`, want: Buffered{WriterRaw: []byte(`{"filename":"/var/log/x.log","output":"file","roll_keep":3}`)}},
		{name: "bad size", input: "buffered {\n flush_size lots\n}", wantErr: `flush_size "lots"`},
		{name: "bad duration", input: "buffered {\n flush_interval soon\n}", wantErr: `flush_interval: bad duration "soon"`},
		{name: "unknown writer", input: "buffered {\n to nowhere\n}", wantErr: "nowhere"},
		{name: "two destinations", input: "buffered {\n to stdout\n to stderr\n}", wantErr: "only one destination"},
		{name: "unknown option", input: "buffered {\n colour red\n}", wantErr: `unrecognized output buffered option "colour"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got Buffered
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.FlushInterval != tc.want.FlushInterval || got.FlushSize != tc.want.FlushSize ||
				got.MaxBuffer != tc.want.MaxBuffer || string(got.WriterRaw) != string(tc.want.WriterRaw) {
				t.Errorf("got %+v (writer %s), want %+v (writer %s)", got, got.WriterRaw, tc.want, tc.want.WriterRaw)
			}
		})
	}
}
