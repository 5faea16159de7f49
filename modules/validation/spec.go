package validation

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/lexiscore/gateway/modules/problem"
)

// SpecHandler serves the OpenAPI document, in JSON, to GET and HEAD
// requests, so that clients can read the contract the gateway enforces. It
// answers with an ETag and honours conditional requests.
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
	s.body = contract.JSON()
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

// Interface guards
var (
	_ caddy.Provisioner           = (*SpecHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*SpecHandler)(nil)
)
