// Package logbuffer provides the log writer `buffered`: it collects log lines
// in memory and hands them to another writer (stdout, stderr, a file, ...) in
// batches, so that a busy gateway makes one write(2) per batch instead of one
// per access-log and audit line. Envoy's file access logs and Traefik's
// bufferingSize do the same. It also provides the log format `deferred`
// (deferred.go), which spares logs the encoding of lines they never write.
package logbuffer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/lexiscore/gateway/internal/telemetry"
)

func init() {
	caddy.RegisterModule(Buffered{})
}

// Buffered is a log writer (caddy.logging.writers.buffered) that batches lines
// in memory and writes them to the writer it wraps every flush_interval, or as
// soon as flush_size bytes are waiting, whichever comes first.
//
// Requests never wait for the destination: they append to the buffer, and a
// background goroutine does the writing. When no loaded config uses a buffer
// any more — a stop, or a reload that changed the log's settings — it writes
// out everything it holds, and lines logged after that go straight to the
// destination, so a SIGTERM loses nothing; a SIGKILL loses at most
// flush_interval's worth of lines. Buffers live in a caddy.UsagePool keyed by
// destination and settings, so a reload that keeps them keeps the buffer.
//
// When the destination is slower than the log (a stalled pipe, a full disk),
// at most max_buffer bytes wait; lines beyond that are dropped and counted in
// gateway_log_dropped_lines_total{reason="buffer_full"} rather than stalling
// every request, and lines the destination refused are counted with
// reason="write_error".
type Buffered struct {
	// FlushInterval is the longest a line waits in memory before it is
	// written. Default 100ms. Longer means fewer, larger writes, and more
	// lines lost if the process is killed without a chance to flush.
	FlushInterval caddy.Duration `json:"flush_interval,omitempty"`

	// FlushSize is how many bytes may wait before they are written without
	// waiting for the interval. Default 65536 (64 KiB, Envoy's default).
	FlushSize int64 `json:"flush_size,omitempty"`

	// MaxBuffer is the most bytes held while the destination falls behind;
	// lines that do not fit are dropped and counted. Default 4194304 (4 MiB,
	// a few thousand requests' worth of lines). At least flush_size. The
	// writer keeps two buffers (one filling, one being written), so its
	// memory stays below twice this.
	MaxBuffer int64 `json:"max_buffer,omitempty"`

	// WriterRaw is the destination the batches are written to. Default
	// stderr, like every Caddy log.
	WriterRaw json.RawMessage `json:"writer,omitempty" caddy:"namespace=caddy.logging.writers inline_key=output"`

	dest caddy.WriterOpener
	key  string
}

// buffers holds the open buffers, one per WriterKey, counted by the loaded
// configs that use them. Caddy's own pool of log writers cannot do this: in
// Caddy 2.11 it never releases a writer (Logging.openLogs registers its
// cleanup on a copy of the config's context), so a writer of its own would
// never be flushed at a stop. current maps each key to its latest buffer,
// which the handles Caddy keeps write to.
var (
	buffers = caddy.NewUsagePool()
	current sync.Map
)

const (
	defaultFlushInterval = 100 * time.Millisecond
	defaultFlushSize     = 64 << 10
	defaultMaxBuffer     = 4 << 20
)

// CaddyModule returns the Caddy module information.
func (Buffered) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.writers.buffered",
		New: func() caddy.Module { return new(Buffered) },
	}
}

// Provision loads the destination writer, applies the defaults, registers
// the metric and opens the buffer, or takes the one a previous config opened
// with the same settings.
func (b *Buffered) Provision(ctx caddy.Context) error {
	if b.WriterRaw != nil {
		mod, err := ctx.LoadModule(b, "WriterRaw")
		if err != nil {
			return fmt.Errorf("loading the destination of the buffered log writer: %w", err)
		}
		b.dest = mod.(caddy.WriterOpener)
	}
	if b.dest == nil {
		b.dest = caddy.StderrWriter{}
	}
	if b.FlushInterval == 0 {
		b.FlushInterval = caddy.Duration(defaultFlushInterval)
	}
	if b.FlushSize == 0 {
		b.FlushSize = defaultFlushSize
	}
	if b.MaxBuffer == 0 {
		b.MaxBuffer = max(defaultMaxBuffer, b.FlushSize)
	}
	if err := b.Validate(); err != nil {
		return err
	}
	if err := telemetry.Register(ctx.GetMetricsRegistry(), droppedLines); err != nil {
		return fmt.Errorf("registering the buffered log writer's metrics: %w", err)
	}
	b.key = fmt.Sprintf("buffered:%s:%d:%d:%s", time.Duration(b.FlushInterval), b.FlushSize, b.MaxBuffer, b.dest.WriterKey())
	_, _, err := buffers.LoadOrNew(b.key, func() (caddy.Destructor, error) {
		dest, err := b.dest.OpenWriter()
		if err != nil {
			return nil, fmt.Errorf("opening %s for the buffered log writer: %w", b.dest, err)
		}
		w := newWriter(dest, b.dest.String(), time.Duration(b.FlushInterval), int(b.FlushSize), int(b.MaxBuffer))
		current.Store(b.key, w)
		return w, nil
	})
	return err
}

