package validation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
	_ "github.com/lexiscore/gateway/modules/correlation"
	"github.com/lexiscore/gateway/modules/problem"
)

// provisioned returns a Handler provisioned outside a server.
func provisioned(t testing.TB, h *Handler) *Handler {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	return h
}

// drain is the next handler of direct tests: it consumes the body like a
// proxy and fails like one when reading it fails.
var drain = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return caddyhttp.Error(http.StatusBadGateway, err)
	}
	w.WriteHeader(http.StatusCreated)
	return nil
})

// A plugin directive ordered "before reverse_proxy", as resilience is.
func init() {
	httpcaddyfile.RegisterHandlerDirective("test_before_proxy", func(httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		return &caddyhttp.StaticResponse{}, nil
	})
	httpcaddyfile.RegisterDirectiveOrder("test_before_proxy", httpcaddyfile.Before, "reverse_proxy")
}

func TestCaddyfileAdapt(t *testing.T) {
	in := `:8080 {
		openapi_validate api/scoring.yaml {
			max_body 64KiB
			max_upload 30MiB
			route createScore {
				max_body 2MiB
			}
		}
		openapi_spec
		test_before_proxy
		reverse_proxy 127.0.0.1:9001
	}`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`{"handler":"openapi_validate","max_body":65536,"max_upload":31457280,"routes":{"createScore":{"max_body":2097152}},"spec_file":"api/scoring.yaml"}`,
		`{"handler":"openapi_spec"}`,
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("adapted config lacks %s:\n%s", want, out)
		}
	}
	// openapi_validate runs before other plugins' pre-proxy handlers and the
	// proxy, whatever the order in the file.
	validate, other, proxy := bytes.Index(out, []byte(`"openapi_validate"`)), bytes.Index(out, []byte(`"static_response"`)), bytes.Index(out, []byte(`"reverse_proxy"`))
	if !(validate < other && other < proxy) {
		t.Errorf("handler order wrong, want openapi_validate, test_before_proxy, reverse_proxy:\n%s", out)
	}

	for _, bad := range []string{
		`openapi_validate a b`,
		`openapi_validate { max_body }`,
		`openapi_validate { max_body lots }`,
		`openapi_validate { max_body 0 }`,
		`openapi_validate { route }`,
		`openapi_validate { route createScore { max_age 1 } }`,
		`openapi_validate { route createScore
			route createScore }`,
		`openapi_validate { frobnicate }`,
		`openapi_spec a b`,
	} {
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(":8080 {\n"+bad+"\n}"), nil); err == nil {
			t.Errorf("%q adapted without error", bad)
		}
	}
}

func TestProvisionErrorsNameTheSetting(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for _, tc := range []struct {
		h    Handler
		want string
	}{
		{Handler{SpecFile: "no/such/openapi.yaml"}, "no/such/openapi.yaml"},
		{Handler{Routes: map[string]Limits{"uploadThing": {MaxBody: 1}}}, "uploadThing"},
	} {
		err := tc.h.Provision(ctx)
		if err == nil || !strings.Contains(err.Error(), "openapi_validate") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Provision(%+v) = %v, want an openapi_validate error naming %q", tc.h, err, tc.want)
		}
	}
}

// upstream is a backend that records what reached it.
type upstream struct {
	*httptest.Server
	hits     atomic.Int64
	complete atomic.Int64 // requests whose body arrived in full
	lastBody atomic.Value
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		u.complete.Add(1)
		u.lastBody.Store(string(b))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(u.Close)
	return u
}

