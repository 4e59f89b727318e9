// Package testclock is the clock tests inject where code takes a Now
// func: the test moves it forward instead of sleeping, so expiry,
// baselines and rate windows are tested in no time.
package testclock

import (
	"sync"
	"time"
)

// Epoch is where Start's clocks start: a fixed instant, so that times in
// test failures read the same from run to run.
var Epoch = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// Clock is a time that a test moves with Advance and Set. A clock from New
// or Start stands still in between; one from Running keeps pace with the
// real time. It is safe for concurrent use: the code under test reads it
// while the test moves it.
type Clock struct {
	mu      sync.Mutex
	at      time.Time     // the time shown, while standing still
	running bool          // keeping pace with the real time
	off     time.Duration // a running clock's lead over the real time
}

// New returns a clock standing still at t.
func New(t time.Time) *Clock { return &Clock{at: t} }

// Start returns a clock standing still at Epoch.
func Start() *Clock { return New(Epoch) }

// Running returns a clock that shows the real time until it is moved, and
// then keeps running from where it was moved to. It is for tests where
// other parts (a sidecar's refresh loop, TLS certificates) read the real
// clock and must agree with the code under test.
func Running() *Clock { return &Clock{running: true} }

// Now returns the clock's time; its method value is what Options.Now
// fields take.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return time.Now().Add(c.off)
	}
	return c.at
}

// Advance moves the clock by d (backwards when d is negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		c.off += d
		return
	}
	c.at = c.at.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		c.off = time.Until(t)
		return
	}
	c.at = t
}
