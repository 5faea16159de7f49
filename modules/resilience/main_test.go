package resilience

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Caddy's storage cleaning locks a file in the test's storage
		// directory; the goroutine keeping the lock fresh notices the unlock
		// only at its next tick, seconds later.
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	)
}
