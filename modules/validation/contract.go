package validation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/lexiscore/gateway/api"
)

// Contract is an OpenAPI 3 document, validated and ready to route requests.
// It is read-only after loading and safe for concurrent use.
type Contract struct {
	doc    *openapi3.T
	router routers.Router
	// methods are the HTTP methods the document uses, for Allow headers.
	methods []string
	// json is the document in JSON form, as served to clients.
	json []byte
}

// LoadContract loads the document at path (YAML or JSON), or the scoring
// API's embedded document when path is empty. References outside the file
// are refused, so loading never reaches the network.
func LoadContract(ctx context.Context, path string) (*Contract, error) {
	loader := openapi3.NewLoader()
	loader.Context = ctx
	var (
		doc *openapi3.T
		err error
	)
	if path == "" {
		doc, err = loader.LoadFromData(api.Scoring)
	} else {
		doc, err = loader.LoadFromFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("loading OpenAPI document %s: %w", describe(path), err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("OpenAPI document %s is invalid: %w", describe(path), err)
	}
	served, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding OpenAPI document %s as JSON: %w", describe(path), err)
	}
	// Routing is by path alone: the gateway answers on its own host names,
	// whatever servers the document lists.
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("routing OpenAPI document %s: %w", describe(path), err)
	}
	c := &Contract{doc: doc, router: router, json: served}
	for _, item := range doc.Paths.Map() {
		for m := range item.Operations() {
			if !slices.Contains(c.methods, m) {
				c.methods = append(c.methods, m)
			}
		}
	}
	slices.Sort(c.methods)
	return c, nil
}

func describe(path string) string {
	if path == "" {
		return "(embedded scoring API)"
	}
	return path
}

// JSON returns the document in JSON form. The caller must not modify it.
func (c *Contract) JSON() []byte { return c.json }

// RouteNames lists the name of every operation (see routeName).
func (c *Contract) RouteNames() []string {
	var names []string
	for path, item := range c.doc.Paths.Map() {
		for m, op := range item.Operations() {
			names = append(names, routeName(m, path, op))
		}
	}
	slices.Sort(names)
	return names
}

// routeName names an operation by its operationId, or "METHOD /template"
// without one: a bounded set, fit for metric labels.
func routeName(method, path string, op *openapi3.Operation) string {
	if op != nil && op.OperationID != "" {
		return op.OperationID
	}
	return method + " " + path
}

// find routes r. HEAD is routed like GET, as Go servers answer it. On
// failure it returns the Failure to answer with: 404, or 405 with the
// methods the path does allow.
func (c *Contract) find(r *http.Request) (*routers.Route, map[string]string, *Failure) {
	if route, params, ok := c.match(r); ok {
		return route, params, nil
	}
	if r.Method == http.MethodHead {
		if route, params, ok := c.match(withMethod(r, http.MethodGet)); ok {
			return route, params, nil
		}
	}
	var allow []string
	var template string
	for _, m := range c.methods {
		if other, _, ok := c.match(withMethod(r, m)); ok {
			allow = append(allow, m)
			template = other.Path
		}
	}
	if len(allow) == 0 {
		return nil, nil, &Failure{
			Status: http.StatusNotFound, Reason: ReasonUnknownRoute, Route: RouteUnknown, Type: "not-found",
			Detail: "No operation of the API matches this path.",
		}
	}
	return nil, nil, &Failure{
		Status: http.StatusMethodNotAllowed, Reason: ReasonMethodNotAllowed, Route: template, Type: "method-not-allowed",
		Detail: "This method is not allowed on this resource.", Allow: allow,
	}
}

// match routes r strictly. The router ignores a trailing slash and lets a
// template variable match an empty segment ("/v1/scores" as
// "/v1/scores/{id}"); the backend does neither, so such a match is no match.
func (c *Contract) match(r *http.Request) (*routers.Route, map[string]string, bool) {
	route, params, err := c.router.FindRoute(r)
	if err != nil || strings.Count(route.Path, "/") != strings.Count(r.URL.Path, "/") {
		return nil, nil, false
	}
	for _, v := range params {
		if v == "" {
			return nil, nil, false
		}
	}
	return route, params, true
}

// withMethod is a shallow copy of r with another method, for routing only.
func withMethod(r *http.Request, method string) *http.Request {
	probe := r.WithContext(r.Context())
	probe.Method = method
	return probe
}
