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
	Machine machine   `json:"machine"`
	Started time.Time `json:"started"`
	// Clients are the counts the keep-alive MITM targets ran at; the
	// other targets ran at the first.
	Clients    []int  `json:"clients"`
	RSSClients int    `json:"rss_clients"`
	Rounds     int    `json:"rounds"`
	Duration   string `json:"duration"`
	Warmup     string `json:"warmup"`
	RespSize   int    `json:"response_bytes"`
	RespBody   string `json:"response_body"`
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

// The targets the comparisons are judged against.
const (
	// targetThroughput is stack / reference at each keep-alive count.
	targetThroughput = 0.9
	targetAddedP99MS = 2.0
	// targetAlways is stack-always / reference: every record waits for
	// its sync, so it aims lower.
	targetAlways = 0.8
	targetTunnel = 1.0
	// targetLearned is stack-learned / stack: the learned layer may cost
	// the sidecar at most a tenth of its throughput.
	targetLearned = 0.9
	targetNewConn = 1.0
	// targetMitmdump is stack / mitmdump: the Python MITM proxy a user
	// would otherwise reach for.
	targetMitmdump = 10.0
	// Memory targets count anonymous memory (RssAnon): file pages of the
	// executable and of bbolt's maps are page cache, not memory pressure.
	targetPeakAnonMiB = 60.0 // at 256 connections
	targetIdleAnonMiB = 20.0
	targetReadyMS     = 200.0
)

