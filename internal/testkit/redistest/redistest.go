// Package redistest runs a throwaway redis-server for a test: on a port
// chosen at run time, bound to loopback, with persistence off, and killed
// when the test ends. Tests can kill, restart (on the same port), pause and
// resume it to play outages.
package redistest

import (
	"context"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lexiscore/gateway/internal/testkit"
)

// Server is a redis-server process owned by one test.
type Server struct {
	// Addr is 127.0.0.1:<port>; it stays the same across Restart.
	Addr string

	bin, dir string
	// args are redis-server's arguments, the same on every (re)start.
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *logBuffer
}

// Start runs redis-server and waits until it answers PING. The test is
// skipped when redis-server is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	return startServer(t, "redis-server")
}

// startServer runs redis-server with the usual throwaway settings and extra
// arguments; name tells the servers of a cluster apart in a failed test's log.
func startServer(t testing.TB, name string, extra ...string) *Server {
	t.Helper()
	s := newServer(t, name)
	_, port, _ := net.SplitHostPort(s.Addr)
	s.args = append([]string{
		"--port", port, "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"}, extra...)
	s.start(t)
	return s
}

// newServer prepares a server on a free port, killed when the test ends;
// the caller sets its arguments and starts it.
func newServer(t testing.TB, name string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skipf("redis-server is not installed: %v", err)
	}
	s := &Server{Addr: testkit.FreeAddr(t), bin: bin, dir: t.TempDir(), out: &logBuffer{}}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("--- %s %s output ---\n%s", name, s.Addr, s.out.String())
		}
	})
	return s
}

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr }

func (s *Server) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	client := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer client.Close()
	testkit.Eventually(t, "redis-server on "+s.Addr+" to answer PING", func() error {
		select {
		case <-done:
			t.Fatalf("redis-server exited at start-up:\n%s", s.out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return client.Ping(ctx).Err()
	})
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it to
// exit; all its data is lost. Calling it on a stopped server is harmless.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Restart starts a fresh, empty server on the same port after Kill.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	s.start(t)
}

// Pause stops the server (SIGSTOP) without closing its connections: the
// kernel still accepts connections and buffers commands, but nothing is
// answered, as with a hung or overloaded Redis.
func (s *Server) Pause(t testing.TB) { s.signal(t, syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume(t testing.TB) { s.signal(t, syscall.SIGCONT) }

func (s *Server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling redis-server (%v): %v", sig, err)
	}
}

// Client returns a client of the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// logBuffer collects the server's output, written by the process's copier
// goroutines and read by the test.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
