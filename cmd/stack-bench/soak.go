package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"text/tabwriter"
	"time"
)

// soakSample is the proxy's state at one moment of a soak.
type soakSample struct {
	At         string  `json:"at"`
	Goroutines int     `json:"goroutines"`
	FDs        int     `json:"open_fds"`
	RSSMiB     float64 `json:"rss_mib"`
	// AnonMiB is the process's own memory (RssAnon); the rest of RSS is
	// file pages: the executable and the bbolt files' mappings, which
	// grow with the audit log until bbolt remaps it.
	AnonMiB float64 `json:"anon_rss_mib"`
}

// soakReport is what --soak prints and --json writes.
type soakReport struct {
	Machine  machine      `json:"machine"`
	Duration string       `json:"duration"`
	Clients  int          `json:"clients"`
	Rate     int          `json:"target_rate"`
	Result   result       `json:"result"`
	Samples  []soakSample `json:"samples"`
	Growth   []string     `json:"growth,omitempty"`
	Pass     bool         `json:"pass"`
}

// Slack allowed between the first and last samples under the same load:
// a few goroutines and descriptors come and go with connection churn.
const (
	soakSlackCount = 16
	soakSlackRSS   = 0.25 // of the first sample
)

// runSoak drives steady load through `stack proxy` (the shipped
// configuration) for the soak duration
// and compares goroutines, descriptors and RSS at the start and the end,
// then checks that the audit log holds a record for every answer.
func (b *bench) runSoak(ctx context.Context) error {
	o := b.opts
	auditPath := filepath.Join(b.work, "soak-audit.db")
	p, err := b.startStack("stack-soak", b.stackBin, auditPath)
	if err != nil {
		return err
	}
	defer p.stop()
	var mu sync.Mutex
	var samples []soakSample
	sample := func(at string) {
		s := soakSample{At: at}
		s.Goroutines, _ = goroutines(p.admin)
		s.FDs, _ = procFDs(p.pid())
		if m, err := procMem(p.pid()); err == nil {
			s.RSSMiB, s.AnonMiB = mib(m.RSS), mib(m.Anon)
		}
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
		fmt.Fprintf(b.stderr, "  %s: %d goroutines, %d fds, %.1f MiB RSS (%.1f anon)\n", at, s.Goroutines, s.FDs, s.RSSMiB, s.AnonMiB)
	}
	sample("idle")
	every := max(o.soak/20, time.Second)
	spec := loadSpec{
		Target: b.targetURL(), Header: placeholderHeader(), Clients: o.clients[0], Proxy: b.proxyURL(p.addr),
		Roots: b.stackCA, Warmup: o.warmup, Duration: o.soak,
		OnStart: func() { sample("start") }, TickEvery: every,
		OnTick: func(d time.Duration) { sample(d.Round(time.Second).String()) },
	}
	if o.rate > 0 {
		spec.Interval = time.Duration(float64(time.Second) * float64(spec.Clients) / float64(o.rate))
	}
	fmt.Fprintf(b.stderr, "soak: %d clients (%d req/s in all; 0 = unpaced) for %s through stack ...\n", spec.Clients, o.rate, o.soak)
	var cpu0 float64
	cpu0, _ = procCPU(p.pid())
	peakAnon := anonPeak(p.pid())
	lr, err := drive(ctx, spec)
	peak := peakAnon()
	if err != nil {
		return err
	}
	sample("after load")
	// Once the clients are gone the connections close; what remains is
	// the idle footprint after the soak.
	time.Sleep(2 * time.Second)
	sample("idle after")
	res := result{Name: "stack-soak", Target: "stack", Proxy: "stack", Mode: "mitm", Clients: spec.Clients}
	res.fill(lr)
	if cpu1, err := procCPU(p.pid()); err == nil {
		res.CPUSeconds = cpu1 - cpu0
	}
	if m, err := procMem(p.pid()); err == nil {
		res.PeakRSSMiB = mib(m.Peak)
	}
	res.PeakAnonMiB = mib(max(peak, p.idle.Anon))
	res.ReadyMS, res.IdleRSSMiB, res.IdleAnonMiB = ms(p.ready), mib(p.idle.RSS), mib(p.idle.Anon)
	if err := p.stop(); err != nil {
		return err
	}
	res.Audit = b.checkAudit(ctx, auditPath, lr.Total, lr.Total, false)

	rep := soakReport{Machine: machineInfo(), Duration: o.soak.String(), Clients: spec.Clients, Rate: o.rate, Result: res, Samples: samples}
	rep.Growth = soakGrowth(samples)
	rep.Pass = len(rep.Growth) == 0 && res.Audit.Problem == "" && res.Audit.Verified
	rep.print(b)
	if o.jsonOut != "" {
		if err := writeJSON(o.jsonOut, rep); err != nil {
			return err
		}
	}
	if !rep.Pass {
		return fmt.Errorf("soak check failed")
	}
	return nil
}