// Validate checks the sizes and the interval.
func (b *Buffered) Validate() error {
	if b.FlushInterval < 0 {
		return fmt.Errorf("buffered log writer: flush_interval %s: want a positive duration", time.Duration(b.FlushInterval))
	}
	if b.FlushSize < 0 {
		return fmt.Errorf("buffered log writer: flush_size %d: want a positive size", b.FlushSize)
	}
	if b.MaxBuffer < b.FlushSize {
		return fmt.Errorf("buffered log writer: max_buffer %d is below flush_size %d", b.MaxBuffer, b.FlushSize)
	}
	return nil
}

// Cleanup releases this config's use of the buffer; the last user writes
// it out and closes the destination.
func (b *Buffered) Cleanup() error {
	if b.key == "" {
		return nil
	}
	_, err := buffers.Delete(b.key)
	return err
}

func (b *Buffered) String() string { return "buffered " + b.dest.String() }

// WriterKey names the destination and the settings.
func (b *Buffered) WriterKey() string { return b.key }

// OpenWriter returns a handle on the buffer Provision opened.
func (b *Buffered) OpenWriter() (io.WriteCloser, error) { return handle{key: b.key}, nil }

// handle is what Caddy holds, possibly across reloads: it writes to the
// latest buffer of its key. Closing it does nothing; Cleanup releases the
// buffer.
type handle struct{ key string }

func (h handle) writer() *writer {
	w, _ := current.Load(h.key)
	return w.(*writer)
}

func (h handle) Write(p []byte) (int, error) { return h.writer().Write(p) }

// Sync writes out what is buffered. zap calls it after entries above the
// error level (panic, fatal), before the process may end.
func (h handle) Sync() error { return h.writer().Sync() }

func (h handle) Close() error { return nil }

// writer is the open buffer. Its own rather than zapcore.BufferedWriteSyncer,
// which writes to the destination while holding the lock every logging
// request needs, keeps the first write error forever (bufio), and never
// writes lines logged after Stop.
type writer struct {
	dest      io.WriteCloser
	label     string
	flushSize int
	maxBuffer int

	mu     sync.Mutex
	buf    []byte
	closed bool

	// flushing serializes writes to dest, and guards spare: the buffer
	// that is not being filled.
	flushing sync.Mutex
	spare    []byte

	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

func newWriter(dest io.WriteCloser, label string, interval time.Duration, flushSize, maxBuffer int) *writer {
	w := &writer{
		dest:      dest,
		label:     label,
		flushSize: flushSize,
		maxBuffer: maxBuffer,
		buf:       make([]byte, 0, flushSize),
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	go w.loop(interval)
	return w
}

// Write buffers p, one log line as zap writes them. It never blocks on the
// destination; once the writer is closed, p goes straight to it.
func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.flushing.Lock()
		defer w.flushing.Unlock()
		w.write(p)
		return len(p), nil
	}
	if len(w.buf)+len(p) > w.maxBuffer {
		w.mu.Unlock()
		droppedLines.WithLabelValues(w.label, "buffer_full").Inc()
		// Reported as written: zap would otherwise log the error on stderr
		// for every line, adding to the load that filled the buffer.
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	full := len(w.buf) >= w.flushSize
	w.mu.Unlock()
	if full {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// Sync writes out what is buffered.
func (w *writer) Sync() error {
	w.flush()
	return nil
}

// Destruct writes out what is buffered, stops the flushing goroutine and
// closes the destination, when no loaded config uses the buffer any more.
func (w *writer) Destruct() error { return w.Close() }

// Close is Destruct; lines written after it go straight to the destination.
func (w *writer) Close() error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(w.stop)
		<-w.done
		w.flush()
		w.closeErr = w.dest.Close()
	})
	return w.closeErr
}

func (w *writer) loop(interval time.Duration) {
	defer close(w.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-w.kick:
		case <-w.stop:
			return
		}
		w.flush()
	}
}

// flush swaps the buffer for the spare one, so that requests keep appending
// while the batch is written.
func (w *writer) flush() {
	w.flushing.Lock()
	defer w.flushing.Unlock()
	w.mu.Lock()
	batch := w.buf
	w.buf = w.spare[:0]
	w.mu.Unlock()
	if len(batch) == 0 {
		w.spare = batch
		return
	}
	w.write(batch)
	// Kept for the next swap, so that a steady load allocates nothing; each
	// of the two buffers holds at most max_buffer.
	w.spare = batch[:0]
}

// write hands p to the destination, counting the lines it did not take.
// The caller holds w.flushing.
func (w *writer) write(p []byte) {
	n, err := w.dest.Write(p)
	if err == nil {
		return
	}
	lost := bytes.Count(p[min(n, len(p)):], []byte{'\n'})
	droppedLines.WithLabelValues(w.label, "write_error").Add(float64(max(lost, 1)))
}

// Interface guards
var (
	_ caddy.Provisioner  = (*Buffered)(nil)
	_ caddy.Validator    = (*Buffered)(nil)
	_ caddy.CleanerUpper = (*Buffered)(nil)
	_ caddy.WriterOpener = (*Buffered)(nil)
	_ caddy.Destructor   = (*writer)(nil)
)
