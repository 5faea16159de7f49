// Plain TCP listeners rather than Go's default MPTCP ones: the kernel
// attaches no reuseport program to an MPTCP socket, and the handoff
// listener wrapper needs one so that a reload resets no connection.
//go:debug multipathtcp=0

// Command gateway is the LexiScore Gateway: Caddy with its standard modules
// plus the gateway's own. It takes Caddy's command line unchanged
// (run, reload, validate, version, list-modules, ...).
package main

import (
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/lexiscore/gateway"
	"github.com/lexiscore/gateway/internal/buildinfo"
	"github.com/lexiscore/gateway/internal/cli"
)

// longDescription is `gateway --help`'s text, in place of Caddy's.
const longDescription = `LexiScore Gateway: Caddy v2 with its standard modules and the gateway's own.

Run it with the repository's Caddyfile (every setting an environment
variable, README.md):

	gateway run --config Caddyfile

Commands of the gateway's own: issue-token, new-api-key, hash-api-key,
healthcheck. The others are Caddy's (https://caddyserver.com/docs/command-line).`

func main() {
	// `gateway version` (Caddy's command) prints this, then Caddy's version.
	caddy.CustomVersion = buildinfo.Read().String() + "; Caddy"
	// Usage lines say `gateway issue-token`, not `caddy issue-token`.
	caddy.CustomBinaryName = cli.BinaryName
	caddy.CustomLongDescription = longDescription
	nameTheService()
	tracesOffUnlessConfigured()
	gcForAProxy()
	caddycmd.Main()
}

// nameTheService gives spans a service name when the environment gives
// none: the OpenTelemetry default is "unknown_service:<binary>", which
// says nothing in a tracing backend. The name matches the profiles'
// default application name.
func nameTheService() {
	if os.Getenv("OTEL_SERVICE_NAME") != "" || strings.Contains(os.Getenv("OTEL_RESOURCE_ATTRIBUTES"), "service.name=") {
		return
	}
	os.Setenv("OTEL_SERVICE_NAME", "lexiscore-gateway")
}

// tracesOffUnlessConfigured exports no spans until an OTLP endpoint or
// exporter is named — otherwise Caddy's tracing handler would send to
// localhost:4318 and log every failed batch — and then records none either,
// unless a sampler is named: trace IDs still reach logs and upstreams, but no
// request pays for spans nobody receives (trace_context skips Caddy's tracing
// handler altogether when the exporter is "none").
func tracesOffUnlessConfigured() {
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		if os.Getenv(k) != "" {
			return
		}
	}
	os.Setenv("OTEL_TRACES_EXPORTER", "none")
	if os.Getenv("OTEL_TRACES_SAMPLER") == "" {
		os.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	}
}
