// Package rawhttp reads HTTP/1.1 answers off a connection on which a test
// wrote raw request bytes: tests of framing, pipelining and connection
// closing, which an http.Client hides.
package rawhttp

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// Answers writes raw to conn and reads the answers, with their bodies, until
// the server closes the connection or timeout passes; closed reports the
// former. It closes conn.
func Answers(conn net.Conn, raw string, timeout time.Duration) (resps []*http.Response, bodies []string, closed bool, err error) {
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, nil, false, err
	}
	if _, err := io.WriteString(conn, raw); err != nil {
		return nil, nil, false, err
	}
	br := bufio.NewReader(conn)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			return resps, bodies, !errors.As(err, &ne) || !ne.Timeout(), nil
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resps, bodies = append(resps, resp), append(bodies, string(b))
	}
}
