package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procCPU returns the user plus system CPU seconds process pid has used.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/PID/stat line. The command name (field 2) is in parentheses and
// may contain spaces and parentheses, so fields are counted from the last
// ')'.
func parseStatCPU(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, so f[11]; stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 13", len(f))
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat: utime: %w", err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat: stime: %w", err)
	}
	return float64(ut+st) / clockTicks, nil
}

// memStatus is the memory lines of /proc/PID/status, in bytes.
type memStatus struct {
	RSS  int64 // VmRSS: resident now
	Peak int64 // VmHWM: the most ever resident
	// Anon is RssAnon, the part of RSS that is the process's own memory
	// (heap, stacks) and what the memory targets count. The rest is file
	// pages (the executable, bbolt's maps): page cache the kernel takes
	// back under pressure.
	Anon int64
}

// procMem reads VmRSS, VmHWM and RssAnon of process pid.
func procMem(pid int) (memStatus, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStatus{}, err
	}
	return parseStatus(b)
}

func parseStatus(b []byte) (memStatus, error) {
	var m memStatus
	var found int
	for line := range strings.SplitSeq(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.Peak
		case "RssAnon":
			dst = &m.Anon
		default:
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("status: %s: unexpected %q", key, strings.TrimSpace(val))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("status: %s: %w", key, err)
		}
		*dst = n << 10
		found++
	}
	if found != 3 {
		return m, errors.New("status: VmRSS, VmHWM or RssAnon missing (RssAnon needs Linux 4.5 or later)")
	}
	return m, nil
}

// anonPeakEvery is how often anonPeak samples.
const anonPeakEvery = 50 * time.Millisecond

// anonPeak samples the RssAnon of process pid every anonPeakEvery from
// now until stop is called, and once more then; stop returns the largest
// value seen. The kernel keeps a high-water mark of RSS (VmHWM), which
// counts file pages too, but none of anonymous memory alone.
func anonPeak(pid int) (stop func() int64) {
	done := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		t := time.NewTicker(anonPeakEvery)
		defer t.Stop()
		var most int64
		sample := func() {
			if m, err := procMem(pid); err == nil {
				most = max(most, m.Anon)
			}
		}
		sample()
		for {
			select {
			case <-done:
				sample()
				peak <- most
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() int64 {
		close(done)
		return <-peak
	}
}

// procFDs counts the open file descriptors of process pid.
func procFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}
