package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/lexiscore/gateway/api"
)

func TestCreateScoreBothEncodings(t *testing.T) {
	ts := startServer(t)
	audio := "RIFF fake wave data \x00\x01\x02\xff"
	user := http.Header{"X-Auth-User-ID": {"user-42"}}

	var fromJSON, fromForm score
	decodeJSON(t, ts.postJSON(t, fmt.Sprintf(`{"audio_base64":%q}`, base64.StdEncoding.EncodeToString([]byte(audio))), user), http.StatusCreated, &fromJSON)
	resp := ts.postMultipart(t, user, [2]string{"audio", audio}, [2]string{"language", "en-GB"}, [2]string{"reference_text", "hello world"})
	decodeJSON(t, resp, http.StatusCreated, &fromForm)

	if loc := resp.Header.Get("Location"); loc != "/v1/scores/"+fromForm.ID {
		t.Errorf("Location = %q, want /v1/scores/%s", loc, fromForm.ID)
	}
	if fromJSON.ID == fromForm.ID || !idPattern.MatchString(fromJSON.ID) || !idPattern.MatchString(fromForm.ID) {
		t.Errorf("ids %q and %q: want two distinct valid ids", fromJSON.ID, fromForm.ID)
	}
	// The assessment depends on the audio only.
	if fromJSON.Score != fromForm.Score || fromJSON.Fluency != fromForm.Fluency ||
		fromJSON.Pronunciation != fromForm.Pronunciation || fromJSON.Completeness != fromForm.Completeness ||
		fromJSON.AudioSHA256 != fromForm.AudioSHA256 || fromJSON.AudioBytes != int64(len(audio)) || fromForm.AudioBytes != int64(len(audio)) {
		t.Errorf("same audio scored differently:\n json %+v\n form %+v", fromJSON, fromForm)
	}
	if fromJSON.UserID != "user-42" || fromJSON.Language != "en-US" || fromJSON.Transcript == "" {
		t.Errorf("json score = %+v, want user-42, en-US and a fake transcript", fromJSON)
	}
	if fromForm.Language != "en-GB" || fromForm.Transcript != "hello world" {
		t.Errorf("form score = %+v, want en-GB and the reference text as transcript", fromForm)
	}

	var got score
	decodeJSON(t, ts.do(t, http.MethodGet, ts.api+"/v1/scores/"+fromForm.ID, nil, user), http.StatusOK, &got)
	if got != fromForm {
		t.Errorf("GET = %+v, want %+v", got, fromForm)
	}

	var anon score
	decodeJSON(t, ts.postJSON(t, `{"audio_base64":"AQID"}`, nil), http.StatusCreated, &anon)
	if anon.UserID != anonymousUser {
		t.Errorf("user without X-Auth-User-ID = %q, want %q", anon.UserID, anonymousUser)
	}
}

func TestListUserScores(t *testing.T) {
	ts := startServer(t)
	user := http.Header{"X-Auth-User-ID": {"alice"}}
	var ids []string
	for i := range 3 {
		var sc score
		decodeJSON(t, ts.postJSON(t, fmt.Sprintf(`{"audio_base64":%q}`, base64.StdEncoding.EncodeToString([]byte{byte(i)})), user), http.StatusCreated, &sc)
		ids = append(ids, sc.ID)
	}

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{ids[2], ids[1], ids[0]}},
		{"?limit=2", []string{ids[2], ids[1]}},
		{"?limit=100", []string{ids[2], ids[1], ids[0]}},
	} {
		var list scoreList
		decodeJSON(t, ts.do(t, http.MethodGet, ts.api+"/v1/users/alice/scores"+tc.query, nil, user), http.StatusOK, &list)
		var got []string
		for _, sc := range list.Scores {
			got = append(got, sc.ID)
		}
		if list.UserID != "alice" || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: got user %q scores %v, want alice %v", tc.query, list.UserID, got, tc.want)
		}
	}

	resp := ts.do(t, http.MethodGet, ts.api+"/v1/users/nobody/scores", nil, http.Header{"X-Auth-User-ID": {"nobody"}})
	if resp.StatusCode != http.StatusOK || !bytes.Contains(resp.body, []byte(`"scores":[]`)) {
		t.Errorf("unknown user: %d %s, want 200 with an empty list", resp.StatusCode, resp.body)
	}
}

