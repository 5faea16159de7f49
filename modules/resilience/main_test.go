package resilience

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lexiscore/gateway/internal/clocktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Caddy's storage cleaning locks a file in the test's storage
		// directory; the goroutine keeping the lock fresh notices the unlock
		// only at its next tick, seconds later.
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	)
}

// fakeClock is a Clock that moves only when told to.
func newFakeClock() *clocktest.Fake {
	return clocktest.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}