func TestThroughCaddy(t *testing.T) {
	up := newUpstream(t)
	in := caddytest.Start(t, "", fmt.Sprintf(`http://127.0.0.1:{http_port} {
	request_id
	handle /openapi.json {
		openapi_spec
	}
	handle /v1/* {
		openapi_validate {
			max_body 2KiB
			max_upload 64KiB
		}
		reverse_proxy %s
	}
	handle_errors {
		problem
	}
}`, up.Listener.Addr()))

	type result struct {
		status int
		header http.Header
		body   []byte
	}
	do := func(method, path, ct string, body io.Reader) result {
		t.Helper()
		req, err := http.NewRequest(method, in.URL(path), body)
		if err != nil {
			t.Fatal(err)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return result{resp.StatusCode, resp.Header, b}
	}
	counter := func(route, reason string) float64 {
		return testkit.Value(failures.WithLabelValues(route, reason))
	}

	t.Run("valid requests reach the upstream intact", func(t *testing.T) {
		before := up.complete.Load()
		json := `{"audio_base64":"AAAA"}`
		if r := do("POST", "/v1/scores", "application/json", strings.NewReader(json)); r.status != http.StatusCreated {
			t.Fatalf("JSON POST: %d %s", r.status, r.body)
		}
		if got := up.lastBody.Load(); got != json {
			t.Fatalf("upstream received %q", got)
		}
		form := multipartBody(strings.Repeat("w", 60<<10))
		// No length: the client streams it chunked, as large uploads are.
		if r := do("POST", "/v1/scores", multipartCT, io.MultiReader(strings.NewReader(form))); r.status != http.StatusCreated {
			t.Fatalf("multipart POST: %d %s", r.status, r.body)
		}
		if got := up.lastBody.Load(); got != form {
			t.Fatalf("upstream received %d bytes, want the %d sent", len(got.(string)), len(form))
		}
		if r := do("GET", "/v1/users/u1/scores?limit=3", "", nil); r.status != http.StatusCreated {
			t.Fatalf("GET: %d %s", r.status, r.body)
		}
		if got := up.complete.Load() - before; got != 3 {
			t.Fatalf("upstream saw %d complete requests, want 3", got)
		}
	})

	refusals := []struct {
		name, method, path, ct string
		body                   func() io.Reader
		status                 int
		route, reason          string
		check                  func(t *testing.T, r result, doc map[string]any)
	}{
		{name: "schema violations listed with pointers", method: "POST", path: "/v1/scores", ct: "application/json",
			body:   func() io.Reader { return strings.NewReader(`{"language":"english"}`) },
			status: 400, route: "createScore", reason: ReasonBody,
			check: func(t *testing.T, r result, doc map[string]any) {
				errs, _ := doc["errors"].([]any)
				pointers := map[string]bool{}
				for _, e := range errs {
					m := e.(map[string]any)
					pointers[m["pointer"].(string)] = true
					if m["detail"] == "" {
						t.Errorf("violation without detail: %v", m)
					}
				}
				if len(errs) != 2 || !pointers["/audio_base64"] || !pointers["/language"] {
					t.Fatalf("errors %v, want /audio_base64 and /language", doc["errors"])
				}
			}},
		{name: "bad query parameter", method: "GET", path: "/v1/users/u1/scores?limit=0", status: 400,
			route: "listUserScores", reason: ReasonParameters,
			check: func(t *testing.T, r result, doc map[string]any) {
				errs, _ := doc["errors"].([]any)
				if len(errs) != 1 || errs[0].(map[string]any)["parameter"] != "limit" || errs[0].(map[string]any)["in"] != "query" {
					t.Fatalf("errors %v", doc["errors"])
				}
			}},
		{name: "unknown path", method: "GET", path: "/v1/admin", status: 404, route: RouteUnknown, reason: ReasonUnknownRoute},
		{name: "wrong method", method: "DELETE", path: "/v1/scores/sc_1", status: 405, route: "/v1/scores/{id}", reason: ReasonMethodNotAllowed,
			check: func(t *testing.T, r result, doc map[string]any) {
				if got := r.header.Get("Allow"); got != "GET" {
					t.Fatalf("Allow %q, want GET", got)
				}
			}},
		{name: "unsupported media type", method: "POST", path: "/v1/scores", ct: "text/plain",
			body: func() io.Reader { return strings.NewReader("hello") }, status: 415, route: "createScore", reason: ReasonMediaType},
		{name: "JSON over max_body", method: "POST", path: "/v1/scores", ct: "application/json",
			body:   func() io.Reader { return strings.NewReader(`{"audio_base64":"` + strings.Repeat("A", 3000) + `"}`) },
			status: 413, route: "createScore", reason: ReasonTooLarge},
		{name: "streamed upload over max_upload", method: "POST", path: "/v1/scores", ct: multipartCT,
			body: func() io.Reader {
				return io.MultiReader(strings.NewReader(multipartBody(strings.Repeat("w", 100<<10))))
			},
			status: 413, route: "createScore", reason: ReasonTooLarge},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			before, completeBefore := counter(tc.route, tc.reason), up.complete.Load()
			var body io.Reader
			if tc.body != nil {
				body = tc.body()
			}
			r := do(tc.method, tc.path, tc.ct, body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q", ct)
			}
			var doc map[string]any
			if err := json.Unmarshal(r.body, &doc); err != nil {
				t.Fatal(err)
			}
			if doc["status"] != float64(tc.status) || doc["request_id"] != r.header.Get("X-Request-ID") || doc["request_id"] == "" {
				t.Fatalf("problem %v", doc)
			}
			if tc.check != nil {
				tc.check(t, r, doc)
			}
			if got := up.complete.Load() - completeBefore; got != 0 {
				t.Fatalf("the upstream received %d complete invalid requests", got)
			}
			if got := counter(tc.route, tc.reason) - before; got != 1 {
				t.Fatalf("gateway_validation_failures_total{route=%q,reason=%q} rose by %v, want 1", tc.route, tc.reason, got)
			}
		})
	}

	t.Run("the document is served as JSON", func(t *testing.T) {
		r := do("GET", "/openapi.json", "", nil)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%d %q", r.status, r.header.Get("Content-Type"))
		}
		var doc struct {
			OpenAPI string         `json:"openapi"`
			Paths   map[string]any `json:"paths"`
		}
		if err := json.Unmarshal(r.body, &doc); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(doc.OpenAPI, "3.") || doc.Paths["/v1/scores"] == nil {
			t.Fatalf("served document: %.200s", r.body)
		}
		req, _ := http.NewRequest("GET", in.URL("/openapi.json"), nil)
		req.Header.Set("If-None-Match", r.header.Get("ETag"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("conditional GET: %d, want 304", resp.StatusCode)
		}
		if r := do("POST", "/openapi.json", "application/json", strings.NewReader("{}")); r.status != http.StatusMethodNotAllowed {
			t.Fatalf("POST /openapi.json: %d", r.status)
		}
	})
}

