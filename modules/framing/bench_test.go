package framing

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// loopConn returns msg over and over, in reads of at most 16 KiB (a TLS
// record).
type loopConn struct {
	net.Conn
	msg string
	off int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p[:min(len(p), 16<<10)], c.msg[c.off:])
	c.off = (c.off + n) % len(c.msg)
	return n, nil
}

// BenchmarkConn reads requests the way net/http does, from the raw
// connection and through the wrapper; compare each workload's two ns/op.
func BenchmarkConn(b *testing.B) {
	headers := "Host: localhost\r\nUser-Agent: bench/1.0\r\nAccept: application/json\r\nAuthorization: Bearer " + strings.Repeat("x", 200) + "\r\n"
	chunk := strings.Repeat("a", 16<<10)
	workloads := map[string]string{
		"get":          "GET /v1/users/u1/scores HTTP/1.1\r\n" + headers + "\r\n",
		"upload_1MiB":  "POST /v1/scores HTTP/1.1\r\n" + headers + "Content-Length: 1048576\r\n\r\n" + strings.Repeat("a", 1<<20),
		"chunked_1MiB": "POST /v1/scores HTTP/1.1\r\n" + headers + "Transfer-Encoding: chunked\r\n\r\n" + strings.Repeat("4000\r\n"+chunk+"\r\n", 64) + "0\r\n\r\n",
	}
	for name, msg := range workloads {
		for _, wrapped := range []bool{false, true} {
			label := name + "/raw"
			if wrapped {
				label = name + "/framing"
			}
			b.Run(label, func(b *testing.B) {
				var c net.Conn = &loopConn{msg: msg}
				if wrapped {
					c = wrapConn(c, 0, func(string) { b.Fatal("refused") })
				}
				br := bufio.NewReader(c)
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				for b.Loop() {
					req, err := http.ReadRequest(br)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, req.Body); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
