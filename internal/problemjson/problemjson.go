// Package problemjson writes RFC 9457 application/problem+json documents. It
// has no Caddy import, so that the gateway's problem handler, the signature
// verifier and the demo backend answer errors in one format, byte for byte.
package problemjson

import (
	"encoding/json"
	"net/http"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// Document is the JSON body of a problem response: the members of RFC 9457
// §3.1 plus request_id, the correlation ID the client can quote.
type Document struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// Write answers r with a problem document of status whose type is typeURI,
// titled by the status, for the instance r.URL.Path. detail must be written
// for clients (no internal addresses, no secrets). Members of ext (RFC 9457
// §3.2 extensions) never replace the standard ones. The answer is never
// cached and replaces any Content-Length set before.
func Write(w http.ResponseWriter, r *http.Request, status int, typeURI, detail, requestID string, ext map[string]any) {
	body := make(map[string]any, len(ext)+6)
	for k, v := range ext {
		body[k] = v
	}
	body["type"], body["title"], body["status"] = typeURI, http.StatusText(status), status
	body["detail"], body["instance"] = detail, r.URL.Path
	if requestID != "" {
		body["request_id"] = requestID
	}
	// A map of strings, numbers and the caller's JSON-safe extensions.
	out, _ := json.Marshal(body)
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(out)
}
