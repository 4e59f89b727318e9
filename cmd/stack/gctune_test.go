package main

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestTuneGCYieldsToEnvironment(t *testing.T) {
	// The runtime's own settings, put back at the end; the negative
	// arguments read without changing.
	percent, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	debug.SetGCPercent(percent)
	t.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
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
	tuneGC(env(nil))
	if p, l := current(); p != proxyGCPercent || l != proxyMemoryLimit {
		t.Fatalf("no environment: GOGC %d, limit %d; want %d, %d", p, l, proxyGCPercent, proxyMemoryLimit)
	}
	reset()
	tuneGC(env(map[string]string{"GOGC": "50"}))
	if p, l := current(); p != 100 || l != proxyMemoryLimit {
		t.Fatalf("GOGC set: GOGC %d, limit %d; want the percent left alone", p, l)
	}
	reset()
	tuneGC(env(map[string]string{"GOMEMLIMIT": "1GiB"}))
	if p, l := current(); p != proxyGCPercent || l != math.MaxInt64 {
		t.Fatalf("GOMEMLIMIT set: GOGC %d, limit %d; want the limit left alone", p, l)
	}
}
