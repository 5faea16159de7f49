package framing

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// parsed is what net/http read of one request.
type parsed struct {
	Method, URI string
	Header      http.Header
	Body        string
	Trailer     http.Header
}

// goRequests reads requests from b the way net/http's server does, until
// the end or an error. It returns them, the offset where each began, and
// whether it reached the end of b cleanly.
func goRequests(b []byte) (reqs []parsed, starts []int, clean bool) {
	cr := &countingReader{r: bytes.NewReader(b)}
	br := bufio.NewReader(cr)
	for {
		// A request begins with the CRs and LFs before it, which net/http
		// skips and the tracker holds with the head.
		start := cr.n - br.Buffered()
		for {
			c, err := br.ReadByte()
			if err == io.EOF {
				return reqs, starts, true
			}
			if err != nil {
				return reqs, starts, false
			}
			if c != '\r' && c != '\n' {
				_ = br.UnreadByte()
				break
			}
		}
		starts = append(starts, start)
		req, err := http.ReadRequest(br)
		if err != nil {
			return reqs, starts, false
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return reqs, starts, false
		}
		reqs = append(reqs, parsed{req.Method, req.RequestURI, req.Header, string(body), req.Trailer})
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzConn: whatever a client sends, net/http reads through the wrapper the
// requests it would read without it, byte for byte, up to a refused one; a
// refusal replaces a whole request, never part of one; and nothing after a
// refusal is delivered.
func FuzzConn(f *testing.F) {
	for _, s := range []string{
		get + get, post + get, chunked + get, get + clte + smuggled,
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
		"GET / HTTP/1.1\nHost: h\nX: a\n b\n\n" + get,
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nT: 1\r\n\r\n" + get,
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		var reasons []string
		c := wrapConn(&scriptedConn{in: in, n: int(chunk%64) + 1}, 0, func(r string) { reasons = append(reasons, r) })
		out, err := readAllBy(c, readSizes[chunk>>6])
		if err != nil {
			t.Fatal(err)
		}
		inReqs, inStarts, _ := goRequests(in)
		if len(reasons) == 0 {
			if !bytes.HasPrefix(in, out) {
				t.Fatalf("delivered %q, not a prefix of %q", out, in)
			}
			if len(out) < len(in) && !bytes.HasPrefix(in, []byte("PRI ")) {
				// The stream ended early: only where net/http fails.
				if reqs, _, clean := goRequests(in); clean && len(reqs) > 0 {
					t.Fatalf("delivered %q of %q, which net/http reads cleanly", out, in)
				}
			}
			outReqs, _, _ := goRequests(out)
			if len(outReqs) > len(inReqs) || len(outReqs) > 0 && !reflect.DeepEqual(outReqs, inReqs[:len(outReqs)]) {
				t.Fatalf("through the wrapper net/http read %+v, without it %+v", outReqs, inReqs)
			}
			return
		}
		if len(reasons) != 1 {
			t.Fatalf("refused %v: at most one refusal per connection", reasons)
		}
		k := prefixLen(in, out)
		if k < 0 {
			t.Fatalf("delivered %q: not a prefix of %q and then a stand-in", out, in)
		}
		outReqs, _, _ := goRequests(out)
		prefixReqs, _, prefixClean := goRequests(out[:k])
		if !prefixClean {
			// net/http fails on a request before the refused one, and closes.
			return
		}
		if !contains(inStarts, k) && len(prefixReqs) < len(inReqs) {
			t.Fatalf("refused at %d, inside a request net/http reads (requests start at %v) in %q", k, inStarts, in)
		}
		if len(prefixReqs) > len(inReqs) || len(prefixReqs) > 0 && !reflect.DeepEqual(prefixReqs, inReqs[:len(prefixReqs)]) {
			t.Fatalf("before the refusal net/http read %+v, without the wrapper %+v", prefixReqs, inReqs)
		}
		if len(outReqs) != len(prefixReqs)+1 || outReqs[len(outReqs)-1].Header.Get(MarkerHeader) == "" {
			t.Fatalf("net/http read %+v from %q: want the requests before the refusal, then the stand-in", outReqs, out)
		}
	})
}

// readSizes are the sizes of net/http's reads: its background read of one
// byte, its look for the HTTP/2 preface, and its buffer's.
var readSizes = [4]int{1, 14, 512, 4096}

// readAllBy reads r to its end, size bytes at a time.
func readAllBy(r io.Reader, size int) ([]byte, error) {
	var out []byte
	p := make([]byte, size)
	for {
		n, err := r.Read(p)
		out = append(out, p[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// prefixLen is the length of the part of out copied from in when out is
// that part and then a stand-in (one request with the marker), else -1.
func prefixLen(in, out []byte) int {
	common := 0
	for common < min(len(in), len(out)) && in[common] == out[common] {
		common++
	}
	for k := common; k >= 0; k-- {
		reqs, _, clean := goRequests(out[k:])
		if clean && len(reqs) == 1 && reqs[0].Header.Get(MarkerHeader) != "" && strings.HasPrefix(string(out[k:]), reqs[0].Method+" ") {
			return k
		}
	}
	return -1
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
