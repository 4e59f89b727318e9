package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stackctl/stack/audit"
)

// result is one target's figures.
type result struct {
	// Name is the row's: Target, followed by @CLIENTS when the keep-alive
	// targets ran at several client counts.
	Name    string `json:"name"`
	Target  string `json:"target"`
	Proxy   string `json:"proxy"` // direct, reference, stack, candidate or mitmdump
	Mode    string `json:"mode"`  // mitm, tunnel or direct
	Clients int    `json:"clients"`
	NewConn bool   `json:"new_conn_per_request"`
	Skipped string `json:"skipped,omitempty"`

	RPS        float64 `json:"requests_per_second"`
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	P50MS      float64 `json:"p50_ms"`
	P90MS      float64 `json:"p90_ms"`
	P99MS      float64 `json:"p99_ms"`

	// Of the proxy process, over the measured window (CPU) or its life
	// (peak memory). Anon is RssAnon, what the memory targets count; RSS
	// adds file pages.
	CPUSeconds   float64 `json:"proxy_cpu_seconds"`
	CPUPerReqUS  float64 `json:"proxy_cpu_us_per_request"`
	PeakAnonMiB  float64 `json:"proxy_peak_anon_rss_mib"`
	PeakRSSMiB   float64 `json:"proxy_peak_rss_mib"`
	IdleAnonMiB  float64 `json:"proxy_idle_anon_rss_mib"`
	IdleRSSMiB   float64 `json:"proxy_idle_rss_mib"`
	ReadyMS      float64 `json:"proxy_ready_ms"`
	UpstreamSeen int64   `json:"upstream_requests"`
	// UpstreamInjected counts upstream requests that carried the real
	// credential (STACK's injection at work).
	UpstreamInjected int64 `json:"upstream_injected"`
	// Audit is, for STACK targets, the records by action and whether the
	// records account for every request answered.
	Audit *auditCheck `json:"audit,omitempty"`
}

// auditCheck is what the audit log held after a STACK run. Alerts
// (detector_fired) are counted by action, not checked: how many a burst
// leaves is the detectors' policy.
type auditCheck struct {
	Records  uint64           `json:"records"`
	ByAction map[string]int64 `json:"by_action"`
	// Expected is the request records the run should have left: one per
	// 200 answer (MITM), or one per tunnel.
	Expected int64 `json:"expected_request_records"`
	Found    int64 `json:"request_records"`
	// ExpectedAccess is the credential_access records it should have
	// left: one per 200 answer (MITM); none through tunnels, where
	// nothing is injected.
	ExpectedAccess int64  `json:"expected_credential_access_records"`
	FoundAccess    int64  `json:"credential_access_records"`
	Verified       bool   `json:"chain_verified"`
	Problem        string `json:"problem,omitempty"`
}

// stackLike reports whether proxy runs `stack proxy` (of either build).
func stackLike(proxy string) bool { return proxy == "stack" || proxy == "candidate" }

// splitTarget turns "stack-newconn" into ("stack", "newconn").
func splitTarget(name string) (proxy, variant string) {
	proxy, variant, _ = strings.Cut(name, "-")
	return proxy, variant
}