func TestSpanEvents(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	h := provisioned(t, &Handler{})
	for _, r := range []*http.Request{
		newRequest("GET", "/v1/scores/sc_1", "", "", false),
		newRequest("GET", "/v1/users/u1/scores?limit=0", "", "", false),
	} {
		ctx, span := tp.Tracer("test").Start(r.Context(), "server")
		_ = h.ServeHTTP(httptest.NewRecorder(), r.WithContext(ctx), drain)
		span.End()
	}
	want := []map[string]string{
		{"openapi.operation": "getScore", "gateway.validation.result": "valid"},
		{"openapi.operation": "listUserScores", "gateway.validation.result": "refused",
			"gateway.validation.reason": ReasonParameters, "http.response.status_code": "400", "gateway.validation.violations": "1"},
	}
	spans := rec.Ended()
	if len(spans) != len(want) {
		t.Fatalf("%d spans, want %d", len(spans), len(want))
	}
	for i, s := range spans {
		events := s.Events()
		if len(events) != 1 || events[0].Name != "openapi_validate" {
			t.Fatalf("span %d: events %+v", i, events)
		}
		got := map[string]string{}
		for _, kv := range events[0].Attributes {
			got[string(kv.Key)] = kv.Value.Emit()
		}
		if fmt.Sprint(got) != fmt.Sprint(want[i]) {
			t.Errorf("span %d: event attributes %v, want %v", i, got, want[i])
		}
	}
}

func TestMetricSurvivesReload(t *testing.T) {
	counter := failures.WithLabelValues(RouteUnknown, ReasonUnknownRoute)
	before := testkit.Value(counter)
	for i := 0; i < 2; i++ {
		reg := prometheus.NewPedanticRegistry()
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		h := &Handler{}
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		// Each load registers into its own registry, as a reload does.
		if err := reg.Register(failures); err != nil {
			t.Fatal(err)
		}
		_ = h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/nope", nil), drain)
		cancel()
		if _, ok := testkit.Gathered(t, reg, "gateway_validation_failures_total", nil); !ok {
			t.Fatalf("load %d: the registry does not expose the counter", i)
		}
	}
	if got := testkit.Value(counter) - before; got != 2 {
		t.Fatalf("counter rose by %v over two loads, want 2", got)
	}
}

// zeros is an endless reader that allocates nothing.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

// uploadRequest is a multipart POST of n audio bytes, produced on the fly.
func uploadRequest(n int64, chunked bool) *http.Request {
	head := "--XyZ\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
	tail := "\r\n--XyZ--\r\n"
	body := io.MultiReader(strings.NewReader(head), io.LimitReader(zeros{}, n), strings.NewReader(tail))
	r := httptest.NewRequest("POST", "/v1/scores", body)
	r.Header.Set("Content-Type", multipartCT)
	r.ContentLength = int64(len(head)) + n + int64(len(tail))
	if chunked {
		r.ContentLength = -1
	}
	r.Body = io.NopCloser(body)
	return r
}

// TestUploadMemoryBounded is the check that validation does not hold a large
// upload in memory: the bytes allocated per 10 MB upload stay far below its
// size.
func TestUploadMemoryBounded(t *testing.T) {
	h := provisioned(t, &Handler{})
	const size, runs, bound = 10 << 20, 5, 1 << 20
	for _, chunked := range []bool{false, true} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := 0; i < runs; i++ {
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, uploadRequest(size, chunked), drain); err != nil || rec.Code != http.StatusCreated {
				t.Fatalf("upload refused: %d %v", rec.Code, err)
			}
		}
		runtime.ReadMemStats(&after)
		perRequest := (after.TotalAlloc - before.TotalAlloc) / runs
		t.Logf("chunked=%v: %d bytes allocated per 10 MiB upload", chunked, perRequest)
		if perRequest > bound {
			t.Fatalf("chunked=%v: %d bytes allocated per 10 MiB upload, bound %d", chunked, perRequest, bound)
		}
	}
}

