package resilience

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"

	"github.com/lexiscore/gateway/internal/httpsig"
	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
	_ "github.com/lexiscore/gateway/modules/signing"
)

func TestStaleIfError(t *testing.T) {
	var failing atomic.Bool
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if failing.Load() {
			always(http.StatusServiceUnavailable)(w, r, n)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "s=1")
		_, _ = fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
	})
	in := start(t, site(be.addr(), "fallback {\n\t\t\tstale 1h\n\t\t}", "", "stale"))
	served := growth(fallbacks.With(map[string]string{"route": "stale", "kind": "stale"}))

	alice := http.Header{"Authorization": {"Bearer alice"}}
	if resp, body := send(t, http.MethodGet, in.URL("/v1/scores/1"), "fresh", alice); resp.StatusCode != http.StatusOK || resp.Header.Get("Warning") != "" {
		t.Fatalf("fresh: %d %q warning %q", resp.StatusCode, body, resp.Header.Get("Warning"))
	}
	failing.Store(true)
	resp, body := send(t, http.MethodGet, in.URL("/v1/scores/1"), "stale", alice)
	if resp.StatusCode != http.StatusOK || body != `{"path":"/v1/scores/1"}` {
		t.Fatalf("stale: %d %q, want the last good answer", resp.StatusCode, body)
	}
	if w := resp.Header.Get("Warning"); w != `110 - "Response is Stale"` {
		t.Errorf("Warning %q", w)
	}
	if resp.Header.Get("Age") == "" || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("stale headers: %v", resp.Header)
	}
	if n := be.requestsFor("stale"); n != 3 {
		t.Errorf("stale was served after %d attempts, want after all 3", n)
	}
	if n := served(); n != 1 {
		t.Errorf("gateway_fallbacks_total{kind=stale} = %v, want 1", n)
	}

	bob := http.Header{"Authorization": {"Bearer bob"}}
	if resp, _ := send(t, http.MethodGet, in.URL("/v1/scores/1"), "other-user", bob); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("another credential got %d: a stale answer must not cross credentials", resp.StatusCode)
	}
	if resp, _ := send(t, http.MethodGet, in.URL("/v1/scores/2"), "never-cached", alice); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("an uncached URL got %d, want the upstream's 503", resp.StatusCode)
	}
}

