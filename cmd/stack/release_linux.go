//go:build linux

package main

import (
	"bufio"
	"bytes"
	"os"
	"runtime/debug"
	"strconv"
	"syscall"
)

// releaseStartupMemory gives back what start-up used and serving does not:
// the heap garbage of package initialisation and configuration loading,
// and the executable's read-only pages that only initialisation touched.
//
// Start-up runs the initialisers of every linked package (the cloud KMS
// clients bring hundreds) and the kernel maps the executable around each
// fault in 64 KiB runs, so a fresh process has most of its 40 MB
// executable resident although serving requests runs a small part of it.
// MADV_DONTNEED on a private, read-only, never-written file mapping only
// unmaps its pages: they stay in the page cache, and the next access maps
// them again with a minor fault. Mappings holding any private (written)
// page are left alone, since dropping those would lose the writes.
// Failures cost only memory and are ignored.
func releaseStartupMemory() {
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	raw, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return
	}
	for _, m := range readOnlyMappings(raw, exe) {
		syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED)
	}
}

type mapping struct{ start, end uintptr }

// readOnlyMappings returns, from /proc/PID/smaps content, the private
// read-only mappings of file path that hold no anonymous (copy-on-write)
// pages.
func readOnlyMappings(smaps []byte, path string) []mapping {
	var out []mapping
	var cur mapping
	candidate := false
	flush := func() {
		if candidate {
			out = append(out, cur)
		}
		candidate = false
	}
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		line := sc.Bytes()
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := bytes.Cut(f[0], []byte{'-'}); ok && !bytes.HasSuffix(f[0], []byte{':'}) && len(f) >= 5 {
			flush()
			start, err1 := strconv.ParseUint(string(lo), 16, 64)
			end, err2 := strconv.ParseUint(string(hi), 16, 64)
			perms := string(f[1])
			candidate = err1 == nil && err2 == nil && end > start && len(f) >= 6 &&
				string(f[5]) == path && (perms == "r-xp" || perms == "r--p")
			cur = mapping{uintptr(start), uintptr(end)}
			continue
		}
		if candidate && string(f[0]) == "Anonymous:" && (len(f) < 2 || string(f[1]) != "0") {
			candidate = false
		}
	}
	flush()
	return out
}
