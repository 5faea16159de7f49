package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/problemjson"
)

// waitTimeout bounds every wait of the tests; conditions are polled, never
// slept for.
const waitTimeout = 15 * time.Second

// requestTimeout only guards against a hung request: a 26 MiB upload parsed
// under -race on a loaded 2-core machine has taken over 20 s.
const requestTimeout = 2 * time.Minute

// startupLine is the line run prints once both ports are bound.
var startupLine = regexp.MustCompile(`^scoring: api on (\S+), admin on (\S+)\n$`)

// testServer is a running backend on ports chosen at run time.
type testServer struct {
	api    string // base URL of the public API
	admin  string // base URL of the admin API
	client *http.Client
}

// startServer runs the backend as main does, on 127.0.0.1:0 ports read from
// the startup line, and stops it when the test ends, failing the test if the
// shutdown fails.
func startServer(t *testing.T) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, config{addr: "127.0.0.1:0", adminAddr: "127.0.0.1:0"}, pw, slog.New(slog.DiscardHandler))
		pw.Close()
		done <- err
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("read startup line: %v (run: %v)", err, <-done)
	}
	m := startupLine.FindStringSubmatch(line)
	if m == nil {
		cancel()
		t.Fatalf("startup line = %q, want %v", line, startupLine)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	ts := &testServer{
		api:    "http://" + m[1],
		admin:  "http://" + m[2],
		client: &http.Client{Transport: tr, Timeout: requestTimeout},
	}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("run did not return after cancel")
		}
	})
	return ts
}

// response is a response with its body read.
type response struct {
	*http.Response
	body []byte
}

// do sends a request and reads the whole response.
func (ts *testServer) do(t *testing.T, method, url string, body io.Reader, header http.Header) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return response{Response: resp, body: b}
}

// postJSON submits audio in the JSON encoding.
func (ts *testServer) postJSON(t *testing.T, body string, header http.Header) response {
	t.Helper()
	h := http.Header{"Content-Type": {"application/json"}}
	for k, vs := range header {
		h[k] = vs
	}
	return ts.do(t, http.MethodPost, ts.api+"/v1/scores", strings.NewReader(body), h)
}

// multipartBody builds a multipart form of the given parts; a part named
// "audio" is sent as a file.
func multipartBody(t *testing.T, parts ...[2]string) (contentType string, body *bytes.Buffer) {
	t.Helper()
	body = new(bytes.Buffer)
	mw := multipart.NewWriter(body)
	for _, p := range parts {
		var (
			w   io.Writer
			err error
		)
		if p[0] == "audio" {
			w, err = mw.CreateFormFile("audio", "speech.wav")
		} else {
			w, err = mw.CreateFormField(p[0])
		}
		if err != nil {
			t.Fatalf("create part: %v", err)
		}
		if _, err := io.WriteString(w, p[1]); err != nil {
			t.Fatalf("write part: %v", err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatalf("close form: %v", err)
	}
	return mw.FormDataContentType(), body
}

// postMultipart submits a multipart form.
func (ts *testServer) postMultipart(t *testing.T, header http.Header, parts ...[2]string) response {
	t.Helper()
	ct, body := multipartBody(t, parts...)
	h := http.Header{"Content-Type": {ct}}
	for k, vs := range header {
		h[k] = vs
	}
	return ts.do(t, http.MethodPost, ts.api+"/v1/scores", body, h)
}

// setFaults replaces the faults through the admin API.
func (ts *testServer) setFaults(t *testing.T, f faults) {
	t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatalf("marshal faults: %v", err)
	}
	resp := ts.do(t, http.MethodPut, ts.admin+"/faults", bytes.NewReader(b), http.Header{"Content-Type": {"application/json"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /faults = %d %s", resp.StatusCode, resp.body)
	}
}

// stats reads the statistics through the admin API.
func (ts *testServer) stats(t *testing.T) statsSnapshot {
	t.Helper()
	var s statsSnapshot
	decodeJSON(t, ts.do(t, http.MethodGet, ts.admin+"/stats", nil, nil), http.StatusOK, &s)
	return s
}

// decodeJSON checks the status and media type of a JSON response and decodes
// its body into v.
func decodeJSON(t *testing.T, resp response, status int, v any) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, resp.body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	if err := json.Unmarshal(resp.body, v); err != nil {
		t.Fatalf("decode %s: %v", resp.body, err)
	}
}

// checkProblem checks that resp is a problem document with the given status
// and type slug, and returns it.
func checkProblem(t *testing.T, resp response, status int, typ string) problemjson.Document {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, resp.body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	var p problemjson.Document
	if err := json.Unmarshal(resp.body, &p); err != nil {
		t.Fatalf("decode problem %s: %v", resp.body, err)
	}
	if p.Status != status || p.Type != problemTypeBase+typ || p.Title != http.StatusText(status) || p.Detail == "" {
		t.Fatalf("problem = %+v, want status %d, type %q, a title and a detail", p, status, typ)
	}
	return p
}

// isRefused reports whether err is a refused connection.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}
