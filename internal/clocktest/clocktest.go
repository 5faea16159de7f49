// Package clocktest is the fake clock that module tests drive instead of
// sleeping: it moves only when told to.
package clocktest

import (
	"sync"
	"time"
)

// Fake is a clock, safe for concurrent use, that stands still until Advance.
type Fake struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a fake clock showing start.
func New(start time.Time) *Fake {
	return &Fake{now: start}
}

// Now returns the clock's time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
