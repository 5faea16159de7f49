package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestBufferedLogsSurviveSIGTERM holds every access and audit line in the
// log buffers (an hour-long flush interval), stops the gateway the way an
// orchestrator does, and finds every line in its output.
func TestBufferedLogsSurviveSIGTERM(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, map[string]string{"GATEWAY_LOG_FLUSH_INTERVAL": "1h"})
	bearer := gw.Bearer(t, "sigterm-user", "free")
	const requests = 12
	var ids []string
	for i := range requests {
		id := fmt.Sprintf("sigterm-%02d", i)
		ids = append(ids, id)
		r := call(gw.Client, http.MethodGet, gw.BaseURL+"/v1/users/sigterm-user/scores", "", with(bearer, "X-Request-ID", id))
		if r.status != http.StatusOK {
			t.Fatalf("%s: status %d %s", id, r.status, r.body)
		}
	}
	if out := gw.Output(); strings.Contains(out, `"request_id":"sigterm-`) {
		t.Fatal("lines written before the flush interval or the flush size: the logs are not buffered")
	}
	gw.Stop()
	out := gw.Output()
	for _, id := range ids {
		for _, msg := range []string{"handled request", "authentication"} {
			if n := countLines(out, msg, id); n != 1 {
				t.Errorf("%d %q lines for %s after SIGTERM, want 1", n, msg, id)
			}
		}
	}
}

// countLines counts the JSON log lines with message msg and requestID.
func countLines(out, msg, requestID string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, `"msg":"`+msg+`"`) && strings.Contains(l, `"request_id":"`+requestID+`"`) {
			n++
		}
	}
	return n
}
