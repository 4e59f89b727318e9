package main

import (
	"cmp"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report is one run's output, as printed and as --json writes it.
type report struct {
	Machine    machine   `json:"machine"`
	Started    time.Time `json:"started"`
	Clients    int       `json:"clients"`
	RSSClients int       `json:"rss_clients"`
	Rounds     int       `json:"rounds"`
	Duration   string    `json:"duration"`
	Warmup     string    `json:"warmup"`
	RespSize   int       `json:"response_bytes"`
	// Results holds each target's median round; AllRounds every round.
	Results   []result `json:"results"`
	AllRounds []result `json:"all_rounds,omitempty"`
	Ratios    []ratio  `json:"ratios"`
}

// ratio is one comparison with the reference, against the target.
type ratio struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Target string  `json:"target"`
	Pass   bool    `json:"pass"`
}

func numCPU() int       { return runtime.NumCPU() }
func goVersion() string { return runtime.Version() }

// Targets of issue 8.
const (
	targetThroughput = 0.8 // stack / reference at 32 keep-alive clients
	targetAddedP99MS = 2.0
	targetTunnel     = 0.9
	// Memory targets count anonymous memory (RssAnon): file pages of the
	// executable and of bbolt's maps are page cache, not memory pressure.
	targetPeakAnonMiB = 60.0 // at 256 connections
	targetIdleAnonMiB = 20.0
	targetReadyMS     = 200.0
)

// ratios compares each STACK target with its reference.
func ratios(rs []result) []ratio {
	by := map[string]result{}
	for _, r := range rs {
		if r.Skipped == "" {
			by[r.Name] = r
		}
	}
	var out []ratio
	pair := func(stack, ref string) (result, result, bool) {
		s, ok1 := by[stack]
		r, ok2 := by[ref]
		return s, r, ok1 && ok2 && r.RPS > 0
	}
	if s, r, ok := pair("stack", "reference"); ok {
		v := s.RPS / r.RPS
		out = append(out, ratio{Name: "throughput stack/reference", Value: v, Unit: "x",
			Target: fmt.Sprintf(">= %.1f", targetThroughput), Pass: v >= targetThroughput})
		add := s.P99MS - r.P99MS
		out = append(out, ratio{Name: "added p99 stack - reference", Value: add, Unit: "ms",
			Target: fmt.Sprintf("<= %.0f", targetAddedP99MS), Pass: add <= targetAddedP99MS})
	}
	if c, s, ok := pair("candidate", "stack"); ok {
		out = append(out, ratio{Name: "throughput candidate/stack", Value: c.RPS / s.RPS, Unit: "x", Target: "-", Pass: true})
		out = append(out, ratio{Name: "added p99 candidate - stack", Value: c.P99MS - s.P99MS, Unit: "ms", Target: "-", Pass: true})
		if s.CPUPerReqUS > 0 {
			out = append(out, ratio{Name: "CPU per request candidate/stack", Value: c.CPUPerReqUS / s.CPUPerReqUS, Unit: "x", Target: "-", Pass: true})
		}
	}
	if s, r, ok := pair("stack-tunnel", "reference-tunnel"); ok {
		v := s.RPS / r.RPS
		out = append(out, ratio{Name: "tunnel stack/reference", Value: v, Unit: "x",
			Target: fmt.Sprintf(">= %.1f", targetTunnel), Pass: v >= targetTunnel})
	}
	if s, r, ok := pair("stack-newconn", "reference-newconn"); ok {
		v := s.RPS / r.RPS
		out = append(out, ratio{Name: "new connection stack/reference", Value: v, Unit: "x", Target: "-", Pass: true})
	}
	if s, ok := by["stack-256"]; ok {
		out = append(out, ratio{Name: fmt.Sprintf("stack peak RssAnon at %d connections (peak RSS %.1f MiB)", s.Clients, s.PeakRSSMiB), Value: s.PeakAnonMiB, Unit: "MiB",
			Target: fmt.Sprintf("<= %.0f", targetPeakAnonMiB), Pass: s.PeakAnonMiB <= targetPeakAnonMiB})
	}
	if s, r, ok := pair("stack-256", "reference-256"); ok {
		v := s.RPS / r.RPS
		out = append(out, ratio{Name: fmt.Sprintf("throughput stack/reference at %d clients", s.Clients), Value: v, Unit: "x", Target: "-", Pass: true})
	}
	// Idle memory and time to ready: the worst of every STACK start.
	var idle, idleRSS, ready float64
	starts := 0
	for _, r := range rs {
		if r.Proxy == "stack" && r.Skipped == "" {
			idle, idleRSS, ready = max(idle, r.IdleAnonMiB), max(idleRSS, r.IdleRSSMiB), max(ready, r.ReadyMS)
			starts++
		}
	}
	if starts > 0 {
		out = append(out, ratio{Name: fmt.Sprintf("stack idle RssAnon (worst of %d starts; RSS %.1f MiB)", starts, idleRSS), Value: idle, Unit: "MiB",
			Target: fmt.Sprintf("<= %.0f", targetIdleAnonMiB), Pass: idle <= targetIdleAnonMiB})
		out = append(out, ratio{Name: fmt.Sprintf("stack start to ready (worst of %d starts)", starts), Value: ready, Unit: "ms",
			Target: fmt.Sprintf("<= %.0f", targetReadyMS), Pass: ready <= targetReadyMS})
	}
	return out
}

