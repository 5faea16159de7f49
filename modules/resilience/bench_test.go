package resilience

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/lexiscore/gateway/internal/testkit/caddytest"
)

// BenchmarkOverhead compares, in one run against one backend, a route with
// Caddy's plain reverse_proxy and the same route with the resilience
// handler (timeouts, retries, stale cache) and the resilient transport and
// selection policy, on a healthy backend.
func BenchmarkOverhead(b *testing.B) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"s1","score":87.5,"fluency":80.1,"pronunciation":90.2}`)
	}))
	b.Cleanup(be.Close)
	addr := be.Listener.Addr().String()
	in := caddytest.Start(b, "", fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	route /plain/* {
		reverse_proxy %[1]s
	}
	route /resilient/* {
		resilience bench {
			timeout 5s
			attempt_timeout 2s
			retry 3
			fallback {
				stale 1h
			}
		}
		reverse_proxy %[1]s {
			lb_policy resilient
			lb_retries 2
			transport resilient
		}
	}
}`, addr))
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	for _, name := range []string{"plain", "resilient"} {
		url := in.URL("/" + name + "/scores/s1")
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
