package resilience

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit"
)

func TestSlowBodyStreamsThroughUntouched(t *testing.T) {
	more := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path == "/" {
			return
		}
		_, _ = io.WriteString(w, "first;")
		_ = http.NewResponseController(w).Flush()
		<-more
		_, _ = io.WriteString(w, "second")
	})
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	resilience stream {
		timeout 1s
		retry 3
	}
	reverse_proxy %s {
		transport resilient
	}
}`, be.addr()))

	req, _ := http.NewRequest(http.MethodGet, in.URL("/stream"), nil)
	sent := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("first;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first;" {
		t.Fatalf("first chunk %q, %v: the response was held back", first, err)
	}
	// The stream outlives the timeout, which only bounds the wait for the
	// response to begin. The timeout is long enough for a busy machine to
	// begin the response; the wait is until it has certainly passed.
	time.Sleep(time.Until(sent.Add(1500 * time.Millisecond)))
	close(more)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second" {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

func TestWebSocketUpgradePassesThrough(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Header.Get("Upgrade") != "websocket" {
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		line, err := brw.ReadString('\n')
		if err == nil {
			_, _ = io.WriteString(conn, "echo "+line)
		}
	})
	in := start(t, fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	resilience ws {
		timeout 1s
		bulkhead 1
	}
	reverse_proxy %s {
		transport resilient
	}
}`, be.addr()))

	host := strings.TrimPrefix(in.URL(""), "http://")
	sent := time.Now()
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: "+host+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	// Once the route's timeout has certainly passed, the connection still
	// works.
	time.Sleep(time.Until(sent.Add(1500 * time.Millisecond)))
	_, _ = io.WriteString(conn, "hello\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo hello\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
}

func TestHedgedReadCancelsTheLoser(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 0 && r.URL.Path != "/" {
			blockUntilCanceled(w, r, n) // the first attempt is stuck
			return
		}
		_, _ = io.WriteString(w, "fast")
	})
	in := start(t, site(be.addr(), "hedge 50ms", "", "hedged"))
	hedged := growth(retries.With(map[string]string{"route": "hedged", "reason": "hedge"}))
	start := time.Now()
	resp, body := send(t, http.MethodGet, in.URL("/x"), "hedged", nil)
	if resp.StatusCode != http.StatusOK || body != "fast" {
		t.Fatalf("hedged read: %d %q", resp.StatusCode, body)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("hedged read took %v", elapsed)
	}
	if n := be.requestsFor("hedged"); n != 2 {
		t.Fatalf("%d attempts, want the first and one hedge", n)
	}
	testkit.Eventually(t, "the losing attempt canceled upstream", func() bool {
		_, _, canceled := be.stats()
		return canceled == 1
	})
	if n := hedged(); n != 1 {
		t.Errorf("gateway_retries_total{reason=hedge} = %v, want 1", n)
	}
}
