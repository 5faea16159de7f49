// Package api holds the OpenAPI document of the demo scoring backend. It lives
// in its own package so that the backend serves the very bytes that the
// gateway validates requests against: there is one document, never two copies
// drifting apart.
package api

import _ "embed"

// OpenAPI is the OpenAPI 3.0.3 document (YAML) describing the public API of
// the scoring backend. Treat it as read-only: it is shared by all users.
//
//go:embed openapi.yaml
var OpenAPI []byte