// runTarget measures one target at one client count; a failure is
// reported in the result.
func (b *bench) runTarget(ctx context.Context, run benchRun) result {
	name := run.Name
	proxyName, variant := splitTarget(run.Target)
	res := result{Name: name, Target: run.Target, Proxy: proxyName, Mode: "mitm", Clients: run.Clients}
	spec := loadSpec{
		Target: b.targetURL(), Header: placeholderHeader(), Clients: run.Clients,
		Warmup: b.opts.warmup, Duration: b.opts.duration,
	}
	switch variant {
	case "tunnel":
		res.Mode = "tunnel"
	case "newconn":
		res.NewConn, spec.NewConn = true, true
	case "256":
		res.Clients, spec.Clients = b.opts.rssClients, b.opts.rssClients
	}
	var p *proc
	var err error
	// A fresh log per run, so its records can be counted against it.
	b.runs++
	auditPath := filepath.Join(b.work, fmt.Sprintf("%s-%d-audit.db", name, b.runs))
	switch proxyName {
	case "direct":
		res.Mode = "direct"
		spec.DialAddr = "127.0.0.1:" + b.up.port()
		spec.Roots = b.upRoots
	case "reference":
		p, err = b.startReference(name, res.Mode == "tunnel")
		spec.Roots = b.refRoots
	case "stack", "candidate":
		if res.Mode == "tunnel" {
			if err = b.setTunnelHosts(true); err != nil {
				break
			}
			defer b.setTunnelHosts(false)
		}
		bin := b.stackBin
		if proxyName == "candidate" {
			bin = b.candidateBin
		}
		var settings []string
		switch variant {
		case "quiet":
			settings = append(settings, steadyBurst)
		case "learned":
			settings = append(settings, learnedOn)
		case "always":
			if b.noSyncAlways != "" {
				res.Skipped = b.noSyncAlways
				return res
			}
			settings = append(settings, syncAlways)
		}
		p, err = b.startStack(name, bin, auditPath, settings...)
		spec.Roots = b.stackCA
	case "mitmdump":
		if b.mitmdump == "" {
			res.Skipped = "mitmdump is not on PATH (apt-get install mitmproxy)"
			return res
		}
		p, err = b.startMitmdump(name)
		spec.Roots = b.mitmRoots
	}
	if err != nil {
		res.Skipped = "start failed: " + err.Error()
		return res
	}
	if res.Mode == "tunnel" {
		spec.Roots = b.upRoots
	}
	var peakAnon func() int64
	if p != nil {
		defer p.stop()
		spec.Proxy = b.proxyURL(p.addr)
		res.ReadyMS = ms(p.ready)
		res.IdleRSSMiB, res.IdleAnonMiB = mib(p.idle.RSS), mib(p.idle.Anon)
		peakAnon = anonPeak(p.pid())
	}
	var cpu0 float64
	var profiled chan error
	spec.OnStart = func() {
		if p != nil {
			cpu0, _ = procCPU(p.pid())
		}
		if stackLike(proxyName) && b.opts.profileDir != "" {
			profiled = make(chan error, 1)
			out := filepath.Join(b.opts.profileDir, fmt.Sprintf("%s-%d.pprof", name, b.runs))
			go func() {
				err := b.fetchProfile(ctx, p.admin, fmt.Sprintf("profile?seconds=%d", max(int(b.opts.duration/time.Second), 1)), b.opts.duration, out)
				if err == nil {
					// Allocations since start: what the GC pays for.
					err = b.fetchProfile(ctx, p.admin, "allocs", 0, strings.TrimSuffix(out, ".pprof")+".allocs.pprof")
				}
				profiled <- err
			}()
		}
	}
	seen0, inj0 := b.up.requests.Load(), b.up.injected.Load()
	lr, err := drive(ctx, spec)
	if peakAnon != nil {
		res.PeakAnonMiB = mib(max(peakAnon(), p.idle.Anon))
	}
	if err != nil {
		res.Skipped = err.Error()
		return res
	}
	if profiled != nil {
		if err := <-profiled; err != nil {
			fmt.Fprintf(b.stderr, "  %s: cpu profile: %v\n", name, err)
		}
	}
	res.UpstreamSeen = b.up.requests.Load() - seen0
	res.UpstreamInjected = b.up.injected.Load() - inj0
	res.fill(lr)
	if p != nil {
		if cpu1, err := procCPU(p.pid()); err == nil {
			res.CPUSeconds = cpu1 - cpu0
			if res.Requests > 0 {
				res.CPUPerReqUS = res.CPUSeconds / float64(res.Requests) * 1e6
			}
		}
		if m, err := procMem(p.pid()); err == nil {
			res.PeakRSSMiB = mib(m.Peak)
		}
		if err := p.stop(); err != nil {
			fmt.Fprintf(b.stderr, "  %s: %v\n", name, err)
		}
	}
	if stackLike(proxyName) {
		expected, access := lr.Total, lr.Total
		if res.Mode == "tunnel" {
			expected, access = int64(spec.Clients), 0 // one CONNECT per keep-alive client
		}
		res.Audit = b.checkAudit(ctx, auditPath, expected, access, res.Mode == "tunnel")
	}
	return res
}

func (r *result) fill(lr loadResult) {
	r.RPS = lr.RPS()
	r.Requests, r.Errors, r.FirstError = lr.Requests, lr.Errors, lr.FirstError
	r.P50MS, r.P90MS, r.P99MS = ms(lr.Quantile(0.50)), ms(lr.Quantile(0.90)), ms(lr.Quantile(0.99))
}

// checkAudit counts the records of a stopped proxy's audit log by action,
// compares the request and credential_access records with expected and
// access, and verifies the chain with `stack audit verify`.
func (b *bench) checkAudit(ctx context.Context, path string, expected, access int64, tunnel bool) *auditCheck {
	ac := &auditCheck{ByAction: map[string]int64{}, Expected: expected, ExpectedAccess: access}
	l, err := audit.Open(path, audit.Options{ReadOnly: true})
	if err != nil {
		ac.Problem = err.Error()
		return ac
	}
	err = l.Iterate(ctx, 0, func(r audit.Record) error {
		ac.Records++
		ac.ByAction[r.Action]++
		switch {
		case r.Action == audit.ActionRequest && r.Status == 200 && (r.Method == "CONNECT") == tunnel:
			ac.Found++
		case r.Action == audit.ActionCredentialAccess:
			ac.FoundAccess++
		}
		return nil
	})
	l.Close()
	if err != nil {
		ac.Problem = err.Error()
		return ac
	}
	if _, err := runCmdTimeout(10*time.Minute, "", b.stackEnv(path), b.stackBin, "--home", b.stackHome, "audit", "verify"); err != nil {
		ac.Problem = "audit verify: " + firstLine(err.Error())
	} else {
		ac.Verified = true
	}
	if ac.Problem != "" {
		return ac
	}
	var problems []string
	if ac.Found != ac.Expected {
		problems = append(problems, fmt.Sprintf("%d request records for %d expected", ac.Found, ac.Expected))
	}
	if ac.FoundAccess != ac.ExpectedAccess {
		problems = append(problems, fmt.Sprintf("%d credential_access records for %d expected", ac.FoundAccess, ac.ExpectedAccess))
	}
	ac.Problem = strings.Join(problems, "; ")
	return ac
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// machine describes where the figures come from.
type machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	Load      string `json:"load_average_at_start"`
}

func machineInfo() machine {
	m := machine{CPUs: numCPU(), GoVersion: goVersion()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.Load = strings.Join(f[:3], " ")
		}
	}
	return m
}

// fetchProfile fetches /debug/pprof/NAME from the STACK process at admin,
// which takes d, and writes it to path.
func (b *bench) fetchProfile(ctx context.Context, admin, name string, d time.Duration, path string) error {
	tok, err := os.ReadFile(filepath.Join(b.stackHome, "admin.token"))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/debug/pprof/"+name, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	c := &http.Client{Timeout: d + 30*time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", req.URL.Path, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
