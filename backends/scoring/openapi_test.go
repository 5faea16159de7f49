package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/lexiscore/gateway/api"
)

// TestOpenAPIConformance checks that the OpenAPI document describes the
// server as it behaves: every response matches the document, and the
// document rejects exactly the requests that the server rejects as
// malformed. The gateway validates requests with the same document and
// library, so a difference would make it refuse valid requests or let
// malformed ones through.
func TestOpenAPIConformance(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(api.Scoring)
	if err != nil {
		t.Fatalf("load OpenAPI: %v", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	ts := startServer(t)

	var created score
	decodeJSON(t, ts.postJSON(t, `{"audio_base64":"AQID"}`, nil), http.StatusCreated, &created)
	formCT, form := multipartBody(t, [2]string{"audio", "\x00\x01binary"}, [2]string{"language", "fr"}, [2]string{"reference_text", "bonjour"})
	badFormCT, badForm := multipartBody(t, [2]string{"audio", "a"}, [2]string{"language", "french"})
	noAudioCT, noAudio := multipartBody(t, [2]string{"language", "fr"})
	extraCT, extra := multipartBody(t, [2]string{"audio", "a"}, [2]string{"speed", "2"})
	jsonCT := "application/json"

	for _, tc := range []struct {
		name, method, path, contentType, body string
	}{
		{"create json", "POST", "/v1/scores", jsonCT, `{"audio_base64":"AQID","language":"de-AT","reference_text":"hallo"}`},
		{"create form", "POST", "/v1/scores", formCT, form.String()},
		{"create bad language", "POST", "/v1/scores", jsonCT, `{"audio_base64":"AQID","language":"german"}`},
		{"create bad form language", "POST", "/v1/scores", badFormCT, badForm.String()},
		{"create unknown member", "POST", "/v1/scores", jsonCT, `{"audio_base64":"AQID","x":1}`},
		{"create without audio", "POST", "/v1/scores", jsonCT, `{}`},
		{"create text", "POST", "/v1/scores", "text/plain", `hello`},
		{"create empty audio", "POST", "/v1/scores", jsonCT, `{"audio_base64":""}`},
		{"create bad base64", "POST", "/v1/scores", jsonCT, `{"audio_base64":"not base64!"}`},
		{"create long reference", "POST", "/v1/scores", jsonCT, `{"audio_base64":"AQID","reference_text":"` + strings.Repeat("é", 2001) + `"}`},
		{"create form without audio", "POST", "/v1/scores", noAudioCT, noAudio.String()},
		{"create form unknown part", "POST", "/v1/scores", extraCT, extra.String()},
		{"get score", "GET", "/v1/scores/" + created.ID, "", ""},
		{"get unknown score", "GET", "/v1/scores/unknown", "", ""},
		{"get invalid id", "GET", "/v1/scores/a.b", "", ""},
		{"list", "GET", "/v1/users/anonymous/scores?limit=2", "", ""},
		{"list default limit", "GET", "/v1/users/anonymous/scores", "", ""},
		{"list limit 0", "GET", "/v1/users/anonymous/scores?limit=0", "", ""},
		{"list limit 101", "GET", "/v1/users/anonymous/scores?limit=101", "", ""},
		{"healthz", "GET", "/healthz", "", ""},
		{"readyz", "GET", "/readyz", "", ""},
		{"openapi", "GET", "/openapi.yaml", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkConformance(t, router, ts, tc.method, tc.path, tc.contentType, tc.body)
		})
	}

	t.Run("injected error", func(t *testing.T) {
		ts.setFaults(t, faults{ErrorRate: 1, RetryAfter: "1"})
		checkConformance(t, router, ts, "GET", "/v1/scores/"+created.ID, "", "")
	})
}

// checkConformance sends a request to ts, validates the response against the
// document, and checks that the document rejects the request exactly when the
// server does.
func checkConformance(t *testing.T, router routers.Router, ts *testServer, method, path, contentType, body string) {
	t.Helper()
	ctx := t.Context()
	header := http.Header{"X-Request-Id": {"conformance"}}
	if contentType != "" {
		header.Set("Content-Type", contentType)
	}
	// Validate the request as the server receives it, with a relative URL:
	// that is what the document's server "/" matches.
	req := httptest.NewRequestWithContext(ctx, method, path, strings.NewReader(body))
	req.Header = header.Clone()
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Fatalf("find route: %v", err)
	}
	reqInput := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route}
	reqErr := openapi3filter.ValidateRequest(ctx, reqInput)

	resp := ts.do(t, method, ts.api+path, strings.NewReader(body), header)
	respErr := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: reqInput,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(resp.body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	})
	if respErr != nil {
		t.Errorf("response %d %s does not match the document: %v", resp.StatusCode, resp.body, respErr)
	}
	// The server rejects a malformed request with 400 or 415; other answers,
	// such as 404 for an unknown id, concern valid requests.
	rejected := resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnsupportedMediaType
	if rejected != (reqErr != nil) {
		t.Errorf("server answered %d %s, but document validation says: %v", resp.StatusCode, resp.body, reqErr)
	}
}
