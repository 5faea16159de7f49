package framing

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/lexiscore/gateway/modules/problem"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler answers the stand-in of a request the listener wrapper refused:
// 400 (type "bad-framing"), or 431 for a header block over 1 MiB, with
// Connection: close. It removes MarkerHeader from every other request, so a
// client's copy never reaches a backend. It has no settings; put it in every
// site of a server with the listener wrapper, early (the directive's order is
// right after request_id).
type Handler struct{}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.framing",
		New: func() caddy.Module { return new(Handler) },
	}
}

// ServeHTTP refuses a stand-in and passes anything else on.
func (Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	marks := r.Header.Values(MarkerHeader)
	if len(marks) == 0 {
		return next.ServeHTTP(w, r)
	}
	r.Header.Del(MarkerHeader)
	reason, got, _ := strings.Cut(marks[0], " ")
	if len(marks) != 1 || subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1 {
		return next.ServeHTTP(w, r)
	}
	w.Header().Set("Connection", "close")
	cause := fmt.Errorf("request framing refused: %s", reason)
	if reason == ReasonHeadTooLarge {
		return problem.New(http.StatusRequestHeaderFieldsTooLarge, "request-header-fields-too-large",
			"The request line and headers are larger than 1 MiB.", cause)
	}
	return problem.New(http.StatusBadRequest, "bad-framing", details[reason], cause)
}

// details are the client-facing explanations, by reason.
var details = map[string]string{
	ReasonCLTE:     "The request has both Content-Length and Transfer-Encoding, so its end is ambiguous (RFC 9112 §6.1).",
	ReasonTEHTTP10: "Transfer-Encoding is not allowed in a request older than HTTP/1.1 (RFC 9112 §6.1).",
	ReasonBareCR:   "The request line or a header contains a CR not followed by LF (RFC 9112 §2.2).",
}

// Interface guard
var _ caddyhttp.MiddlewareHandler = (*Handler)(nil)