// TestScoreOwnership: a score is readable by its user, by users of its
// tenant with scores:read:tenant and by anyone with scores:read:any; to
// others it does not exist. Lists follow the same rule.
func TestScoreOwnership(t *testing.T) {
	ts := startServer(t)
	who := func(user, tenant, scopes string) http.Header {
		return http.Header{"X-Auth-User-ID": {user}, "X-Auth-User-Tenant": {tenant}, "X-Auth-User-Scopes": {scopes}}
	}
	alice := who("alice", "acme", "")
	var sc score
	decodeJSON(t, ts.postJSON(t, `{"audio_base64":"AQID"}`, alice), http.StatusCreated, &sc)
	var other score
	decodeJSON(t, ts.postJSON(t, `{"audio_base64":"AQID"}`, who("alice", "initech", "")), http.StatusCreated, &other)

	for _, tc := range []struct {
		name       string
		h          http.Header
		score      int
		list       int
		listLength int
	}{
		{"the owner", alice, http.StatusOK, http.StatusOK, 2},
		{"another user", who("bob", "globex", ""), http.StatusNotFound, http.StatusForbidden, 0},
		{"another user of the tenant, without a scope", who("carol", "acme", "openid"), http.StatusNotFound, http.StatusForbidden, 0},
		{"a tenant-scoped user of the tenant", who("carol", "acme", "openid scores:read:tenant"), http.StatusOK, http.StatusOK, 1},
		{"a tenant-scoped user of another tenant", who("bob", "globex", "scores:read:tenant"), http.StatusNotFound, http.StatusOK, 0},
		{"a tenant-scoped user without a tenant", who("bob", "", "scores:read:tenant"), http.StatusNotFound, http.StatusOK, 0},
		{"an operator", who("ops", "lexiscore", "scores:read:any"), http.StatusOK, http.StatusOK, 2},
		{"anonymous", nil, http.StatusNotFound, http.StatusForbidden, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := ts.do(t, http.MethodGet, ts.api+"/v1/scores/"+sc.ID, nil, tc.h)
			if resp.StatusCode != tc.score {
				t.Fatalf("GET score: %d, want %d", resp.StatusCode, tc.score)
			}
			if tc.score == http.StatusNotFound {
				checkProblem(t, resp, http.StatusNotFound, probNotFound)
			}
			resp = ts.do(t, http.MethodGet, ts.api+"/v1/users/alice/scores", nil, tc.h)
			if resp.StatusCode != tc.list {
				t.Fatalf("GET list: %d, want %d", resp.StatusCode, tc.list)
			}
			if tc.list == http.StatusForbidden {
				checkProblem(t, resp, http.StatusForbidden, probForbidden)
				return
			}
			var list scoreList
			decodeJSON(t, resp, http.StatusOK, &list)
			if len(list.Scores) != tc.listLength {
				t.Fatalf("%d scores listed, want %d", len(list.Scores), tc.listLength)
			}
		})
	}
}

func TestLimitValidation(t *testing.T) {
	ts := startServer(t)
	for _, limit := range []string{"0", "101", "-1", "abc", "1.5", "%20"} {
		t.Run(limit, func(t *testing.T) {
			checkProblem(t, ts.do(t, http.MethodGet, ts.api+"/v1/users/alice/scores?limit="+limit, nil, nil), http.StatusBadRequest, probInvalidRequest)
		})
	}
}

func TestIDValidation(t *testing.T) {
	ts := startServer(t)
	for _, tc := range []struct {
		id     string
		status int
	}{
		{"sc_unknown", http.StatusNotFound},
		{strings.Repeat("a", 64), http.StatusNotFound},
		{"A-z_09", http.StatusNotFound},
		{strings.Repeat("a", 65), http.StatusBadRequest},
		{"a.b", http.StatusBadRequest},
		{"a%20b", http.StatusBadRequest},
		{"%C3%A9", http.StatusBadRequest},
	} {
		t.Run(tc.id, func(t *testing.T) {
			typ := probNotFound
			if tc.status == http.StatusBadRequest {
				typ = probInvalidRequest
			}
			checkProblem(t, ts.do(t, http.MethodGet, ts.api+"/v1/scores/"+tc.id, nil, nil), tc.status, typ)
			if tc.status == http.StatusBadRequest {
				checkProblem(t, ts.do(t, http.MethodGet, ts.api+"/v1/users/"+tc.id+"/scores", nil, nil), tc.status, typ)
			}
		})
	}
}

