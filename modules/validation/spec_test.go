package validation

import (
	"context"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/getkin/kin-openapi/openapi3"
)

// TestSpecIsTheClientsView: /openapi.json describes the API as clients of
// the gateway call it, derived from the backend's document: no backend-only
// path or gateway-set header, both credentials declared and required on
// /v1, and the gateway's own problem answers on every /v1 operation.
func TestSpecIsTheClientsView(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	s := &SpecHandler{}
	if err := s.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(s.body)
	if err != nil {
		t.Fatalf("the served document does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the served document is invalid: %v", err)
	}

	t.Run("paths: the gateway's document, not the backend's", func(t *testing.T) {
		if doc.Paths.Value("/openapi.yaml") != nil {
			t.Error("/openapi.yaml is listed: the gateway does not route it")
		}
		if item := doc.Paths.Value("/openapi.json"); item == nil || item.Get == nil {
			t.Error("GET /openapi.json is not listed")
		}
		for _, p := range []string{"/v1/scores", "/v1/scores/{id}", "/v1/users/{id}/scores", "/healthz", "/readyz"} {
			if doc.Paths.Value(p) == nil {
				t.Errorf("%s is missing", p)
			}
		}
	})

	t.Run("no parameter the gateway sets", func(t *testing.T) {
		check := func(where string, params openapi3.Parameters) {
			for _, p := range params {
				if strings.HasPrefix(strings.ToLower(p.Value.Name), "x-auth-") {
					t.Errorf("%s lists %s %s", where, p.Value.In, p.Value.Name)
				}
			}
		}
		for path, item := range doc.Paths.Map() {
			check(path, item.Parameters)
			for method, op := range item.Operations() {
				check(method+" "+path, op.Parameters)
			}
		}
		for name, p := range doc.Components.Parameters {
			check("components.parameters."+name, openapi3.Parameters{p})
		}
		// Nor does its prose name them: a client cannot send them.
		if i := strings.Index(strings.ToLower(string(s.body)), "x-auth-"); i >= 0 {
			t.Errorf("the document mentions a gateway-set header: %q", s.body[max(i-60, 0):min(i+40, len(s.body))])
		}
	})

	t.Run("bearer and API key declared", func(t *testing.T) {
		bearer, key := doc.Components.SecuritySchemes["bearer"], doc.Components.SecuritySchemes["apiKey"]
		if bearer == nil || bearer.Value.Type != "http" || bearer.Value.Scheme != "bearer" || bearer.Value.BearerFormat != "JWT" {
			t.Errorf("bearer scheme %+v, want http bearer JWT", bearer)
		}
		if key == nil || key.Value.Type != "apiKey" || key.Value.In != "header" || key.Value.Name != "X-API-Key" {
			t.Errorf("apiKey scheme %+v, want apiKey in header X-API-Key", key)
		}
	})

	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			if !strings.HasPrefix(path, "/v1/") {
				if op.Security != nil && len(*op.Security) > 0 {
					t.Errorf("%s requires credentials: the gateway leaves it open", name)
				}
				continue
			}
			t.Run(name, func(t *testing.T) {
				if op.Security == nil || len(*op.Security) != 2 {
					t.Fatalf("security %v, want bearer or apiKey", op.Security)
				}
				for i, want := range []string{"bearer", "apiKey"} {
					if _, ok := (*op.Security)[i][want]; !ok || len((*op.Security)[i]) != 1 {
						t.Errorf("security requirement %d is %v, want %s alone", i, (*op.Security)[i], want)
					}
				}
				for _, status := range []string{"400", "401", "403", "429", "503"} {
					r := op.Responses.Value(status)
					if r == nil || r.Value == nil || r.Value.Content.Get("application/problem+json") == nil {
						t.Errorf("no %s problem+json answer", status)
					}
				}
			})
		}
	}
}
