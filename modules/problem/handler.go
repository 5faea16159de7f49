package problem

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/lexiscore/gateway/internal/problemjson"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// DefaultTypeBase is where the problem types are documented.
const DefaultTypeBase = "https://github.com/lexiscore/gateway/blob/main/docs/problems.md#"

// Handler writes the error being handled as an RFC 9457 problem document. It
// belongs in handle_errors routes; outside of them it answers 500.
type Handler struct {
	// TypeBase is prefixed to the problem's slug to form its "type" URI.
	// Default: the gateway's docs/problems.md.
	TypeBase string `json:"type_base,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.problem",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults.
func (h *Handler) Provision(caddy.Context) error {
	if h.TypeBase == "" {
		h.TypeBase = DefaultTypeBase
	}
	return nil
}

// ServeHTTP renders the error from the request context.
func (h Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	err, _ := r.Context().Value(caddyhttp.ErrorCtxKey).(error)
	status, typ, detail, ext := FromError(err)
	Write(w, r, h.TypeBase, status, typ, detail, ext)
	return nil
}

// Write sends a problem document with r's request ID; members of ext never
// replace the standard ones.
func Write(w http.ResponseWriter, r *http.Request, typeBase string, status int, typ, detail string, ext map[string]any) {
	problemjson.Write(w, r, status, typeBase+typ, detail, RequestID(r), ext)
}

// RequestID returns the correlation ID of r, or "" before one is assigned.
func RequestID(r *http.Request) string {
	id, _ := caddyhttp.GetVar(r.Context(), RequestIDVar).(string)
	return id
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