// FuzzValidate feeds arbitrary bodies, content types and query strings to the
// handler: every answer is a pass-through or a 4xx, never a 5xx or a panic.
func FuzzValidate(f *testing.F) {
	f.Add(uint8(0), "application/json", "", []byte(`{"audio_base64":"AAAA"}`))
	f.Add(uint8(0), "application/json; charset=utf-8", "x=1", []byte(`{"audio_base64":"AAAA","language":"en","reference_text":"hi"}`))
	f.Add(uint8(0), "application/json", "", []byte(`{"audio_base64":[1,{"a":null}],"x":1e999}`))
	f.Add(uint8(0), multipartCT, "", []byte(multipartBody("RIFF")))
	f.Add(uint8(0), "multipart/form-data; boundary=", "", []byte("--\r\n"))
	f.Add(uint8(0), "text/plain", "", []byte("hi"))
	f.Add(uint8(1), "", "limit=5", []byte{})
	f.Add(uint8(1), "", "limit=%zz&limit=1&limit[]=2", []byte{})
	f.Add(uint8(2), "application/json", "a=b", []byte("{}"))
	f.Add(uint8(3), "*/*", "", []byte("\x00\xff"))

	h := provisioned(f, &Handler{Limits: Limits{MaxBody: 4 << 10, MaxUpload: 8 << 10}})
	targets := []struct{ method, path string }{
		{"POST", "/v1/scores"}, {"GET", "/v1/users/u_1/scores"}, {"GET", "/v1/scores/sc_1"},
		{"PUT", "/v1/scores"}, {"POST", "/v1/users/x/scores"}, {"GET", "/v1/unknown"},
	}
	f.Fuzz(func(t *testing.T, target uint8, contentType, query string, body []byte) {
		tg := targets[int(target)%len(targets)]
		r := httptest.NewRequest(tg.method, tg.path, bytes.NewReader(body))
		r.URL.RawQuery = query
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		if target&0x80 != 0 {
			r.ContentLength = -1
		}
		rec := httptest.NewRecorder()
		err := h.ServeHTTP(rec, r, drain)
		if err == nil {
			if rec.Code != http.StatusCreated {
				t.Fatalf("passed through but the upstream answered %d", rec.Code)
			}
			return
		}
		status, _, _, _ := problem.FromError(err)
		if status < 400 || status >= 500 {
			t.Fatalf("answered %d: %v", status, err)
		}
		var f *Failure
		if !errors.As(err, &f) {
			t.Fatalf("refusal is not a validation failure: %v", err)
		}
		if f.Reason == ReasonInternal {
			t.Fatalf("validator panicked: %v", f.Cause)
		}
	})
}

var noop = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	_, _ = io.Copy(io.Discard, r.Body)
	w.WriteHeader(http.StatusOK)
	return nil
})

func benchmarkServe(b *testing.B, newReq func() *http.Request, h caddyhttp.MiddlewareHandler) {
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, newReq(), noop); err != nil {
			b.Fatal(err)
		}
	}
}

// passThrough is the baseline: a handler that only calls next.
type passThrough struct{}

func (passThrough) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}

var benchJSON = `{"audio_base64":"` + strings.Repeat("UklGRgAA", 512) + `","language":"en-GB","reference_text":"the quick brown fox"}`

func jsonPost() *http.Request {
	return newRequest("POST", "/v1/scores", "application/json", benchJSON, false)
}

func getScores() *http.Request {
	r := newRequest("GET", "/v1/users/u_1/scores?limit=20", "", "", false)
	r.Header.Set("X-Request-ID", "0b6f0c3e-7b7e-4c1e-9d43-1c6a2f0f9e11")
	return r
}

func BenchmarkBaselineJSONPost(b *testing.B) { benchmarkServe(b, jsonPost, passThrough{}) }
func BenchmarkValidateJSONPost(b *testing.B) {
	benchmarkServe(b, jsonPost, provisioned(b, &Handler{}))
}
func BenchmarkBaselineGet(b *testing.B) { benchmarkServe(b, getScores, passThrough{}) }
func BenchmarkValidateGet(b *testing.B) { benchmarkServe(b, getScores, provisioned(b, &Handler{})) }

// BenchmarkValidateUpload10MB reports the bytes allocated per streamed upload.
func BenchmarkValidateUpload10MB(b *testing.B) {
	h := provisioned(b, &Handler{})
	b.SetBytes(10 << 20)
	benchmarkServe(b, func() *http.Request { return uploadRequest(10<<20, true) }, h)
}
