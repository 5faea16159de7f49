package httpsig

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
)

// SpoolLimits bound how a body is held while it is hashed.
type SpoolLimits struct {
	// Memory is the largest body held in memory; a larger one (or one whose
	// declared length is larger) goes to a temporary file instead.
	Memory int64
	// Max is the largest body accepted at all; ErrBodyTooLarge above it.
	Max int64
	// Dir holds temporary files. Default: os.TempDir().
	Dir string
}

// copyBuffers are the buffers that carry bodies into spool files.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Spooled is a body that has been read once, hashed, and can be read again,
// from memory or from an already unlinked temporary file (so that nothing is
// left on disk, whatever happens to the process).
type Spooled struct {
	// Sum is the SHA-256 of the body.
	Sum [sha256.Size]byte
	// Len is its length in bytes.
	Len int64

	mem  []byte
	file *os.File
}

// Spool reads body to its end, hashing it as it goes. A Content-Digest
// header is sent before the body, so the body has to be read in full before
// the request can be signed; this keeps the memory per request bounded by
// lim.Memory while bodies of up to lim.Max bytes pass. declared is the
// declared length, or -1.
func Spool(body io.Reader, declared int64, lim SpoolLimits) (*Spooled, error) {
	if declared > lim.Max {
		return nil, fmt.Errorf("%w: %d bytes declared, at most %d", ErrBodyTooLarge, declared, lim.Max)
	}
	h := sha256.New()
	s := &Spooled{}
	if declared < 0 || declared <= lim.Memory {
		// ReadFrom reads straight into buf; it wants MinRead bytes of room
		// beyond the body to see EOF without growing.
		capacity := lim.Memory + bytes.MinRead
		if declared >= 0 {
			capacity = declared + bytes.MinRead
		}
		buf := bytes.NewBuffer(make([]byte, 0, min(capacity, 64<<10)))
		n, err := buf.ReadFrom(io.TeeReader(io.LimitReader(body, lim.Memory+1), h))
		if err != nil {
			return nil, fmt.Errorf("reading body: %w", err)
		}
		if n <= lim.Memory {
			s.mem, s.Len = buf.Bytes(), n
			h.Sum(s.Sum[:0])
			return s, nil
		}
		// Longer than announced or than the memory limit: the head read so
		// far goes to the file first.
		body = io.MultiReader(bytes.NewReader(buf.Bytes()), body)
		h.Reset()
	}
	if err := s.spoolToFile(body, h, lim); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Spooled) spoolToFile(body io.Reader, h hash.Hash, lim SpoolLimits) error {
	f, err := os.CreateTemp(lim.Dir, "httpsig-body-*")
	if err != nil {
		return fmt.Errorf("spooling body: %w", err)
	}
	// Unlinked at once: the open descriptor keeps the data readable, and
	// nothing stays behind if the process dies.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return fmt.Errorf("spooling body: %w", err)
	}
	cp := copyBuffers.Get().(*[]byte)
	n, err := io.CopyBuffer(io.MultiWriter(f, h), io.LimitReader(body, lim.Max+1), *cp)
	copyBuffers.Put(cp)
	if err == nil && n > lim.Max {
		err = fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, lim.Max)
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		if errors.Is(err, ErrBodyTooLarge) {
			return err
		}
		return fmt.Errorf("spooling body: %w", err)
	}
	s.file, s.Len = f, n
	h.Sum(s.Sum[:0])
	return nil
}

// InMemory reports whether the body is held in memory rather than in a file.
func (s *Spooled) InMemory() bool { return s.file == nil }

// Reader returns the body for its one replay; closing it releases the file.
func (s *Spooled) Reader() io.ReadCloser {
	if s.file != nil {
		return s.file
	}
	return io.NopCloser(bytes.NewReader(s.mem))
}

// Close releases the file of a body that was never replayed. Closing after
// Reader's result was closed is harmless.
func (s *Spooled) Close() error {
	if s.file != nil {
		_ = s.file.Close()
	}
	return nil
}
