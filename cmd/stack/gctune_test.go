package main

import (
	"context"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// keepGCSettings restores the runtime's GC percent and memory limit when
// the test ends.
func keepGCSettings(t *testing.T) {
	t.Helper()
	// The negative arguments read without changing.
	percent, limit := debug.SetGCPercent(-1), debug.SetMemoryLimit(-1)
	debug.SetGCPercent(percent)
	t.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
}

func TestTuneGCYieldsToEnvironment(t *testing.T) {
	keepGCSettings(t)
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	current := func() (int, int64) {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p, debug.SetMemoryLimit(-1)
	}
	reset := func() {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
	}

	reset()
	if !tuneGC(env(nil)) {
		t.Error("no environment: the limit is set, so it must be followed")
	}
	if p, l := current(); p != proxyGCPercent || l != proxyMemoryLimit {
		t.Fatalf("no environment: GOGC %d, limit %d; want %d, %d", p, l, proxyGCPercent, proxyMemoryLimit)
	}
	reset()
	tuneGC(env(map[string]string{"GOGC": "50"}))
	if p, l := current(); p != 100 || l != proxyMemoryLimit {
		t.Fatalf("GOGC set: GOGC %d, limit %d; want the percent left alone", p, l)
	}
	reset()
	if tuneGC(env(map[string]string{"GOMEMLIMIT": "1GiB"})) {
		t.Error("GOMEMLIMIT set: the operator's limit must not be followed away")
	}
	if p, l := current(); p != proxyGCPercent || l != math.MaxInt64 {
		t.Fatalf("GOMEMLIMIT set: GOGC %d, limit %d; want the limit left alone", p, l)
	}
}

func TestHeapLimit(t *testing.T) {
	const MiB = 1 << 20
	for _, tc := range []struct {
		live, other uint64
		want        int64
	}{
		{0, 0, 40 * MiB},
		{10 * MiB, 5 * MiB, 40 * MiB},  // a small heap: the floor trims GOGC=200's headroom
		{20 * MiB, 0, 40 * MiB},        // exactly at the floor
		{30 * MiB, 12 * MiB, 72 * MiB}, // past it: room for the live heap to double
		{500 * MiB, 80 * MiB, 1080 * MiB},
		{math.MaxUint64 / 2, math.MaxUint64 / 2, 1 << 62},
	} {
		if got := heapLimit(40*MiB, tc.live, tc.other); got != tc.want {
			t.Errorf("heapLimit(live %d, other %d) = %d, want %d", tc.live, tc.other, got, tc.want)
		}
	}
}

// The limit rises when the live heap outgrows it, so the collector is not
// left running back to back, and comes down again when the heap shrinks.
func TestFollowHeap(t *testing.T) {
	keepGCSettings(t)
	debug.SetMemoryLimit(proxyMemoryLimit)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		followHeap(ctx, 5*time.Millisecond)
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	waitLimit := func(ok func(int64) bool, what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second) // a hang guard only
		for {
			runtime.GC() // the live heap is what the last collection found
			l := debug.SetMemoryLimit(-1)
			if ok(l) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("limit %d MiB: %s", l>>20, what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	const live = 96 << 20
	hold := make([][]byte, 0, live>>20)
	for range live >> 20 {
		hold = append(hold, make([]byte, 1<<20))
	}
	waitLimit(func(l int64) bool { return l >= 2*live }, "want at least twice the 96 MiB live heap")
	runtime.KeepAlive(hold)
	clear(hold) // the slices are garbage now
	waitLimit(func(l int64) bool { return l < 2*live }, "want it lower once the heap is gone")
	cancel()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("followHeap did not return when its context ended")
	}
}
