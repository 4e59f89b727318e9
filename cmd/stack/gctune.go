package main

import "runtime/debug"

// proxyGCPercent is the collector's target for `stack proxy`. The proxy
// allocates a few kilobytes per request around a small live heap, so at
// Go's default GOGC=100 the collector runs many times a second under
// load: on a 2-core machine, a tenth of the throughput. GOGC=200 halves
// that, for a larger heap under many connections (peak RssAnon 55-58 MiB
// at 256 busy connections, against a 60 MiB target; see
// docs/performance.md).
//
// The proxy sets no memory limit of its own: a soft limit low enough to
// matter turns into a cliff once the live heap nears it (the collector
// runs back to back). GOGC and GOMEMLIMIT in the environment take
// precedence, as for any Go program.
const proxyGCPercent = 200

// tuneGC sets the proxy's GC percent, unless GOGC is set.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(proxyGCPercent)
	}
}
