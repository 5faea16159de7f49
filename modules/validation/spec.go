package validation

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/getkin/kin-openapi/openapi3"

	"github.com/lexiscore/gateway/modules/problem"
)

// SpecHandler serves the OpenAPI document, in JSON, to GET and HEAD
// requests, so that clients can read the contract the gateway enforces. It
// answers with an ETag and honours conditional requests.
//
// It serves the document as clients of the gateway see it, not as the
// backend does: the backend's own document operation (operationId
// "openapi") is replaced by this one at /openapi.json; the X-Auth-* headers the gateway sets
// are no client parameters; operations under /v1/ require a bearer JWT or an
// API key and list the problem answers the gateway itself gives (400, 401,
// 403, 429, 503) beside the backend's.
type SpecHandler struct {
	// SpecFile is the OpenAPI document (YAML or JSON). Default: the
	// embedded scoring API document. Use the same value as openapi_validate.
	SpecFile string `json:"spec_file,omitempty"`

	body    []byte
	etag    string
	modTime time.Time
}

// CaddyModule returns the Caddy module information.
func (SpecHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.openapi_spec",
		New: func() caddy.Module { return new(SpecHandler) },
	}
}

// Provision loads the document and renders it once.
func (s *SpecHandler) Provision(ctx caddy.Context) error {
	contract, err := LoadContract(ctx, s.SpecFile)
	if err != nil {
		return fmt.Errorf("openapi_spec: %w", err)
	}
	doc := clientView(contract.doc)
	if err := doc.Validate(ctx); err != nil {
		return fmt.Errorf("openapi_spec: the document as clients see it is invalid: %w", err)
	}
	if s.body, err = json.Marshal(doc); err != nil {
		return fmt.Errorf("openapi_spec: encoding the document as JSON: %w", err)
	}
	sum := sha256.Sum256(s.body)
	s.etag = `"` + hex.EncodeToString(sum[:8]) + `"`
	s.modTime = time.Now()
	return nil
}

// ServeHTTP answers with the document; it never calls next.
func (s *SpecHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return problem.New(http.StatusMethodNotAllowed, "method-not-allowed", "This method is not allowed on this resource.", nil)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("ETag", s.etag)
	h.Set("Cache-Control", "public, max-age=300")
	http.ServeContent(w, r, "", s.modTime, bytes.NewReader(s.body))
	return nil
}

// specPath is where the shipped Caddyfile serves this handler, and
// apiKeyHeader the header its api_key provider reads (the default).
const (
	specPath     = "/openapi.json"
	apiKeyHeader = "X-API-Key"
)

// authPrefix is where the gateway authenticates, rate-limits and
// authorizes every request (the shipped Caddyfile's /v1/*).
const authPrefix = "/v1/"

// gatewayAnswers are the problem answers the gateway gives on authPrefix
// before or instead of the backend's (docs/problems.md).
var gatewayAnswers = []struct {
	status, name, description string
	headers                   []string
}{
	{"400", "BadRequest", "The request does not match this document (validated by the gateway) or is malformed.", nil},
	{"401", "Unauthorized", "No credentials, or ones the gateway does not accept; WWW-Authenticate says why.", []string{"WWW-Authenticate"}},
	{"403", "Forbidden", "The caller may not read this user's data: another user's, without the scores:read:tenant or scores:read:any scope.", nil},
	{"429", "TooManyRequests", "A rate limit of the caller (or, before authentication, of its IP address) is exhausted.", []string{"Retry-After", "RateLimit-Policy", "RateLimit"}},
	{"503", "ServiceUnavailable", "The backend is unavailable or overloaded (circuit open, queue full, degraded mode).", []string{"Retry-After"}},
}

