// Package api holds the scoring API's contract, the OpenAPI document shared by
// two programs: the gateway validates requests against it and serves it to
// clients, the demo scoring backend implements and serves it. It is its own
// package so that neither imports the other and there is one document, never
// two copies drifting apart.
package api

import _ "embed"

// Scoring is the OpenAPI 3.0.3 document (YAML) of the scoring API as the
// backend implements it. Treat it as read-only: it is shared by all users.
//
//go:embed scoring.yaml
var Scoring []byte
