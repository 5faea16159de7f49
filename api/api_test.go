package api

import (
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestOpenAPIValid loads the document the way the gateway does and checks that
// it is a valid OpenAPI 3.0 document describing the expected operations.
func TestOpenAPIValid(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(Scoring)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	for _, op := range []struct{ method, path string }{
		{"POST", "/v1/scores"},
		{"GET", "/v1/scores/{id}"},
		{"GET", "/v1/users/{id}/scores"},
		{"GET", "/healthz"},
		{"GET", "/readyz"},
		{"GET", "/openapi.yaml"},
	} {
		item := doc.Paths.Find(op.path)
		if item == nil || item.GetOperation(op.method) == nil {
			t.Errorf("no operation %s %s", op.method, op.path)
		}
	}
	for _, name := range []string{"ScoreRequest", "ScoreUpload", "Score", "ScoreList", "Problem"} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("no schema %s", name)
		}
	}
}
