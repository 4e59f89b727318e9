//go:build !linux

package main

import "runtime/debug"

// releaseStartupMemory returns start-up's heap garbage to the system.
func releaseStartupMemory() { debug.FreeOSMemory() }
