package framing

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit"
)

// countingListener counts the bytes its connections read.
type countingListener struct {
	net.Listener
	read atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, read: &l.read}, nil
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// slowServer serves, through the wrapper, /slow once release is closed and
// anything else at once; entered receives each /slow request as it starts.
func slowServer(t *testing.T) (srv *http.Server, ln *countingListener, entered chan struct{}, release chan struct{}) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = &countingListener{Listener: raw}
	entered, release = make(chan struct{}, 4), make(chan struct{})
	srv = &http.Server{
		ReadHeaderTimeout: answerTimeout,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				entered <- struct{}{}
				<-release
			}
			_, _ = w.Write([]byte(r.URL.Path))
		}),
	}
	wrapped := &listener{Listener: ln, headTimeout: answerTimeout, refused: func(r string) { t.Errorf("refused %s", r) }}
	go func() { _ = srv.Serve(wrapped) }()
	t.Cleanup(func() { _ = srv.Close() })
	return srv, ln, entered, release
}

// sendSlow sends a request for /slow on a new connection and returns once
// the handler has it.
func sendSlow(t *testing.T, addr string, entered chan struct{}) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(answerTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	<-entered
	return conn
}

// awaitAnswer reads one answer and its body from br.
func awaitAnswer(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestHeadHeldAcrossAbortedRead: while a request is served, net/http reads
// the connection in the background and, when the handler is done, aborts
// that read through a read deadline in the past. A next head the wrapper
// was holding then survives, and is served once the rest of it arrives.
func TestHeadHeldAcrossAbortedRead(t *testing.T) {
	_, ln, entered, release := slowServer(t)
	first, half := "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n", "GET /fast HTTP/1.1\r\nHo"
	conn := sendSlow(t, ln.Addr().String(), entered)
	if _, err := conn.Write([]byte(half)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the background read to take the half head", func() bool {
		return ln.read.Load() == int64(len(first+half))
	})
	close(release)
	br := bufio.NewReader(conn)
	if resp, body := awaitAnswer(t, br); resp.StatusCode != http.StatusOK || body != "/slow" {
		t.Fatalf("first answer: %d %q", resp.StatusCode, body)
	}
	if _, err := conn.Write([]byte("st: h\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if resp, body := awaitAnswer(t, br); resp.StatusCode != http.StatusOK || body != "/fast" {
		t.Fatalf("second answer: %d %q", resp.StatusCode, body)
	}
}

// TestShutdownFinishesRequestInFlight: a server shutting down (a reload, a
// stop) through the wrapper answers the request it is serving in full,
// closes the connection after it, and returns without waiting for its
// deadline: the wrapper neither stalls nor cuts a connection net/http drains.
func TestShutdownFinishesRequestInFlight(t *testing.T) {
	srv, ln, entered, release := slowServer(t)
	conn := sendSlow(t, ln.Addr().String(), entered)
	ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown(ctx) }()
	testkit.Eventually(t, "the listener to close", func() bool {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	br := bufio.NewReader(conn)
	if resp, body := awaitAnswer(t, br); resp.StatusCode != http.StatusOK || body != "/slow" || !resp.Close {
		t.Fatalf("answer during shutdown: %d %q, close %v", resp.StatusCode, body, resp.Close)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the connection stays open after the shutdown")
	}
}

// TestPlainHTTPOnTLSPortAnswered: a client speaking plain HTTP to the TLS
// port gets net/http's 400 saying so, as without the wrapper (net/http
// answers it only for a connection it sees as a *tls.Conn).
func TestPlainHTTPOnTLSPortAnswered(t *testing.T) {
	certs := httptest.NewTLSServer(http.NotFoundHandler())
	cfg := certs.TLS.Clone()
	certs.Close()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		_ = srv.Serve(&listener{Listener: tls.NewListener(raw, cfg), headTimeout: answerTimeout, refused: func(string) {}})
	}()
	t.Cleanup(func() { _ = srv.Close() })
	conn, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(answerTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(conn)
	if !strings.HasPrefix(string(answer), "HTTP/1.0 400 Bad Request") || !strings.Contains(string(answer), "HTTP request to an HTTPS server") {
		t.Fatalf("plain HTTP on the TLS port: %q, %v", answer, err)
	}
}
