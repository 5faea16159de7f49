package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowBound is how long the gateway may keep a slow client (issue 11: well
// within 15 s; the Caddyfile's defaults drop one after about 5 s).
const slowBound = 15 * time.Second

// slowConn opens a connection to addr, through TLS when tlsConf is set,
// sends header at once and then payload one byte a second. It returns how
// long the gateway kept the connection, what it answered before closing it,
// if anything, and whether the request got through the handshake and the
// header (a busy gateway may drop a client in its handshake already).
func slowConn(addr string, tlsConf *tls.Config, header, payload string) (kept time.Duration, answer string, sent bool, err error) {
	start := time.Now()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "", false, err
	}
	// The test's own limit: a gateway that never closes fails the bound.
	_ = raw.SetDeadline(start.Add(slowBound + 10*time.Second))
	conn := raw
	defer func() { conn.Close() }()
	if tlsConf != nil {
		tc := tls.Client(raw, tlsConf)
		if tc.Handshake() != nil {
			return time.Since(start), "", false, nil
		}
		conn = tc
	}
	if _, err := io.WriteString(conn, header); err != nil {
		return time.Since(start), "", false, nil
	}
	closed := make(chan struct{})
	var got []byte
	go func() {
		defer close(closed)
		got, _ = io.ReadAll(conn)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; i < len(payload); i++ {
		if _, err := conn.Write([]byte{payload[i]}); err != nil {
			break
		}
		select {
		case <-closed:
			return time.Since(start), string(got), true, nil
		case <-tick.C:
		}
	}
	<-closed
	return time.Since(start), string(got), true, nil
}

// TestSlowClientsAreDropped: 120 connections that send their headers a byte
// a second (TLS and plain HTTP) and 20 whose body trickles a byte a second
// are all closed within the bound (the bodies with a 408 problem), while a
// normal client keeps getting its answers and uploads are untouched.
func TestSlowClientsAreDropped(t *testing.T) {
	be := StartBackend(t, bins, nil)
	// The Caddyfile's defaults, which the harness relaxes for other tests.
	gw := StartGateway(t, bins, []string{be.Addr}, resilienceEnv(map[string]string{
		"GATEWAY_READ_HEADER_TIMEOUT": "5s",
		"GATEWAY_READ_BODY_GRACE":     "5s",
	}))
	auth := gw.Bearer(t, "patient", "free")
	tlsConf := gw.Client.Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsConf.ServerName = "localhost"
	tlsConf.NextProtos = []string{"http/1.1"}
	httpsAddr := "127.0.0.1:" + gw.Env["GATEWAY_HTTPS_PORT"]
	httpAddr := "127.0.0.1:" + gw.Env["GATEWAY_HTTP_PORT"]

	slowHeader := "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + string(bytes.Repeat([]byte("a"), 60)) + "\r\n\r\n"
	slowBody := "POST /v1/scores HTTP/1.1\r\nHost: localhost\r\nAuthorization: " + auth.Get("Authorization") +
		"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
	type slow struct {
		name    string
		addr    string
		tls     *tls.Config
		n       int
		payload string
		// header is sent at once before the trickle, when set.
		header string
	}
	kinds := []slow{
		{name: "TLS header", addr: httpsAddr, tls: tlsConf, n: 60, payload: slowHeader},
		{name: "plain header", addr: httpAddr, n: 60, payload: slowHeader},
		{name: "TLS body", addr: httpsAddr, tls: tlsConf, n: 20, header: slowBody, payload: string(bytes.Repeat([]byte("{"), 1000))},
	}

	// The normal client: answers all along, and two uploads.
	stop := make(chan struct{})
	var normalOK, normalBad atomic.Int64
	var normal sync.WaitGroup
	normal.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			for _, path := range []string{"/healthz", "/v1/users/patient/scores"} {
				r := call(gw.Client, http.MethodGet, gw.BaseURL+path, "", auth)
				if r.err != nil || r.status != http.StatusOK {
					normalBad.Add(1)
					t.Errorf("normal client, GET %s during the slow clients: %d %v", path, r.status, r.err)
					continue
				}
				normalOK.Add(1)
			}
		}
	})
	normal.Go(func() {
		// 25 MiB of audio as fast as loopback goes, then 1 MiB at 256 KiB/s,
		// 16 times the minimum rate.
		for _, up := range []struct{ size, rate int }{{25 << 20, 0}, {1 << 20, 256 << 10}} {
			if status, err := upload(gw, auth, up.size, up.rate); err != nil || status != http.StatusCreated {
				t.Errorf("normal client, upload of %d bytes at %d B/s: %d %v", up.size, up.rate, status, err)
			}
		}
	})

	var wg sync.WaitGroup
	var mu sync.Mutex
	longest := map[string]time.Duration{}
	var timedOut, droppedEarly atomic.Int64
	for _, k := range kinds {
		for i := range k.n {
			// Connections open 20 ms apart: a slow attack, not a handshake flood.
			time.Sleep(20 * time.Millisecond)
			wg.Go(func() {
				kept, answer, sent, err := slowConn(k.addr, k.tls, k.header, k.payload)
				if err != nil {
					t.Errorf("%s %d: %v", k.name, i, err)
					return
				}
				mu.Lock()
				longest[k.name] = max(longest[k.name], kept)
				mu.Unlock()
				if kept > slowBound {
					t.Errorf("%s %d: kept for %v, want at most %v", k.name, i, kept, slowBound)
				}
				switch {
				case !sent:
					droppedEarly.Add(1)
				case k.header != "":
					checkTimeoutAnswer(t, k.name, answer)
					timedOut.Add(1)
				}
			})
		}
	}
	wg.Wait()
	close(stop)
	normal.Wait()
	t.Logf("longest kept: %v; %d slow bodies answered 408, %d clients dropped in the handshake; normal client: %d answers, %d failures",
		longest, timedOut.Load(), droppedEarly.Load(), normalOK.Load(), normalBad.Load())
	if normalOK.Load() == 0 || timedOut.Load() == 0 {
		t.Error("the normal client got no answer, or no slow body got through to its 408")
	}
}

