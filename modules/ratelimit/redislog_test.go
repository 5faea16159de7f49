package ratelimit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit/caddytest"
)

// A Redis that refuses connections makes go-redis log "failed to dial": the
// line must reach Caddy's JSON log as a structured entry of logger "redis".
func TestRedisLogLinesGoThroughTheStructuredLogger(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	t.Setenv("RATELIMIT_TEST_REDIS_URL", "redis://"+caddytest.ClosedAddr(t))
	in := caddytest.Start(t, fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t}", logFile), redisSite("ok", "", ""))

	deadline := time.Now().Add(20 * time.Second)
	for {
		get(t, in.URL("/v1/x"), "alice")
		if entry, ok := redisEntry(t, logFile); ok {
			if entry["level"] != "warn" || !strings.Contains(fmt.Sprint(entry["msg"]), "failed to dial") {
				t.Fatalf("go-redis's entry %v, want a warning saying it failed to dial", entry)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no entry of logger redis in the JSON log")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// redisEntry returns the first entry of logger "redis" in the JSON log file.
// Every line must be JSON: a plain-text line fails the test.
func redisEntry(t *testing.T, path string) (map[string]any, bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var entry map[string]any
		if err := json.Unmarshal(sc.Bytes(), &entry); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		if entry["logger"] == "redis" {
			return entry, true
		}
	}
	return nil, false
}
