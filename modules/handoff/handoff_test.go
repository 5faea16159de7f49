// As the gateway's listeners (gateway/main.go).
//go:debug multipathtcp=0

package handoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
)

// listen opens a socket on addr as Caddy does on Linux: one per config,
// SO_REUSEPORT, in the port's reuseport group.
func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestCloseHandsQueuedConnectionsOver: connections queued on a socket that
// closes (accepted by the kernel, not yet by the server) reach the newest
// socket's server through the wrapper; without it the kernel resets them.
func TestCloseHandsQueuedConnectionsOver(t *testing.T) {
	for _, tc := range []struct {
		name       string
		wrap       func(net.Listener) net.Listener
		wantResets bool
	}{
		{"plain sockets", func(ln net.Listener) net.Listener { return ln }, true},
		{"handoff", (&ConnectionsWrapper{logger: zaptest.NewLogger(t)}).WrapListener, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := tc.wrap(listen(t, "127.0.0.1:0"))
			addr := old.Addr().String()
			var clients []net.Conn
			dial := func(n int) {
				for range n {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { c.Close() })
					clients = append(clients, c)
				}
			}
			// Queued on the old socket, which is alone: its server lags.
			dial(20)
			newer := tc.wrap(listen(t, addr))
			// While both are open, as during a reload.
			dial(20)
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}

			// The newest server echoes one line per connection.
			go func() {
				for {
					c, err := newer.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						b := make([]byte, 5)
						if _, err := io.ReadFull(c, b); err == nil {
							_, _ = c.Write(b)
						}
					}()
				}
			}()
			resets := 0
			for i, c := range clients {
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				_, err := fmt.Fprintf(c, "%05d", i)
				b := make([]byte, 5)
				if err == nil {
					_, err = io.ReadFull(c, b)
				}
				switch {
				case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
					resets++
				case err != nil:
					t.Fatalf("connection %d: %v", i, err)
				case string(b) != fmt.Sprintf("%05d", i):
					t.Fatalf("connection %d answered %q", i, b)
				}
			}
			if got := resets > 0; got != tc.wantResets {
				t.Fatalf("%d of %d connections reset, want resets: %v", resets, len(clients), tc.wantResets)
			}
			t.Logf("%d of %d connections reset", resets, len(clients))
		})
	}
}

// TestReloadResetsNoConnection: a real Caddy reloaded ten times while
// clients open a new connection for every request; every request is
// answered.
func TestReloadResetsNoConnection(t *testing.T) {
	const site = `http://127.0.0.1:{http_port} {
	respond "ok"
}`
	in := caddytest.Start(t, "servers {\n\t\tlistener_wrappers {\n\t\t\thandoff\n\t\t\ttls\n\t\t\thandoff_requests\n\t\t}\n\t}", site)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var answered atomic.Int64
	var mu sync.Mutex
	var failures []error
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(in.URL("/"))
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					continue
				}
				answered.Add(1)
			}
		})
	}
	for i := range 10 {
		testkit.Eventually(t, "traffic between reloads", func() error {
			if n := answered.Load(); n < int64(50*(i+1)) {
				return fmt.Errorf("%d answered", n)
			}
			return nil
		})
		in.Load(t, site)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d requests answered on fresh connections during 10 reloads", answered.Load())
	if len(failures) > 0 {
		t.Fatalf("%d requests failed, first: %v", len(failures), failures[0])
	}
}

func TestCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr bool
	}{
		{"servers {\n\t\tlistener_wrappers {\n\t\t\ttls\n\t\t}\n\t}", false},
		{"servers {\n\t\tlistener_wrappers {\n\t\t\thandoff now\n\t\t\ttls\n\t\t}\n\t}", true},
		{"servers {\n\t\tlistener_wrappers {\n\t\t\thandoff {\n\t\t\t\tdelay 1s\n\t\t\t}\n\t\t\ttls\n\t\t}\n\t}", true},
	} {
		_, err := caddytest.Adapt("{\n\t" + tc.in + "\n}\n:8080 {\n\trespond ok\n}\n")
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: error %v, want error: %v", tc.in, err, tc.wantErr)
		}
	}
}

// TestUnansweredConnectionHandedOver: a connection closed by a closing
// server goes to the newest server with the bytes read, only when the
// server answered nothing and the client is still there.
func TestUnansweredConnectionHandedOver(t *testing.T) {
	const req = "POST /v1/scores HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
	for _, tc := range []struct {
		name string
		// serve is what the closing server does before it closes.
		serve      func(t *testing.T, u net.Conn, client net.Conn)
		wantHanded bool
	}{
		{"read, no answer", func(t *testing.T, u, _ net.Conn) { readReq(t, u, len(req)) }, true},
		{"answered", func(t *testing.T, u, client net.Conn) {
			readReq(t, u, len(req))
			go func() { _, _ = io.Copy(io.Discard, client) }()
			if _, err := u.Write([]byte("HTTP/1.1 204 No Content\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"client gone mid-request", func(t *testing.T, u, client net.Conn) {
			readReq(t, u, 10)
			client.Close()
			if _, err := u.Read(make([]byte, 64)); err == nil {
				t.Fatal("read after the client closed succeeded")
			}
		}, false},
		{"nothing read", func(*testing.T, net.Conn, net.Conn) {}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rw := &RequestsWrapper{logger: zaptest.NewLogger(t)}
			old := rw.WrapListener(listen(t, "127.0.0.1:0")).(*listener)
			newer := rw.WrapListener(listen(t, old.Addr().String())).(*listener)
			t.Cleanup(func() { newer.Close() })
			server, client := net.Pipe()
			t.Cleanup(func() { client.Close() })
			go func() { _, _ = io.WriteString(client, req) }()
			u := newUnanswered(server, nil)
			old.adopt(u)
			tc.serve(t, u, client)
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}
			if err := u.Close(); err != nil {
				t.Fatal(err)
			}
			got := newer.nextHanded()
			if (got != nil) != tc.wantHanded {
				t.Fatalf("handed over: %v, want %v", got != nil, tc.wantHanded)
			}
			if got != nil {
				if b := readReq(t, got, len(req)); string(b) != req {
					t.Fatalf("the newest server read %q, want %q", b, req)
				}
			}
		})
	}
}

func readReq(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return b
}