// checkTimeoutAnswer checks that answer is a 408 problem.
func checkTimeoutAnswer(t *testing.T, name, answer string) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader([]byte(answer))), nil)
	if err != nil {
		t.Errorf("%s: no HTTP answer before the close (%q): %v", name, answer, err)
		return
	}
	defer resp.Body.Close()
	r := callResult{status: resp.StatusCode, header: resp.Header}
	r.body, _ = io.ReadAll(resp.Body)
	if r.status != http.StatusRequestTimeout {
		t.Errorf("%s: %d %s, want 408", name, r.status, r.body)
		return
	}
	if typ := problemOf(t, r); typ != "request-timeout" {
		t.Errorf("%s: problem %q, want request-timeout", name, typ)
	}
}

// upload posts size bytes of audio as multipart/form-data, at rate bytes/s
// (0: as fast as it goes), and returns the status.
func upload(gw *Gateway, auth http.Header, size, rate int) (int, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fw, err := mw.CreateFormFile("audio", "clip.wav")
		chunk := bytes.Repeat([]byte{'R'}, 16<<10)
		tick := time.NewTicker(time.Second * time.Duration(len(chunk)) / time.Duration(max(rate, 1)))
		defer tick.Stop()
		for sent := 0; err == nil && sent < size; sent += len(chunk) {
			_, err = fw.Write(chunk[:min(len(chunk), size-sent)])
			if rate > 0 {
				<-tick.C
			}
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequest(http.MethodPost, gw.BaseURL+"/v1/scores", pr)
	if err != nil {
		return 0, err
	}
	req.Header = auth.Clone()
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := gw.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return resp.StatusCode, fmt.Errorf("%s", b)
	}
	return resp.StatusCode, nil
}