// clientView turns the loaded document, which describes the backend, into
// what clients of the gateway see. It changes doc in place and returns it.
func clientView(doc *openapi3.T) *openapi3.T {
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "openapi" {
				item.SetOperation(method, nil)
			}
			op.Parameters = clientParameters(op.Parameters)
		}
		item.Parameters = clientParameters(item.Parameters)
		if len(item.Operations()) == 0 {
			doc.Paths.Delete(path)
		}
	}
	if doc.Components == nil {
		doc.Components = &openapi3.Components{}
	}
	for name, p := range doc.Components.Parameters {
		if gatewaySets(p) {
			delete(doc.Components.Parameters, name)
		}
	}
	doc.Paths.Set(specPath, &openapi3.PathItem{Get: documentOperation()})

	if doc.Components.SecuritySchemes == nil {
		doc.Components.SecuritySchemes = openapi3.SecuritySchemes{}
	}
	doc.Components.SecuritySchemes["bearer"] = &openapi3.SecuritySchemeRef{Value: openapi3.NewJWTSecurityScheme().
		WithDescription("A JWT in the Authorization header (RFC 6750).")}
	doc.Components.SecuritySchemes["apiKey"] = &openapi3.SecuritySchemeRef{Value: openapi3.NewSecurityScheme().
		WithType("apiKey").WithIn("header").WithName(apiKeyHeader).WithDescription("An API key (lsk_...).")}
	either := openapi3.SecurityRequirements{
		openapi3.NewSecurityRequirement().Authenticate("bearer"),
		openapi3.NewSecurityRequirement().Authenticate("apiKey"),
	}
	responses := gatewayResponses(doc)
	for path, item := range doc.Paths.Map() {
		if !strings.HasPrefix(path, authPrefix) {
			continue
		}
		for _, op := range item.Operations() {
			op.Security = &either
			for status, ref := range responses {
				if op.Responses.Value(status) == nil {
					op.Responses.Set(status, ref)
				}
			}
		}
	}
	return doc
}

// gatewayResponses declares gatewayAnswers in doc's components, keeping a
// response the document already has under the same name, and returns a
// reference to each by status.
func gatewayResponses(doc *openapi3.T) map[string]*openapi3.ResponseRef {
	if doc.Components.Responses == nil {
		doc.Components.Responses = openapi3.ResponseBodies{}
	}
	// The document's own Problem schema when it has one (the scoring API's
	// does), else any object.
	problem := openapi3.NewObjectSchema().NewRef()
	if ref, ok := doc.Components.Schemas["Problem"]; ok {
		problem = &openapi3.SchemaRef{Ref: "#/components/schemas/Problem", Value: ref.Value}
	}
	refs := map[string]*openapi3.ResponseRef{}
	for _, a := range gatewayAnswers {
		resp, ok := doc.Components.Responses[a.name]
		if !ok {
			content := openapi3.NewContentWithSchemaRef(problem, []string{"application/problem+json"})
			r := openapi3.NewResponse().WithDescription(a.description).WithContent(content)
			r.Headers = openapi3.Headers{}
			for _, h := range a.headers {
				r.Headers[h] = &openapi3.HeaderRef{Value: &openapi3.Header{Parameter: openapi3.Parameter{Schema: openapi3.NewStringSchema().NewRef()}}}
			}
			resp = &openapi3.ResponseRef{Value: r}
			doc.Components.Responses[a.name] = resp
		}
		refs[a.status] = &openapi3.ResponseRef{Ref: "#/components/responses/" + a.name, Value: resp.Value}
	}
	return refs
}

// documentOperation describes this handler.
func documentOperation() *openapi3.Operation {
	op := openapi3.NewOperation()
	op.OperationID = "openapi"
	op.Summary = "This document, as clients of the gateway see it."
	op.AddResponse(http.StatusOK, openapi3.NewResponse().WithDescription("The OpenAPI document.").
		WithContent(openapi3.NewContentWithJSONSchema(openapi3.NewObjectSchema())))
	return op
}

// clientParameters leaves out the parameters the gateway sets itself.
func clientParameters(params openapi3.Parameters) openapi3.Parameters {
	var kept openapi3.Parameters
	for _, p := range params {
		if !gatewaySets(p) {
			kept = append(kept, p)
		}
	}
	return kept
}

// gatewaySets reports whether p is an identity header that the gateway
// sets from the credential (and removes from what clients send).
func gatewaySets(p *openapi3.ParameterRef) bool {
	return p != nil && p.Value != nil && p.Value.In == openapi3.ParameterInHeader &&
		strings.HasPrefix(strings.ToLower(p.Value.Name), "x-auth-")
}

// Interface guards
var (
	_ caddy.Provisioner           = (*SpecHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*SpecHandler)(nil)
)
