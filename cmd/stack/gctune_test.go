package main

import (
	"math"
	"runtime/debug"
	"testing"
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
	current := func() (int, int64) {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p, debug.SetMemoryLimit(-1)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want int
	}{
		{"no environment", nil, proxyGCPercent},
		{"GOGC set", map[string]string{"GOGC": "50"}, 100}, // the runtime read it at start; here, left at 100
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, proxyGCPercent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			tuneGC(func(k string) string { return tc.env[k] })
			if p, l := current(); p != tc.want || l != math.MaxInt64 {
				t.Fatalf("GOGC %d, memory limit %d; want %d and no limit", p, l, tc.want)
			}
		})
	}
}
