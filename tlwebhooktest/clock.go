package tlwebhooktest

import (
	"sync"
	"time"
)

// FakeClock is a clock that moves only when told, for the clock options
// of package tlwebhook ([tlwebhook.WithClock], [tlwebhook.WithDeduplicatorClock]),
// [Signer.Now] and [DeduplicatorSuite] (Now and Sleep). It is safe for
// concurrent use. The zero value is not usable; call [NewFakeClock].
type FakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewFakeClock returns a FakeClock reading start. A zero start stands for
// a fixed date, 2026-07-24 20:00:00 UTC, so that tests which need no
// particular time read the same one every run.
func NewFakeClock(start time.Time) *FakeClock {
	if start.IsZero() {
		start = time.Date(2026, 7, 24, 20, 0, 0, 0, time.UTC)
	}
	return &FakeClock{now: start}
}

// Now returns the clock's time. Its method value, c.Now, is what clock
// options take.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d (backward for a negative d). Its
// method value, c.Advance, is the Sleep of a [DeduplicatorSuite] in fake
// time.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