func TestStaticFallbackAndSecondaryUpstream(t *testing.T) {
	down := newBackend(t, always(http.StatusBadGateway))
	replica := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) { _, _ = w.Write([]byte("from replica")) })
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	route /static {
		resilience static {
			fallback {
				static 200 "{\"scores\":[],\"degraded\":true}"
			}
		}
		reverse_proxy %[1]s
	}
	route /replica {
		resilience replica {
			fallback {
				upstream %[2]s
				static 200 unused
			}
		}
		reverse_proxy %[1]s
	}
}`, down.addr(), replica.addr()))

	fromReplica := growth(fallbacks.With(map[string]string{"route": "replica", "kind": "upstream"}))
	resp, body := send(t, http.MethodGet, in.URL("/static"), "static", nil)
	if resp.StatusCode != http.StatusOK || body != `{"scores":[],"degraded":true}` || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("static fallback: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}
	resp, body = send(t, http.MethodPost, in.URL("/replica"), "replica", nil)
	if resp.StatusCode != http.StatusOK || body != "from replica" {
		t.Fatalf("secondary upstream: %d %q", resp.StatusCode, body)
	}
	if n := fromReplica(); n != 1 {
		t.Errorf("gateway_fallbacks_total{kind=upstream} = %v, want 1", n)
	}
}

// TestSecondaryUpstreamIsSigned pins that a secondary upstream which
// verifies signatures, as the scoring backend does, is reachable: its
// block takes the primary's signing transport. Without it, it refuses the
// fallback's requests with 401.
func TestSecondaryUpstreamIsSigned(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	verifier, err := httpsig.NewVerifier([]httpsig.Key{{ID: "k1", Secret: []byte(secret)}}, httpsig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var verified atomic.Int32
	replica := httptest.NewServer(httpsig.VerifyMiddleware(verifier, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		verified.Add(1)
		body, _ := io.ReadAll(r.Body)
		_, _ = fmt.Fprintf(w, "verified %d bytes", len(body))
	})))
	t.Cleanup(replica.Close)

	signed := fmt.Sprintf("transport signed {\n\t\t\tkey_id k1\n\t\t\tsecret_file %s\n\t\t}", secretFile)
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	route /signed/* {
		resilience replica_signed {
			fallback {
				upstream %[2]s {
					transport resilient {
						%[3]s
					}
				}
			}
		}
		reverse_proxy %[1]s {
			transport resilient {
				%[3]s
			}
		}
	}
	route /wrapped/* {
		resilience replica_wrapped {
			fallback {
				upstream %[2]s {
					%[3]s
				}
			}
		}
		reverse_proxy %[1]s
	}
	route /unsigned/* {
		resilience replica_unsigned {
			fallback {
				upstream %[2]s
			}
		}
		reverse_proxy %[1]s
	}
}`, caddytest.ClosedAddr(t), strings.TrimPrefix(replica.URL, "http://"), signed))
	fromReplica := growth(fallbacks.With(map[string]string{"route": "replica_signed", "kind": "upstream"}))

	resp, body := send(t, http.MethodGet, in.URL("/signed/v1/scores/1"), "get", nil)
	if resp.StatusCode != http.StatusOK || body != "verified 0 bytes" {
		t.Fatalf("GET, primary down: %d %q, want the signed secondary's 200", resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodPost, in.URL("/signed/v1/scores"), strings.NewReader(`{"audio_base64":"AAAA"}`))
	post, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	postBody, _ := io.ReadAll(post.Body)
	post.Body.Close()
	if post.StatusCode != http.StatusOK || string(postBody) != "verified 23 bytes" {
		t.Fatalf("POST, primary down: %d %q, want the signed secondary's 200 over the whole body", post.StatusCode, postBody)
	}
	if n := fromReplica(); n != 2 {
		t.Errorf("gateway_fallbacks_total{route=replica_signed,kind=upstream} = %v, want 2", n)
	}
	// A signing transport named without the resilient one gets wrapped in it.
	if resp, body := send(t, http.MethodGet, in.URL("/wrapped/v1/scores/1"), "wrapped", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("secondary with transport signed only: %d %q", resp.StatusCode, body)
	}
	if n := verified.Load(); n != 3 {
		t.Fatalf("the secondary verified %d requests, want 3", n)
	}

	resp, body = send(t, http.MethodGet, in.URL("/unsigned/v1/scores/1"), "unsigned", nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"reason":"unsigned"`) {
		t.Fatalf("secondary without the signing transport: %d %q, want its 401 unsigned", resp.StatusCode, body)
	}
}

func TestDegradedModeShedsHeavyRoutes(t *testing.T) {
	be := newBackend(t, nil)
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	handle_errors {
		problem
	}
	route /heavy {
		resilience heavy {
			shed_when_degraded
			retry_after 30s
		}
		reverse_proxy %[1]s
	}
	route /light {
		resilience light
		reverse_proxy %[1]s
	}
}`, be.addr()))

	admin := &DegradedAdmin{logger: zap.NewNop()}
	setDegraded := func(on bool) degradedStatus {
		t.Helper()
		body, _ := json.Marshal(map[string]bool{"enabled": on})
		rec := httptest.NewRecorder()
		if err := admin.serve(rec, httptest.NewRequest(http.MethodPost, "/degraded", bytes.NewReader(body))); err != nil {
			t.Fatal(err)
		}
		var st degradedStatus
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	t.Cleanup(func() { degraded.manual.Store(false) })
	shed := growth(concurrencyRejections.With(map[string]string{"route": "heavy", "reason": "degraded"}))

	if st := setDegraded(true); !st.Enabled || !st.Manual {
		t.Fatalf("after switching on: %+v", st)
	}
	if v := testkit.Value(degradedGauge); v != 1 {
		t.Errorf("gateway_degraded_mode = %v, want 1", v)
	}
	resp, body := send(t, http.MethodPost, in.URL("/heavy"), "heavy", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || problemType(t, resp, body) != "degraded" || resp.Header.Get("Retry-After") != "30" {
		t.Fatalf("heavy route in degraded mode: %d %q Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if be.requestsFor("heavy") != 0 {
		t.Fatal("a shed request reached the backend")
	}
	if resp, _ := send(t, http.MethodGet, in.URL("/light"), "light", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("light route in degraded mode: %d, want it served", resp.StatusCode)
	}

	if st := setDegraded(false); st.Enabled {
		t.Fatalf("after switching off: %+v", st)
	}
	if resp, _ := send(t, http.MethodPost, in.URL("/heavy"), "heavy-again", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("heavy route after degraded mode: %d", resp.StatusCode)
	}
	if n := shed(); n != 1 {
		t.Errorf("gateway_concurrency_rejections_total{reason=degraded} = %v, want 1", n)
	}

	rec := httptest.NewRecorder()
	err := admin.serve(rec, httptest.NewRequest(http.MethodPost, "/degraded", bytes.NewReader([]byte(`{"on":1}`))))
	if err == nil {
		t.Fatal("a body without \"enabled\" was accepted")
	}
}

func TestDegradedModeTripsWhenAllBreakersOpen(t *testing.T) {
	be := newBackend(t, always(http.StatusInternalServerError))
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	reverse_proxy %s {
		transport resilient {
			%s
			degrade_when_all_open
		}
	}
}`, be.addr(), fastBreaker))
	if degraded.active() {
		t.Fatal("degraded before any failure")
	}
	testkit.Eventually(t, "degraded mode", func() bool {
		send(t, http.MethodGet, in.URL("/x"), "fail", nil)
		return degraded.active()
	})
	testkit.Eventually(t, "degraded mode to end when the breaker may probe again", func() bool { return !degraded.active() })
}