func TestCreateScoreValidation(t *testing.T) {
	ts := startServer(t)
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	for _, tc := range []struct {
		name   string
		header http.Header
		body   string
		status int
		typ    string
	}{
		{"json without audio", jsonCT, `{"language":"en"}`, 400, probInvalidRequest},
		{"json empty audio", jsonCT, `{"audio_base64":""}`, 400, probInvalidRequest},
		{"json bad base64", jsonCT, `{"audio_base64":"not base64!"}`, 400, probInvalidRequest},
		{"json bad language", jsonCT, `{"audio_base64":"AQID","language":"english"}`, 400, probInvalidRequest},
		{"json empty language", jsonCT, `{"audio_base64":"AQID","language":""}`, 400, probInvalidRequest},
		{"json long reference", jsonCT, `{"audio_base64":"AQID","reference_text":"` + strings.Repeat("é", 2001) + `"}`, 400, probInvalidRequest},
		{"json unknown member", jsonCT, `{"audio_base64":"AQID","speed":2}`, 400, probInvalidRequest},
		{"json trailing data", jsonCT, `{"audio_base64":"AQID"} {}`, 400, probInvalidRequest},
		{"json malformed", jsonCT, `{"audio_base64":`, 400, probInvalidRequest},
		{"json wrong type", jsonCT, `{"audio_base64":12}`, 400, probInvalidRequest},
		{"text body", http.Header{"Content-Type": {"text/plain"}}, `hello`, 415, probUnsupportedMediaType},
		{"no content type", nil, `{"audio_base64":"AQID"}`, 415, probUnsupportedMediaType},
		{"multipart without boundary", http.Header{"Content-Type": {"multipart/form-data"}}, `x`, 400, probInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkProblem(t, ts.do(t, http.MethodPost, ts.api+"/v1/scores", strings.NewReader(tc.body), tc.header), tc.status, tc.typ)
		})
	}

	for _, tc := range []struct {
		name  string
		parts [][2]string
	}{
		{"form without audio", [][2]string{{"language", "en"}}},
		{"form empty audio", [][2]string{{"audio", ""}}},
		{"form two audio parts", [][2]string{{"audio", "a"}, {"audio", "b"}}},
		{"form unknown part", [][2]string{{"audio", "a"}, {"speed", "2"}}},
		{"form bad language", [][2]string{{"audio", "a"}, {"language", "EN"}}},
		{"form long reference", [][2]string{{"audio", "a"}, {"reference_text", strings.Repeat("x", 2001)}}},
		{"form huge reference", [][2]string{{"audio", "a"}, {"reference_text", strings.Repeat("x", maxFieldBytes+1)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkProblem(t, ts.postMultipart(t, nil, tc.parts...), http.StatusBadRequest, probInvalidRequest)
		})
	}
}