// print writes the table and the ratios.
func (rep report) print(w io.Writer) {
	m := rep.Machine
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s, kernel %s, load %s\n", m.CPUs, m.CPUModel, m.GoVersion, m.Kernel, m.Load)
	fmt.Fprintf(w, "load: HTTP/1.1 clients, each its own Transport and connection; %s measured after %s warm-up; %d-byte answers\n",
		rep.Duration, rep.Warmup, rep.RespSize)
	if rep.Rounds > 1 {
		fmt.Fprintf(w, "%d interleaved rounds; each row is the target's median round by req/s\n", rep.Rounds)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tmode\tclients\treq/s\tp50 ms\tp90 ms\tp99 ms\terrors\tCPU s\tCPU µs/req\tpeak MiB anon (RSS)\tidle MiB anon (RSS)\tready ms\t")
	for _, r := range rep.Results {
		mode := r.Mode
		if r.NewConn {
			mode += "/newconn"
		}
		if r.Skipped != "" {
			fmt.Fprintf(tw, "%s\t%s\t%d\tskipped: %s\t\t\t\t\t\t\t\t\t\t\n", r.Name, mode, r.Clients, firstLine(r.Skipped))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%s\t%s\t%s\t%s\t%s\t\n", r.Name, mode, r.Clients, r.RPS,
			r.P50MS, r.P90MS, r.P99MS, r.Errors, dash(r.CPUSeconds, "%.2f", r.Proxy != "direct"),
			dash(r.CPUPerReqUS, "%.0f", r.Proxy != "direct"), memory(r, r.PeakAnonMiB, r.PeakRSSMiB),
			memory(r, r.IdleAnonMiB, r.IdleRSSMiB), dash(r.ReadyMS, "%.0f", r.Proxy != "direct"))
	}
	tw.Flush()
	var notes []string
	for _, r := range rep.Results {
		if r.FirstError != "" {
			notes = append(notes, fmt.Sprintf("%s: first error: %s", r.Name, r.FirstError))
		}
		if stackLike(r.Proxy) && r.Mode == "mitm" && r.Skipped == "" && r.UpstreamInjected != r.UpstreamSeen {
			notes = append(notes, fmt.Sprintf("%s: only %d of %d upstream requests carried the injected credential", r.Name, r.UpstreamInjected, r.UpstreamSeen))
		}
		if a := r.Audit; a != nil {
			status := "ok"
			if a.Problem != "" {
				status = "PROBLEM: " + a.Problem
			}
			notes = append(notes, fmt.Sprintf("%s: audit %d records %v; %d request records for %d answered; chain verified %v; %s",
				r.Name, a.Records, a.ByAction, a.Found, a.Expected, a.Verified, status))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	if len(rep.Ratios) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "comparison\tvalue\ttarget\t")
		for _, r := range rep.Ratios {
			verdict := ""
			if r.Target != "-" {
				verdict = "  ok"
				if !r.Pass {
					verdict = "  MISSED"
				}
			}
			fmt.Fprintf(tw, "%s\t%.2f %s\t%s%s\t\n", r.Name, r.Value, r.Unit, r.Target, verdict)
		}
		tw.Flush()
	}
}

// memory shows a proxy's anonymous memory with its RSS in brackets.
func memory(r result, anon, rss float64) string {
	if r.Proxy == "direct" {
		return "-"
	}
	return fmt.Sprintf("%.1f (%.1f)", anon, rss)
}

func dash(v float64, format string, show bool) string {
	if !show {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// roundRatios compares the throughput of each pair of targets round by
// round, when there are several: neighbours in one round share the
// machine's state, so their ratios drift less than the targets' medians
// do when the host's load changes during the run. The value is the
// median ratio; the name lists every round's.
func roundRatios(byTarget map[string][]result) []ratio {
	var out []ratio
	for _, p := range [][2]string{{"stack", "reference"}, {"candidate", "stack"}} {
		a, b := byTarget[p[0]], byTarget[p[1]]
		if len(a) < 2 || len(a) != len(b) {
			continue
		}
		var rs []float64
		var each []string
		for i := range a {
			if a[i].Skipped != "" || b[i].Skipped != "" || b[i].RPS <= 0 {
				continue
			}
			rs = append(rs, a[i].RPS/b[i].RPS)
			each = append(each, fmt.Sprintf("%.2f", rs[len(rs)-1]))
		}
		if len(rs) < 2 {
			continue
		}
		sorted := slices.Clone(rs)
		slices.Sort(sorted)
		med := sorted[len(sorted)/2]
		if len(sorted)%2 == 0 {
			med = (sorted[len(sorted)/2-1] + med) / 2
		}
		out = append(out, ratio{Name: fmt.Sprintf("throughput %s/%s by round (%s), median", p[0], p[1], strings.Join(each, " ")),
			Value: med, Unit: "x", Target: "-", Pass: true})
	}
	return out
}

// medianRound returns the round with the median requests/s (the lower
// middle one for an even count); skipped rounds count only when every
// round was skipped.
func medianRound(rs []result) result {
	var ok []result
	for _, r := range rs {
		if r.Skipped == "" {
			ok = append(ok, r)
		}
	}
	if len(ok) == 0 {
		return rs[len(rs)-1]
	}
	slices.SortStableFunc(ok, func(a, b result) int { return cmp.Compare(a.RPS, b.RPS) })
	return ok[(len(ok)-1)/2]
}
