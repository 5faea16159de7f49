// Package gateway registers every LexiScore Gateway module with Caddy. It is
// the package xcaddy builds in (`--with github.com/lexiscore/gateway=.`), and
// the one ./gateway imports, so both builds link the same modules.
package gateway

import (
	_ "github.com/lexiscore/gateway/modules/authorization"
	_ "github.com/lexiscore/gateway/modules/correlation"
	_ "github.com/lexiscore/gateway/modules/framing"
	_ "github.com/lexiscore/gateway/modules/handoff"
	_ "github.com/lexiscore/gateway/modules/identity"
	_ "github.com/lexiscore/gateway/modules/logbuffer"
	_ "github.com/lexiscore/gateway/modules/problem"
	_ "github.com/lexiscore/gateway/modules/profiling"
	_ "github.com/lexiscore/gateway/modules/ratelimit"
	_ "github.com/lexiscore/gateway/modules/redact"
	_ "github.com/lexiscore/gateway/modules/resilience"
	_ "github.com/lexiscore/gateway/modules/signing"
	_ "github.com/lexiscore/gateway/modules/slowclient"
	_ "github.com/lexiscore/gateway/modules/tlsexpiry"
	_ "github.com/lexiscore/gateway/modules/validation"
)