func TestAudioSizeLimit(t *testing.T) {
	ts := startServer(t)
	tooLarge := bytes.Repeat([]byte{0xAB}, maxAudioBytes+1)

	t.Run("json", func(t *testing.T) {
		body := `{"audio_base64":"` + base64.StdEncoding.EncodeToString(tooLarge) + `"}`
		checkProblem(t, ts.postJSON(t, body, nil), http.StatusRequestEntityTooLarge, probTooLarge)
	})
	t.Run("json body", func(t *testing.T) {
		body := `{"audio_base64":"AQID","reference_text":"` + strings.Repeat(" ", maxJSONBody) + `"}`
		checkProblem(t, ts.postJSON(t, body, nil), http.StatusRequestEntityTooLarge, probTooLarge)
	})
	for _, tc := range []struct {
		name   string
		size   int
		status int
	}{
		{"multipart at limit", maxAudioBytes, http.StatusCreated},
		{"multipart over limit", maxAudioBytes + 1, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Stream the form: the server must not need it all at once.
			pr, pw := io.Pipe()
			mw := multipart.NewWriter(pw)
			go func() {
				fw, err := mw.CreateFormFile("audio", "big.wav")
				if err == nil {
					_, err = fw.Write(tooLarge[:tc.size])
				}
				if err == nil {
					err = mw.Close()
				}
				pw.CloseWithError(err)
			}()
			resp := ts.do(t, http.MethodPost, ts.api+"/v1/scores", pr, http.Header{"Content-Type": {mw.FormDataContentType()}})
			pr.Close()
			if tc.status != http.StatusCreated {
				checkProblem(t, resp, tc.status, probTooLarge)
				return
			}
			var sc score
			decodeJSON(t, resp, tc.status, &sc)
			if sc.AudioBytes != maxAudioBytes {
				t.Errorf("audio_bytes = %d, want %d", sc.AudioBytes, maxAudioBytes)
			}
		})
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	ts := startServer(t)
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/", 404, ""},
		{"GET", "/nope", 404, ""},
		{"GET", "/v1", 404, ""},
		{"GET", "/v1/", 404, ""},
		{"GET", "/v1/nope", 404, ""},
		{"GET", "/v1/scores", 405, "POST"},
		{"DELETE", "/v1/scores/abc", 405, "GET, HEAD"},
		{"POST", "/v1/users/abc/scores", 405, "GET, HEAD"},
		{"POST", "/healthz", 405, "GET, HEAD"},
		{"PUT", "/openapi.yaml", 405, "GET, HEAD"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp := ts.do(t, tc.method, ts.api+tc.path, nil, http.Header{"X-Request-ID": {"req-1"}})
			typ := probNotFound
			if tc.status == http.StatusMethodNotAllowed {
				typ = probMethodNotAllowed
			}
			p := checkProblem(t, resp, tc.status, typ)
			if got := resp.Header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			if p.RequestID != "req-1" || p.Instance != tc.path {
				t.Errorf("problem = %+v, want request_id req-1 and instance %s", p, tc.path)
			}
		})
	}
}

func TestRequestIDEcho(t *testing.T) {
	ts := startServer(t)
	h := http.Header{"X-Request-ID": {"abc-123"}}
	for _, resp := range []response{
		ts.postJSON(t, `{"audio_base64":"AQID"}`, h),
		ts.postJSON(t, `{}`, h),
		ts.do(t, http.MethodGet, ts.api+"/healthz", nil, h),
		ts.do(t, http.MethodGet, ts.admin+"/stats", nil, h),
	} {
		if got := resp.Header.Get("X-Request-ID"); got != "abc-123" {
			t.Errorf("%s %s: X-Request-ID = %q, want abc-123", resp.Request.Method, resp.Request.URL.Path, got)
		}
	}
	if p := checkProblem(t, ts.postJSON(t, `{}`, h), http.StatusBadRequest, probInvalidRequest); p.RequestID != "abc-123" {
		t.Errorf("problem request_id = %q, want abc-123", p.RequestID)
	}
	resp := ts.postJSON(t, `{}`, nil)
	if got, ok := resp.Header["X-Request-Id"]; ok {
		t.Errorf("X-Request-ID = %q without one in the request", got)
	}
	if bytes.Contains(resp.body, []byte("request_id")) {
		t.Errorf("problem %s has a request_id without one in the request", resp.body)
	}
}

func TestHealthAndOpenAPI(t *testing.T) {
	ts := startServer(t)
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
		var body struct{ Status string }
		decodeJSON(t, ts.do(t, http.MethodGet, ts.api+path, nil, nil), http.StatusOK, &body)
		if body.Status != want {
			t.Errorf("%s status = %q, want %q", path, body.Status, want)
		}
	}
	resp := ts.do(t, http.MethodGet, ts.api+"/openapi.yaml", nil, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/yaml" || !bytes.Equal(resp.body, api.Scoring) {
		t.Errorf("GET /openapi.yaml = %d %q, want 200 application/yaml with the embedded document", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var admin struct{ Status string }
	decodeJSON(t, ts.do(t, http.MethodGet, ts.admin+"/healthz", nil, nil), http.StatusOK, &admin)
}
