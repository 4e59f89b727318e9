package fleet

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Spread is the distribution of one figure over the sidecars, in
// milliseconds.
type Spread struct {
	N     int     `json:"n"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
}

func spreadOf(ds []time.Duration) Spread {
	return Spread{N: len(ds), P50MS: ms(quantile(ds, 0.5)), P99MS: ms(quantile(ds, 0.99)), MaxMS: ms(quantile(ds, 1))}
}

func (s Spread) String() string {
	return fmt.Sprintf("p50 %.0f ms, p99 %.0f ms, max %.0f ms (n=%d)", s.P50MS, s.P99MS, s.MaxMS, s.N)
}

// quantile is the nearest-rank q-quantile of ds; 0 for none.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }

// Memory is a process's memory as /proc/PID/status reports it.
type Memory struct {
	PID       int `json:"pid"`
	RssAnonKB int `json:"rss_anon_kb"`
	VmRSSKB   int `json:"vm_rss_kb"`
	VmHWMKB   int `json:"vm_hwm_kb"`
	Threads   int `json:"threads"`
}

func readMemory(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	m, err := parseStatus(string(b))
	m.PID = pid
	return m, err
}

// parseStatus reads the fields of Memory from /proc/PID/status.
func parseStatus(s string) (Memory, error) {
	var m Memory
	fields := map[string]*int{"RssAnon:": &m.RssAnonKB, "VmRSS:": &m.VmRSSKB, "VmHWM:": &m.VmHWMKB, "Threads:": &m.Threads}
	seen := 0
	for line := range strings.SplitSeq(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || fields[f[0]] == nil {
			continue
		}
		if f[0] != "Threads:" && (len(f) != 3 || f[2] != "kB") {
			return m, fmt.Errorf("/proc status: unexpected %q", line)
		}
		v, err := strconv.Atoi(f[1])
		if err != nil {
			return m, fmt.Errorf("/proc status: %q: %w", line, err)
		}
		*fields[f[0]] = v
		seen++
	}
	if seen != len(fields) {
		return m, fmt.Errorf("/proc status: %d of the %d fields of Memory", seen, len(fields))
	}
	return m, nil
}
