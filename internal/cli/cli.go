// Package cli adds the gateway's own subcommands (issue-token, new-api-key,
// hash-api-key, healthcheck) to Caddy's command line, with help that points
// to the gateway's documentation instead of Caddy's.
package cli

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// BinaryName is the command's name in usage lines; main sets it as Caddy's
// root command name too (caddy.CustomBinaryName).
const BinaryName = "gateway"

// helpTemplate is cobra's own, without the footer that Caddy's root command
// appends to every help text (https://caddyserver.com/docs/command-line,
// which documents none of our commands).
var helpTemplate = (&cobra.Command{}).HelpTemplate() +
	"\nDocumentation: README.md and docs/ of the LexiScore Gateway repository.\n"

// Register is caddycmd.RegisterCommand for a gateway command; c sets its
// flags in CobraFunc, which must not be nil.
func Register(c caddycmd.Command) {
	setFlags := c.CobraFunc
	c.CobraFunc = func(cmd *cobra.Command) {
		setFlags(cmd)
		cmd.SetHelpTemplate(helpTemplate)
	}
	caddycmd.RegisterCommand(c)
}
