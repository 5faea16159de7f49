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

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
)

// A Redis that refuses connections makes go-redis log "failed to dial": the
// line must reach Caddy's JSON log as a structured entry of logger "redis".
func TestRedisLogLinesGoThroughTheStructuredLogger(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	t.Setenv("RATELIMIT_TEST_REDIS_URL", "redis://"+caddytest.ClosedAddr(t))
	in := caddytest.Start(t, fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t}", logFile), redisSite("ok", "", ""))

	var entry map[string]any
	testkit.Eventually(t, "an entry of logger redis in the JSON log", func() bool {
		get(t, in.URL("/v1/x"), "alice")
		var ok bool
		entry, ok = redisEntry(t, logFile)
		return ok
	})
	if entry["level"] != "warn" || !strings.Contains(fmt.Sprint(entry["msg"]), "failed to dial") {
		t.Fatalf("go-redis's entry %v, want a warning saying it failed to dial", entry)
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
