package testclock_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/testclock"
)

func TestClockMovesOnlyWhenTold(t *testing.T) {
	c := testclock.Start()
	if got := c.Now(); !got.Equal(testclock.Epoch) {
		t.Fatalf("Start().Now() = %v, want %v", got, testclock.Epoch)
	}
	if got := c.Now(); !got.Equal(testclock.Epoch) {
		t.Fatalf("the clock moved by itself to %v", got)
	}
	c.Advance(90 * time.Second)
	if got, want := c.Now(), testclock.Epoch.Add(90*time.Second); !got.Equal(want) {
		t.Fatalf("after Advance(90s): %v, want %v", got, want)
	}
	c.Advance(-time.Minute)
	if got, want := c.Now(), testclock.Epoch.Add(30*time.Second); !got.Equal(want) {
		t.Fatalf("after Advance(-1m): %v, want %v", got, want)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	c.Set(at)
	if got := c.Now(); !got.Equal(at) {
		t.Fatalf("after Set: %v, want %v", got, at)
	}
	if got := testclock.New(at).Now(); !got.Equal(at) {
		t.Fatalf("New(at).Now() = %v, want %v", got, at)
	}
}

// A running clock keeps pace with the real time, from wherever it was
// last moved to.
func TestRunningClock(t *testing.T) {
	c := testclock.Running()
	within := func(step string, lead time.Duration) {
		t.Helper()
		before := time.Now().Add(lead)
		got := c.Now()
		after := time.Now().Add(lead)
		if got.Before(before) || got.After(after) {
			t.Fatalf("%s: %v, want between %v and %v", step, got, before, after)
		}
	}
	within("new", 0)
	c.Advance(time.Hour)
	within("after Advance(1h)", time.Hour)
	c.Advance(-2 * time.Hour)
	within("after Advance(-2h)", -time.Hour)
	at := time.Now().Add(48 * time.Hour)
	c.Set(at)
	got := c.Now()
	if limit := time.Now().Add(48 * time.Hour); got.Before(at) || got.After(limit) {
		t.Fatalf("after Set(%v): %v, want from then to %v", at, got, limit)
	}
}

// Readers and movers at once: the race detector checks the locking, and
// no advance is lost.
func TestClockConcurrentUse(t *testing.T) {
	c := testclock.Start()
	const movers, steps = 4, 100
	var wg sync.WaitGroup
	for range movers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range steps {
				c.Advance(time.Second)
			}
		}()
		go func() {
			defer wg.Done()
			for range steps {
				if c.Now().Before(testclock.Epoch) {
					t.Error("the clock went back")
				}
			}
		}()
	}
	wg.Wait()
	if got, want := c.Now(), testclock.Epoch.Add(movers*steps*time.Second); !got.Equal(want) {
		t.Fatalf("after %d advances of 1s: %v, want %v", movers*steps, got, want)
	}
}