// soakGrowth compares the first sample under load with the last one
// taken under load, and the idle samples before and after the load.
func soakGrowth(s []soakSample) []string {
	find := func(at string) (soakSample, bool) {
		for _, x := range s {
			if x.At == at {
				return x, true
			}
		}
		return soakSample{}, false
	}
	var out []string
	cmp := func(label string, a, b soakSample) {
		if b.Goroutines > a.Goroutines+soakSlackCount {
			out = append(out, fmt.Sprintf("%s: goroutines %d -> %d", label, a.Goroutines, b.Goroutines))
		}
		if b.FDs > a.FDs+soakSlackCount {
			out = append(out, fmt.Sprintf("%s: open fds %d -> %d", label, a.FDs, b.FDs))
		}
		// Anonymous memory is what a leak grows; file pages come and go
		// with the audit file's mapping.
		if b.AnonMiB > a.AnonMiB*(1+soakSlackRSS) {
			out = append(out, fmt.Sprintf("%s: anonymous RSS %.1f -> %.1f MiB", label, a.AnonMiB, b.AnonMiB))
		}
	}
	// The last sample taken while the clients were still sending.
	var last soakSample
	found := false
	for _, x := range s {
		switch x.At {
		case "idle", "start", "after load", "idle after":
		default:
			last, found = x, true
		}
	}
	if a, ok := find("start"); ok && found {
		cmp("under load", a, last)
	}
	if a, ok := find("idle"); ok {
		if b, ok := find("idle after"); ok {
			// Idle RSS after a soak keeps the heap the load grew (the Go
			// runtime returns memory lazily): only counts are compared.
			b.AnonMiB = 0
			cmp("idle", a, b)
		}
	}
	return out
}

func (rep soakReport) print(b *bench) {
	w := b.stdout
	m := rep.Machine
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s, load %s\n", m.CPUs, m.CPUModel, m.GoVersion, m.Load)
	r := rep.Result
	fmt.Fprintf(w, "soak: %s, %d clients paced to %d req/s in all, through stack: %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors, CPU %.1f s, peak RssAnon %.1f MiB (RSS %.1f)\n\n",
		rep.Duration, rep.Clients, rep.Rate, r.RPS, r.P50MS, r.P99MS, r.Errors, r.CPUSeconds, r.PeakAnonMiB, r.PeakRSSMiB)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "at\tgoroutines\topen fds\tRSS MiB\tanon RSS MiB\t")
	for _, s := range rep.Samples {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t\n", s.At, s.Goroutines, s.FDs, s.RSSMiB, s.AnonMiB)
	}
	tw.Flush()
	if a := r.Audit; a != nil {
		fmt.Fprintf(w, "\naudit: %d records %v; %d request and %d credential_access records for %d requests answered; chain verified %v\n",
			a.Records, a.ByAction, a.Found, a.FoundAccess, a.Expected, a.Verified)
		if a.Problem != "" {
			fmt.Fprintf(w, "audit PROBLEM: %s\n", a.Problem)
		}
	}
	for _, g := range rep.Growth {
		fmt.Fprintf(w, "GROWTH %s\n", g)
	}
	if rep.Pass {
		fmt.Fprintln(w, "soak: no growth, no audit record lost")
	}
}
