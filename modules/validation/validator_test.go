package validation

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// testLimits are small so that size cases stay small.
var testLimits = Limits{MaxBody: 1024, MaxUpload: 4096}

func newTestValidator(t testing.TB) *Validator {
	t.Helper()
	c, err := LoadContract(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewValidator(c, testLimits, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// newRequest builds a request; chunked hides the body's length, as
// Transfer-Encoding: chunked does.
func newRequest(method, target, contentType, body string, chunked bool) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if chunked {
		r.ContentLength = -1
		r.Body = io.NopCloser(strings.NewReader(body))
	}
	return r
}

const multipartCT = "multipart/form-data; boundary=XyZ"

func multipartBody(audio string) string {
	return "--XyZ\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n" +
		"Content-Type: audio/wav\r\n\r\n" + audio + "\r\n--XyZ--\r\n"
}

func TestValidate(t *testing.T) {
	validJSON := `{"audio_base64":"AAAA","language":"en-GB"}`
	cases := []struct {
		name       string
		req        *http.Request
		wantStatus int // 0: accepted
		wantReason string
		wantRoute  string
		wantErrors []Violation
		wantAllow  string
	}{
		{name: "list scores", req: newRequest("GET", "/v1/users/u1/scores?limit=5", "", "", false), wantRoute: "listUserScores"},
		{name: "get score", req: newRequest("GET", "/v1/scores/sc_1", "", "", false), wantRoute: "getScore"},
		{name: "HEAD routed like GET", req: newRequest("HEAD", "/v1/scores/sc_1", "", "", false), wantRoute: "getScore"},
		{name: "GET with an empty chunked body", req: newRequest("GET", "/v1/scores/sc_1", "", "", true), wantRoute: "getScore"},
		{name: "unknown query parameters pass", req: newRequest("GET", "/v1/scores/sc_1?utm=x", "", "", false), wantRoute: "getScore"},
		{name: "valid JSON", req: newRequest("POST", "/v1/scores", "application/json", validJSON, false), wantRoute: "createScore"},
		{name: "valid JSON with charset", req: newRequest("POST", "/v1/scores", "application/json; charset=utf-8", validJSON, true), wantRoute: "createScore"},
		{name: "valid multipart", req: newRequest("POST", "/v1/scores", multipartCT, multipartBody("RIFF"), false), wantRoute: "createScore"},

		{name: "unknown path", req: newRequest("GET", "/v1/nope", "", "", false),
			wantStatus: 404, wantReason: ReasonUnknownRoute, wantRoute: RouteUnknown},
		{name: "wrong method on a template", req: newRequest("DELETE", "/v1/scores/sc_1", "", "", false),
			wantStatus: 405, wantReason: ReasonMethodNotAllowed, wantRoute: "/v1/scores/{id}", wantAllow: "GET"},
		{name: "wrong method on a literal path", req: newRequest("PUT", "/v1/scores", "application/json", validJSON, false),
			wantStatus: 405, wantReason: ReasonMethodNotAllowed, wantRoute: "/v1/scores", wantAllow: "POST"},
		{name: "template variable never matches an empty segment", req: newRequest("GET", "/v1/scores", "", "", false),
			wantStatus: 405, wantReason: ReasonMethodNotAllowed, wantRoute: "/v1/scores", wantAllow: "POST"},
		{name: "trailing slash", req: newRequest("GET", "/v1/scores/", "", "", false),
			wantStatus: 404, wantReason: ReasonUnknownRoute, wantRoute: RouteUnknown},
		{name: "query parameter not an integer", req: newRequest("GET", "/v1/users/u1/scores?limit=abc", "", "", false),
			wantStatus: 400, wantReason: ReasonParameters, wantRoute: "listUserScores",
			wantErrors: []Violation{{Parameter: "limit", In: "query", Detail: "cannot be parsed: an invalid integer"}}},
		{name: "query parameter out of range", req: newRequest("GET", "/v1/users/u1/scores?limit=1000", "", "", false),
			wantStatus: 400, wantReason: ReasonParameters, wantRoute: "listUserScores",
			wantErrors: []Violation{{Parameter: "limit", In: "query", Detail: "number must be at most 100"}}},
		{name: "path parameter breaks its pattern", req: newRequest("GET", "/v1/users/a%20b/scores", "", "", false),
			wantStatus: 400, wantReason: ReasonParameters, wantRoute: "listUserScores",
			wantErrors: []Violation{{Parameter: "id", In: "path", Detail: `string doesn't match the regular expression "^[A-Za-z0-9_-]{1,64}$"`}}},
		{name: "required property missing", req: newRequest("POST", "/v1/scores", "application/json", `{}`, false),
			wantStatus: 400, wantReason: ReasonBody, wantRoute: "createScore",
			wantErrors: []Violation{{Pointer: "/audio_base64", Detail: `property "audio_base64" is missing`}}},
		{name: "several body violations", req: newRequest("POST", "/v1/scores", "application/json", `{"audio_base64":"A","language":"english","x":1}`, false),
			wantStatus: 400, wantReason: ReasonBody, wantRoute: "createScore",
			wantErrors: []Violation{
				{Pointer: "/audio_base64", Detail: "minimum string length is 4"},
				{Pointer: "", Detail: `property "x" is unsupported`},
				{Pointer: "/language", Detail: `string doesn't match the regular expression "^[a-z]{2}(-[A-Z]{2})?$"`},
			}},
		{name: "parameters and body both wrong", req: func() *http.Request {
			r := newRequest("POST", "/v1/scores", "application/json", `{}`, false)
			r.Header.Set("X-Request-ID", "")
			return r
		}(), wantStatus: 400, wantReason: ReasonBody, wantRoute: "createScore",
			wantErrors: []Violation{{Pointer: "/audio_base64", Detail: `property "audio_base64" is missing`}}},
		{name: "not JSON", req: newRequest("POST", "/v1/scores", "application/json", `{"audio_base64":`, false),
			wantStatus: 400, wantReason: ReasonBody, wantRoute: "createScore",
			wantErrors: []Violation{{Pointer: "", Detail: "the body is not a single valid JSON document"}}},
		{name: "invalid UTF-8 in a string", req: newRequest("POST", "/v1/scores", "application/json", `{"audio_base64":"AAAA","reference_text":"caf`+"\xe9"+`"}`, false),
			wantStatus: 400, wantReason: ReasonBody, wantRoute: "createScore",
			wantErrors: []Violation{{Pointer: "", Detail: "the body is not valid UTF-8"}}},
		{name: "JSON followed by more", req: newRequest("POST", "/v1/scores", "application/json", validJSON+` {"audio_base64":"x"}`, false),
			wantStatus: 400, wantReason: ReasonBody, wantRoute: "createScore",
			wantErrors: []Violation{{Pointer: "", Detail: "the body is not a single valid JSON document"}}},
		{name: "body missing", req: newRequest("POST", "/v1/scores", "application/json", "", false),
			wantStatus: 400, wantReason: ReasonBody, wantRoute: "createScore",
			wantErrors: []Violation{{Pointer: "", Detail: "a request body is required"}}},
		{name: "multipart without boundary", req: newRequest("POST", "/v1/scores", "multipart/form-data", multipartBody("RIFF"), false),
			wantStatus: 400, wantReason: ReasonParameters, wantRoute: "createScore",
			wantErrors: []Violation{{Parameter: "Content-Type", In: "header", Detail: "a multipart body needs a boundary parameter"}}},
		{name: "text body", req: newRequest("POST", "/v1/scores", "text/plain", "hello", false),
			wantStatus: 415, wantReason: ReasonMediaType, wantRoute: "createScore"},
		{name: "no content type", req: newRequest("POST", "/v1/scores", "", validJSON, false),
			wantStatus: 415, wantReason: ReasonMediaType, wantRoute: "createScore"},
		{name: "malformed content type", req: newRequest("POST", "/v1/scores", "application/json; =", validJSON, false),
			wantStatus: 415, wantReason: ReasonMediaType, wantRoute: "createScore"},
		{name: "body on a GET", req: newRequest("GET", "/v1/scores/sc_1", "application/json", "{}", false),
			wantStatus: 415, wantReason: ReasonMediaType, wantRoute: "getScore"},
		{name: "body on a GET, chunked", req: newRequest("GET", "/v1/scores/sc_1", "application/json", "{}", true),
			wantStatus: 415, wantReason: ReasonMediaType, wantRoute: "getScore"},
		{name: "JSON over max_body, declared", req: newRequest("POST", "/v1/scores", "application/json", `{"audio_base64":"`+strings.Repeat("A", 1100)+`"}`, false),
			wantStatus: 413, wantReason: ReasonTooLarge, wantRoute: "createScore"},
		{name: "JSON over max_body, chunked", req: newRequest("POST", "/v1/scores", "application/json", `{"audio_base64":"`+strings.Repeat("A", 1100)+`"}`, true),
			wantStatus: 413, wantReason: ReasonTooLarge, wantRoute: "createScore"},
		{name: "multipart over max_upload, declared", req: newRequest("POST", "/v1/scores", multipartCT, multipartBody(strings.Repeat("a", 5000)), false),
			wantStatus: 413, wantReason: ReasonTooLarge, wantRoute: "createScore"},
	}
	v := newTestValidator(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := v.Validate(context.Background(), tc.req)
			if tc.wantStatus == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if res.Route != tc.wantRoute {
					t.Fatalf("route %q, want %q", res.Route, tc.wantRoute)
				}
				return
			}
			var f *Failure
			if !errors.As(err, &f) {
				t.Fatalf("err %v, want a *Failure", err)
			}
			if f.Status != tc.wantStatus || f.Reason != tc.wantReason || f.Route != tc.wantRoute {
				t.Fatalf("got %d %s %q, want %d %s %q (%v)", f.Status, f.Reason, f.Route, tc.wantStatus, tc.wantReason, tc.wantRoute, f)
			}
			if got := strings.Join(f.Allow, ", "); got != tc.wantAllow {
				t.Fatalf("Allow %q, want %q", got, tc.wantAllow)
			}
			if tc.wantErrors != nil {
				if !equalViolations(f.Violations, tc.wantErrors) {
					t.Fatalf("violations\n%+v\nwant\n%+v", f.Violations, tc.wantErrors)
				}
			}
		})
	}
}

