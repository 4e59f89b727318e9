package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The proxy allocates a few kilobytes per request around a small live
// heap, so at Go's default GOGC=100 the collector runs many times a second
// under load: on a 2-core machine, a tenth of the throughput. GOGC=200
// halves that; a soft memory limit keeps the larger heap from raising the
// footprint under many connections (peak RSS at 256 connections: 53 MiB
// with both, 69 MiB with GOGC=200 alone). GOGC and GOMEMLIMIT in the
// environment take precedence, as for any Go program.
//
// A fixed limit would turn into a cliff: once the live heap nears it (a
// thousand busy connections), the collector runs back to back and takes
// half the CPU (1,440 requests/s instead of 6,500 in docs/performance.md).
// So the limit follows the live heap (see heapLimit): it trims the
// headroom GOGC=200 would give a small heap, and never leaves a large heap
// less than GOGC=100 would.
const (
	proxyGCPercent   = 200
	proxyMemoryLimit = 40 << 20
	// heapCheckEvery is how often the limit is brought up to date: often
	// enough that a surge of connections meets a raised limit within a few
	// collections, and at a few microseconds a read, cheap.
	heapCheckEvery = 250 * time.Millisecond
)

// tuneGC sets the proxy's GC percent and memory limit, each only when its
// environment variable is unset. When it sets the limit it returns true:
// the caller then keeps it following the heap (followHeap).
func tuneGC(getenv func(string) string) (limitSet bool) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(proxyGCPercent)
	}
	if getenv("GOMEMLIMIT") != "" {
		return false
	}
	debug.SetMemoryLimit(proxyMemoryLimit)
	return true
}

// heapMetrics are the runtime/metrics samples heapLimit needs.
var heapMetrics = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
}

// heapLimit returns the memory limit for a process whose last collection
// found live bytes of live heap, and which holds other bytes of memory
// that are not heap (goroutine stacks, runtime structures): at least
// floor, and room for the live heap to double on top of the rest.
func heapLimit(floor, live, other uint64) int64 {
	want := other + 2*live
	if want < floor {
		want = floor
	}
	return int64(min(want, 1<<62))
}

// readHeap samples the live heap and the memory that is not heap, into
// samples (one per heapMetrics name).
func readHeap(samples []metrics.Sample) (live, other uint64) {
	metrics.Read(samples)
	var v [6]uint64
	for i, s := range samples[:len(v)] {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	mapped := v[1] - min(v[1], v[2])
	heap := v[3] + v[4] + v[5]
	return v[0], mapped - min(mapped, heap)
}

// followHeap keeps the memory limit at heapLimit(proxyMemoryLimit, ...)
// until ctx ends, raising and lowering it as the live heap changes.
func followHeap(ctx context.Context, every time.Duration) {
	samples := make([]metrics.Sample, len(heapMetrics))
	for i, name := range heapMetrics {
		samples[i].Name = name
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := int64(proxyMemoryLimit)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		live, other := readHeap(samples)
		limit := heapLimit(proxyMemoryLimit, live, other)
		// Small moves are not worth the runtime's bookkeeping.
		if d := limit - last; d > last/16 || -d > last/16 {
			debug.SetMemoryLimit(limit)
			last = limit
		}
	}
}