// ratios compares each STACK target with its reference at the same
// client count.
func ratios(rs []result) []ratio {
	var ok []result
	for _, r := range rs {
		if r.Skipped == "" {
			ok = append(ok, r)
		}
	}
	var out []ratio
	// pairs calls f for each result of target a with the result of target
	// b at the same client count.
	pairs := func(a, b string, f func(x, y result)) {
		for _, x := range ok {
			if x.Target != a {
				continue
			}
			for _, y := range ok {
				if y.Target == b && y.Clients == x.Clients && y.RPS > 0 {
					f(x, y)
				}
			}
		}
	}
	atLeast := func(name string, v, target float64) ratio {
		return ratio{Name: name, Value: v, Unit: "x", Target: fmt.Sprintf(">= %.1f", target), Pass: v >= target}
	}
	info := func(name string, v float64, unit string) ratio {
		return ratio{Name: name, Value: v, Unit: unit, Target: "-", Pass: true}
	}
	pairs("stack", "reference", func(s, r result) {
		out = append(out, atLeast(fmt.Sprintf("throughput stack/reference at %d clients", s.Clients), s.RPS/r.RPS, targetThroughput))
		add := s.P99MS - r.P99MS
		out = append(out, ratio{Name: fmt.Sprintf("added p99 stack - reference at %d clients", s.Clients), Value: add, Unit: "ms",
			Target: fmt.Sprintf("<= %.0f", targetAddedP99MS), Pass: add <= targetAddedP99MS})
	})
	pairs("stack-always", "reference", func(s, r result) {
		out = append(out, atLeast(fmt.Sprintf("throughput stack-always/reference at %d clients", s.Clients), s.RPS/r.RPS, targetAlways))
	})
	pairs("stack-quiet", "reference", func(s, r result) {
		out = append(out, info(fmt.Sprintf("throughput stack-quiet/reference at %d clients", s.Clients), s.RPS/r.RPS, "x"))
	})
	pairs("stack-learned", "stack", func(l, s result) {
		out = append(out, atLeast(fmt.Sprintf("throughput stack-learned/stack at %d clients", l.Clients), l.RPS/s.RPS, targetLearned))
		if s.CPUPerReqUS > 0 {
			out = append(out, info(fmt.Sprintf("CPU per request stack-learned/stack at %d clients", l.Clients), l.CPUPerReqUS/s.CPUPerReqUS, "x"))
		}
	})
	pairs("stack", "mitmdump", func(s, m result) {
		out = append(out, atLeast(fmt.Sprintf("throughput stack/mitmdump at %d clients", s.Clients), s.RPS/m.RPS, targetMitmdump))
	})
	pairs("candidate", "stack", func(c, s result) {
		out = append(out, info(fmt.Sprintf("throughput candidate/stack at %d clients", c.Clients), c.RPS/s.RPS, "x"))
		out = append(out, info(fmt.Sprintf("added p99 candidate - stack at %d clients", c.Clients), c.P99MS-s.P99MS, "ms"))
		if s.CPUPerReqUS > 0 {
			out = append(out, info(fmt.Sprintf("CPU per request candidate/stack at %d clients", c.Clients), c.CPUPerReqUS/s.CPUPerReqUS, "x"))
		}
	})
	pairs("candidate-learned", "stack-learned", func(c, s result) {
		out = append(out, info(fmt.Sprintf("throughput candidate-learned/stack-learned at %d clients", c.Clients), c.RPS/s.RPS, "x"))
		if s.CPUPerReqUS > 0 {
			out = append(out, info(fmt.Sprintf("CPU per request candidate-learned/stack-learned at %d clients", c.Clients), c.CPUPerReqUS/s.CPUPerReqUS, "x"))
		}
	})
	pairs("stack-tunnel", "reference-tunnel", func(s, r result) {
		out = append(out, atLeast(fmt.Sprintf("tunnel stack/reference at %d clients", s.Clients), s.RPS/r.RPS, targetTunnel))
	})
	pairs("stack-newconn", "reference-newconn", func(s, r result) {
		out = append(out, atLeast(fmt.Sprintf("new connection stack/reference at %d clients", s.Clients), s.RPS/r.RPS, targetNewConn))
	})
	for _, s := range ok {
		if s.Target == "stack-256" {
			out = append(out, ratio{Name: fmt.Sprintf("stack peak RssAnon at %d connections (peak RSS %.1f MiB)", s.Clients, s.PeakRSSMiB), Value: s.PeakAnonMiB, Unit: "MiB",
				Target: fmt.Sprintf("<= %.0f", targetPeakAnonMiB), Pass: s.PeakAnonMiB <= targetPeakAnonMiB})
		}
	}
	pairs("stack-256", "reference-256", func(s, r result) {
		out = append(out, info(fmt.Sprintf("throughput stack-256/reference-256 at %d clients", s.Clients), s.RPS/r.RPS, "x"))
	})
	// Idle memory and time to ready: the worst of every STACK start.
	var idle, idleRSS, ready float64
	starts := 0
	for _, r := range ok {
		if r.Proxy == "stack" {
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
	fmt.Fprintf(w, "load: HTTP/1.1 clients, each its own Transport and connection; %s measured after %s warm-up; %d-byte %s answers\n",
		rep.Duration, rep.Warmup, rep.RespSize, rep.RespBody)
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
			// The reason goes below the table, where it does not widen a column.
			fmt.Fprintf(tw, "%s\t%s\t%d\tskipped\t\t\t\t\t\t\t\t\t\t\n", r.Name, mode, r.Clients)
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
		if r.Skipped != "" {
			notes = append(notes, fmt.Sprintf("%s: skipped: %s", r.Name, firstLine(r.Skipped)))
		}
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
			notes = append(notes, fmt.Sprintf("%s: audit %d records %v; %d request and %d credential_access records for %d and %d expected; chain verified %v; %s",
				r.Name, a.Records, a.ByAction, a.Found, a.FoundAccess, a.Expected, a.ExpectedAccess, a.Verified, status))
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

// roundRatios compares the throughput of each pair of runs at the same
// client count round by round, when there are several: neighbours in one
// round share the machine's state, so their ratios drift less than the
// targets' medians do when the host's load changes during the run. The
// value is the median ratio; the name lists every round's.
func roundRatios(runs []benchRun, byRun map[string][]result) []ratio {
	var out []ratio
	for _, p := range [][2]string{{"stack", "reference"}, {"stack-always", "reference"}, {"candidate", "stack"}} {
		for _, ra := range runs {
			if ra.Target != p[0] {
				continue
			}
			i := slices.IndexFunc(runs, func(rb benchRun) bool { return rb.Target == p[1] && rb.Clients == ra.Clients })
			if i < 0 {
				continue
			}
			a, b := byRun[ra.Name], byRun[runs[i].Name]
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
			out = append(out, ratio{Name: fmt.Sprintf("throughput %s/%s at %d clients by round (%s), median", p[0], p[1], ra.Clients, strings.Join(each, " ")),
				Value: med, Unit: "x", Target: "-", Pass: true})
		}
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
