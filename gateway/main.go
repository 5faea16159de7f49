// Command gateway is the LexiScore Gateway: Caddy with its standard modules
// plus the gateway's own. It takes Caddy's command line unchanged
// (run, reload, validate, version, list-modules, ...).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/lexiscore/gateway"
)

func main() {
	caddycmd.Main()
}