// equalViolations compares violations regardless of their order, which
// follows kin-openapi's map iteration for some schemas.
func equalViolations(got, want []Violation) bool {
	if len(got) != len(want) {
		return false
	}
	used := make([]bool, len(got))
outer:
	for _, w := range want {
		for i, g := range got {
			if !used[i] && g == w {
				used[i] = true
				continue outer
			}
		}
		return false
	}
	return true
}

func TestValidateReplaysBodies(t *testing.T) {
	v := newTestValidator(t)
	body := `{"audio_base64":"AAAA"}`
	r := newRequest("POST", "/v1/scores", "application/json", body, true)
	res, err := v.Validate(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if res.Upload != nil {
		t.Fatal("a JSON body was streamed")
	}
	if r.ContentLength != int64(len(body)) {
		t.Fatalf("ContentLength %d after buffering a chunked body", r.ContentLength)
	}
	for i := 0; i < 2; i++ {
		rc, _ := r.GetBody()
		if got, _ := io.ReadAll(rc); string(got) != body {
			t.Fatalf("replay %d: %q", i, got)
		}
	}
	if got, _ := io.ReadAll(r.Body); string(got) != body {
		t.Fatalf("forwarded body %q", got)
	}

	up := multipartBody("RIFF")
	r = newRequest("POST", "/v1/scores", multipartCT, up, true)
	res, err = v.Validate(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if res.Upload == nil || r.Body != res.Upload {
		t.Fatal("a multipart body was not streamed through an Upload")
	}
	if got, _ := io.ReadAll(r.Body); string(got) != up || res.Upload.Exceeded() {
		t.Fatalf("streamed body %q, exceeded %v", got, res.Upload.Exceeded())
	}
}

func TestUploadLimit(t *testing.T) {
	v := newTestValidator(t)
	r := newRequest("POST", "/v1/scores", multipartCT, multipartBody(strings.Repeat("a", 5000)), true)
	res, err := v.Validate(context.Background(), r)
	if err != nil {
		t.Fatalf("a chunked upload was refused before streaming: %v", err)
	}
	n, err := io.Copy(io.Discard, r.Body)
	var mbe *http.MaxBytesError
	if !errors.As(err, &mbe) || mbe.Limit != testLimits.MaxUpload {
		t.Fatalf("err %v, want *http.MaxBytesError at %d", err, testLimits.MaxUpload)
	}
	if n != testLimits.MaxUpload || !res.Upload.Exceeded() {
		t.Fatalf("passed %d bytes (exceeded %v), want exactly the limit %d", n, res.Upload.Exceeded(), testLimits.MaxUpload)
	}
	if _, err := r.Body.Read(make([]byte, 10)); !errors.As(err, &mbe) {
		t.Fatalf("read after the limit: %v", err)
	}
}

func TestRouteLimits(t *testing.T) {
	c, err := LoadContract(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewValidator(c, Limits{}, map[string]Limits{"noSuchOperation": {MaxBody: 1}}); err == nil || !strings.Contains(err.Error(), "noSuchOperation") {
		t.Fatalf("unknown operationId: %v", err)
	}
	v, err := NewValidator(c, Limits{}, map[string]Limits{"createScore": {MaxBody: 64}})
	if err != nil {
		t.Fatal(err)
	}
	if v.defaults != (Limits{MaxBody: DefaultMaxBody, MaxUpload: DefaultMaxUpload}) {
		t.Fatalf("defaults %+v", v.defaults)
	}
	if v.routes["createScore"] != (Limits{MaxBody: 64, MaxUpload: DefaultMaxUpload}) {
		t.Fatalf("route limits %+v: unset fields must inherit the defaults", v.routes["createScore"])
	}
	_, err = v.Validate(context.Background(), newRequest("POST", "/v1/scores", "application/json", `{"audio_base64":"`+strings.Repeat("A", 80)+`"}`, false))
	var f *Failure
	if !errors.As(err, &f) || f.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("route limit not applied: %v", err)
	}
}

func TestViolationJSON(t *testing.T) {
	out, _ := json.Marshal([]Violation{{Pointer: "", Detail: "d1"}, {Pointer: "/a~1b", Detail: "d2"}, {Parameter: "limit", In: "query", Detail: "d3"}})
	want := `[{"pointer":"","detail":"d1"},{"pointer":"/a~1b","detail":"d2"},{"parameter":"limit","in":"query","detail":"d3"}]`
	if string(out) != want {
		t.Fatalf("%s\nwant %s", out, want)
	}
	if got := jsonPointer([]string{"a/b", "c~d", "0"}); got != "/a~1b/c~0d/0" {
		t.Fatalf("jsonPointer: %q", got)
	}
}

func TestLoadContractFile(t *testing.T) {
	if _, err := LoadContract(context.Background(), "../../api/scoring.yaml"); err != nil {
		t.Fatalf("the repository's document: %v", err)
	}
	if _, err := LoadContract(context.Background(), "testdata/does-not-exist.yaml"); err == nil || !strings.Contains(err.Error(), "does-not-exist.yaml") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestCheckBase64MatchesKinOpenAPI(t *testing.T) {
	re := regexp.MustCompile(openapi3.FormatOfStringByte)
	for _, s := range []string{"", "AAAA", "UklGRg==", "Ukl=Rg==", "a-b_c+d/e", "====", "AB==C", "AB C", "é", "AB\n", "abc=d", "A=\x00"} {
		if got, want := checkBase64(s) == nil, re.MatchString(s); got != want {
			t.Errorf("checkBase64(%q) accepts: %v, kin-openapi's regexp: %v", s, got, want)
		}
	}
	v := newTestValidator(t)
	_, err := v.Validate(context.Background(), newRequest("POST", "/v1/scores", "application/json", `{"audio_base64":"AA!A"}`, false))
	var f *Failure
	if !errors.As(err, &f) || len(f.Violations) != 1 || f.Violations[0].Pointer != "/audio_base64" {
		t.Fatalf("invalid base64 accepted or misreported: %v", err)
	}
	t.Logf("violation: %s", f.Violations[0].Detail)
}
