package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	cases := []struct {
		name string
		line string
		want float64
		err  bool
	}{
		// Fields after the command: state ppid pgrp session tty tpgid
		// flags minflt cminflt majflt cmajflt utime stime ...
		{"plain", "42 (stack) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0", 3.0, false},
		{"command with spaces and parens", "42 (a (b) c) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0", 0.1, false},
		{"truncated", "42 (stack) S 1 42", 0, true},
		{"no command", "42 stack S", 0, true},
		{"not a number", "42 (x) S 1 42 42 0 -1 0 0 0 0 0 x 3", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tc.line))
			if tc.err {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	in := "Name:\tstack\nVmPeak:\t  900 kB\nVmHWM:\t   31672 kB\nVmRSS:\t   20000 kB\nRssAnon:\t    9000 kB\nThreads:\t9\n"
	m, err := parseStatus([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if m.Peak != 31672<<10 || m.RSS != 20000<<10 || m.Anon != 9000<<10 {
		t.Fatalf("got %+v", m)
	}
	if _, err := parseStatus([]byte("VmRSS:\t1 kB\nRssAnon:\t1 kB\n")); err == nil {
		t.Fatal("missing VmHWM accepted")
	}
	if _, err := parseStatus([]byte("VmRSS:\t1 kB\nVmHWM:\t1 kB\n")); err == nil {
		t.Fatal("missing RssAnon accepted: the memory targets count it")
	}
	if _, err := parseStatus([]byte("VmRSS:\t1 MB\nVmHWM:\t1 kB\nRssAnon:\t1 kB\n")); err == nil {
		t.Fatal("unexpected unit accepted")
	}
}

// anonPeak sees memory this process holds, written so that it is
// resident and anonymous.
func TestAnonPeakOnSelf(t *testing.T) {
	const held = 64 << 20
	stop := anonPeak(os.Getpid())
	b := make([]byte, held)
	for i := range b {
		b[i] = 1
	}
	peak := stop()
	runtime.KeepAlive(b)
	if peak < held {
		t.Fatalf("peak RssAnon %d MiB with %d MiB held", peak>>20, held>>20)
	}
}

// The readers work on a real process: this one.
func TestProcReadersOnSelf(t *testing.T) {
	pid := os.Getpid()
	if _, err := procCPU(pid); err != nil {
		t.Fatal(err)
	}
	m, err := procMem(pid)
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.Peak < m.RSS {
		t.Fatalf("memory %+v: want 0 < RSS <= peak", m)
	}
	before, err := procFDs(pid)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := procFDs(pid)
	f.Close()
	if after != before+1 {
		t.Fatalf("fds %d then %d after opening one file", before, after)
	}
}

func TestQuantile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	cases := []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 50 * time.Millisecond}, {0.9, 90 * time.Millisecond}, {0.99, 99 * time.Millisecond},
		{1, 100 * time.Millisecond}, {0, time.Millisecond},
	}
	for _, tc := range cases {
		if got := quantile(s, tc.q); got != tc.want {
			t.Errorf("q%.2f = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("empty: %v", got)
	}
	if got := quantile(s[:1], 0.99); got != time.Millisecond {
		t.Errorf("one sample: %v", got)
	}
}

// Past maxSamples a client keeps every other sample, so memory stays
// bounded while the distribution is kept.
func TestSampleBounded(t *testing.T) {
	cs := &clientStats{stride: 1}
	for i := range 3 * maxSamples {
		cs.sample(time.Duration(i))
	}
	if len(cs.samples) > maxSamples {
		t.Fatalf("%d samples kept, bound %d", len(cs.samples), maxSamples)
	}
	if cs.stride < 2 {
		t.Fatalf("stride %d after overflow", cs.stride)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.clients, []int{32}) || o.rssClients != 256 || o.duration != 10*time.Second || o.warmup != 2*time.Second ||
		len(o.targets) != len(allTargets) || o.rounds != 1 || o.crash || o.crashRounds != 3 || o.crashAfter != 3*time.Second {
		t.Fatalf("defaults %+v", o)
	}
	o, err = parseFlags([]string{"--targets", "stack, reference", "--clients", "8"}, io.Discard)
	if err != nil || strings.Join(o.targets, ",") != "stack,reference" || !slices.Equal(o.clients, []int{8}) {
		t.Fatalf("got %+v, %v", o, err)
	}
	o, err = parseFlags([]string{"--clients", "16, 64"}, io.Discard)
	if err != nil || !slices.Equal(o.clients, []int{16, 64}) {
		t.Fatalf("a list of counts: %v, %v", o.clients, err)
	}
	o, err = parseFlags([]string{"--targets", "stack,candidate", "--candidate", "/tmp/other-stack"}, io.Discard)
	if err != nil || strings.Join(o.targets, ",") != "stack,candidate" || o.candidateBin != "/tmp/other-stack" {
		t.Fatalf("got %+v, %v", o, err)
	}
	if o.respBody != "json" {
		t.Errorf("default answer %q, want json", o.respBody)
	}
	o, err = parseFlags([]string{"--resp-body", "text", "--resp-size", "16384"}, io.Discard)
	if err != nil || o.respBody != "text" || o.respSize != 16384 {
		t.Fatalf("text answers: %+v, %v", o, err)
	}
	o, err = parseFlags([]string{"--crash", "--crash-rounds", "5", "--crash-after", "2s"}, io.Discard)
	if err != nil || !o.crash || o.crashRounds != 5 || o.crashAfter != 2*time.Second {
		t.Fatalf("crash flags: %+v, %v", o, err)
	}
	for _, bad := range [][]string{
		{"--targets", "stack,nginx"}, {"--clients", "0"}, {"--duration", "0s"}, {"--soak", "2h"},
		{"--rounds", "0"}, {"extra"}, {"--no-such-flag"}, {"--resp-body", "html"},
		{"--clients", "16,"}, {"--clients", "16,16"}, {"--clients", "8,5000"}, {"--clients", "x"},
		{"--targets", "stack-alerting"},                      // gone: stack is what it measured
		{"--crash", "--clients", "16,64"},                    // one count per crash run
		{"--soak", "1m", "--clients", "16,64"},               // and per soak
		{"--soak", "1m", "--crash"},                          // one mode at a time
		{"--crash", "--crash-rounds", "0"},                   //
		{"--crash", "--crash-after", "1ms"},                  // no load to kill
		{"--targets", "stack,candidate"},                     // no binary to measure
		{"--candidate", "/tmp/other-stack"},                  // nothing would measure it
		{"--targets", "stack-candidate", "--candidate", "x"}, // no such variant
		{"--targets", "stack-256,candidate-256"},             // no binary to measure
	} {
		if _, err := parseFlags(bad, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("%q: err %v, want a usage error", bad, err)
		}
	}
	if o, err := parseFlags([]string{"--targets", "stack-256,candidate-256", "--candidate", "/tmp/other-stack"}, io.Discard); err != nil || len(o.targets) != 2 {
		t.Errorf("candidate-256 with --candidate: %v, %v", o.targets, err)
	}
}

// Each keep-alive MITM target runs at every count, a STACK target right
// after its reference at the same count; the others run once, at the
// first count.
func TestExpandRuns(t *testing.T) {
	names := func(runs []benchRun) string {
		var out []string
		for _, r := range runs {
			out = append(out, fmt.Sprintf("%s/%s/%d", r.Name, r.Target, r.Clients))
		}
		return strings.Join(out, " ")
	}
	targets := []string{"direct", "reference", "stack", "stack-quiet", "reference-tunnel", "stack-tunnel", "reference-256", "mitmdump"}
	got := names(expandRuns(targets, []int{16, 64}))
	want := "direct/direct/16 reference@16/reference/16 stack@16/stack/16 stack-quiet@16/stack-quiet/16 " +
		"reference@64/reference/64 stack@64/stack/64 stack-quiet@64/stack-quiet/64 " +
		"reference-tunnel/reference-tunnel/16 stack-tunnel/stack-tunnel/16 reference-256/reference-256/16 " +
		"mitmdump@16/mitmdump/16 mitmdump@64/mitmdump/64"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	// One count keeps the names of the targets.
	if got := names(expandRuns([]string{"reference", "stack", "stack-always"}, []int{32})); got != "reference/reference/32 stack/stack/32 stack-always/stack-always/32" {
		t.Fatalf("one count: %s", got)
	}
}

// stack-always runs only on a build that took the setting; a build that
// ignores the variable would measure the default under its name.
func TestSyncAlwaysMissing(t *testing.T) {
	cases := []struct {
		name, show string
		runs, err  bool
	}{
		{"setting taken", "proxy:\n    listen: 127.0.0.1:8080\naudit:\n    path: /h/audit.db\n    sync: always\n    sync_interval: 10ms\n", true, false},
		{"no such setting", "audit:\n    path: /h/audit.db\n    checkpoint_every: 1000\n", false, false},
		{"setting not applied", "audit:\n    sync: interval\n", false, false},
		{"no audit section", "proxy: {}\n", false, true},
		{"not YAML", "audit: [\n", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			why, err := syncAlwaysMissing(tc.show)
			if (err != nil) != tc.err || (!tc.err && (why == "") != tc.runs) {
				t.Fatalf("got %q, %v", why, err)
			}
		})
	}
}

func TestRatios(t *testing.T) {
	rs := []result{
		{Name: "reference@16", Target: "reference", Proxy: "reference", Clients: 16, RPS: 1000, P99MS: 10},
		{Name: "stack@16", Target: "stack", Proxy: "stack", Clients: 16, RPS: 920, P99MS: 11.5, IdleAnonMiB: 9, IdleRSSMiB: 20, ReadyMS: 90, CPUPerReqUS: 200},
		{Name: "stack-quiet@16", Target: "stack-quiet", Proxy: "stack", Clients: 16, RPS: 950},
		{Name: "stack-always@16", Target: "stack-always", Proxy: "stack", Clients: 16, RPS: 790},
		{Name: "stack-learned@16", Target: "stack-learned", Proxy: "stack", Clients: 16, RPS: 828, CPUPerReqUS: 230},
		{Name: "mitmdump@16", Target: "mitmdump", Proxy: "mitmdump", Clients: 16, RPS: 90},
		{Name: "reference@64", Target: "reference", Proxy: "reference", Clients: 64, RPS: 2000, P99MS: 20},
		{Name: "stack@64", Target: "stack", Proxy: "stack", Clients: 64, RPS: 1700, P99MS: 23},
		{Name: "candidate@16", Target: "candidate", Proxy: "candidate", Clients: 16, RPS: 1012, P99MS: 11, IdleAnonMiB: 99, IdleRSSMiB: 99, CPUPerReqUS: 180},
		{Name: "reference-tunnel", Target: "reference-tunnel", Proxy: "reference", Clients: 16, RPS: 1000},
		{Name: "stack-tunnel", Target: "stack-tunnel", Proxy: "stack", Clients: 16, RPS: 990, IdleAnonMiB: 21, IdleRSSMiB: 25, ReadyMS: 100},
		{Name: "reference-newconn", Target: "reference-newconn", Proxy: "reference", Clients: 16, RPS: 200},
		{Name: "stack-newconn", Target: "stack-newconn", Proxy: "stack", Clients: 16, RPS: 210},
		{Name: "stack-256", Target: "stack-256", Proxy: "stack", Clients: 256, RPS: 100, PeakAnonMiB: 59, PeakRSSMiB: 75},
		{Name: "mitmdump@64", Target: "mitmdump", Skipped: "not installed"},
	}
	got := map[string]ratio{}
	for _, r := range ratios(rs) {
		got[r.Name] = r
		// Also by the name's start, for names that carry figures.
		if f := strings.Fields(r.Name); len(f) > 1 {
			if _, dup := got[f[0]+" "+f[1]]; !dup {
				got[f[0]+" "+f[1]] = r
			}
		}
	}
	check := func(key string, value float64, target string, pass bool) {
		t.Helper()
		r, ok := got[key]
		if !ok {
			t.Fatalf("no %q ratio in %v", key, got)
		}
		if d := r.Value - value; d > 1e-9 || d < -1e-9 || r.Pass != pass || r.Target != target {
			t.Errorf("%s = %v %s pass %v, want %v %s pass %v", key, r.Value, r.Target, r.Pass, value, target, pass)
		}
	}
	check("throughput stack/reference at 16 clients", 0.92, ">= 0.9", true)
	check("added p99 stack - reference at 16 clients", 1.5, "<= 2", true)
	check("throughput stack/reference at 64 clients", 0.85, ">= 0.9", false)
	check("added p99 stack - reference at 64 clients", 3, "<= 2", false)
	check("throughput stack-always/reference at 16 clients", 0.79, ">= 0.8", false)
	check("throughput stack-quiet/reference at 16 clients", 0.95, "-", true)
	check("throughput stack-learned/stack at 16 clients", 0.9, ">= 0.9", true)
	check("CPU per request stack-learned/stack at 16 clients", 1.15, "-", true)
	check("throughput stack/mitmdump at 16 clients", 920.0/90, ">= 10.0", true)
	check("tunnel stack/reference at 16 clients", 0.99, ">= 1.0", false)
	check("new connection stack/reference at 16 clients", 1.05, ">= 1.0", true)
	check("stack peak", 59, "<= 60", true)  // RssAnon counts, not RSS
	check("stack idle", 21, "<= 20", false) // the worst start counts
	check("stack start", 100, "<= 200", true)
	check("throughput candidate/stack at 16 clients", 1.1, "-", true)
	check("added p99 candidate - stack at 16 clients", -0.5, "-", true)
	check("CPU per request candidate/stack at 16 clients", 0.9, "-", true)
	// Pairs only at the same count; nothing against a skipped row.
	for name := range got {
		if strings.Contains(name, "stack-always/reference at 64") || strings.Contains(name, "mitmdump at 64") {
			t.Errorf("unexpected ratio %q", name)
		}
	}
}

func TestRoundRatios(t *testing.T) {
	runs := expandRuns([]string{"reference", "stack", "candidate"}, []int{16, 64})
	by := map[string][]result{
		"reference@16": {{RPS: 1000}, {RPS: 2000}, {RPS: 1000}},
		"stack@16":     {{RPS: 700}, {RPS: 1800}, {RPS: 800}},
		"candidate@16": {{RPS: 770}, {Skipped: "start failed"}, {RPS: 800}},
		"reference@64": {{RPS: 1000}, {RPS: 1000}, {RPS: 1000}},
		"stack@64":     {{RPS: 900}, {RPS: 950}, {RPS: 1000}},
		"candidate@64": {{Skipped: "x"}, {Skipped: "x"}, {RPS: 1}},
	}
	got := roundRatios(runs, by)
	if len(got) != 3 {
		t.Fatalf("%d ratios, want 3: %+v", len(got), got)
	}
	// Rounds 0.7, 0.9, 0.8: the median pairs rounds, unlike the ratio of
	// the medians (800/1000).
	if r := got[0]; r.Name != "throughput stack/reference at 16 clients by round (0.70 0.90 0.80), median" || math.Abs(r.Value-0.8) > 1e-9 {
		t.Errorf("stack/reference at 16: %+v", r)
	}
	if r := got[1]; r.Name != "throughput stack/reference at 64 clients by round (0.90 0.95 1.00), median" || math.Abs(r.Value-0.95) > 1e-9 {
		t.Errorf("stack/reference at 64: %+v", r)
	}
	// A skipped round drops out; two rounds give their mean; one is not
	// enough.
	if r := got[2]; r.Name != "throughput candidate/stack at 16 clients by round (1.10 1.00), median" || math.Abs(r.Value-1.05) > 1e-9 {
		t.Errorf("candidate/stack: %+v", r)
	}
	one := expandRuns([]string{"reference", "stack"}, []int{32})
	if got := roundRatios(one, map[string][]result{"reference": {{RPS: 1}}, "stack": {{RPS: 1}}}); len(got) != 0 {
		t.Errorf("one round gave %+v", got)
	}
}

func TestMedianRound(t *testing.T) {
	rs := []result{{RPS: 30}, {RPS: 10}, {Skipped: "x"}, {RPS: 20}}
	if got := medianRound(rs); got.RPS != 20 {
		t.Fatalf("median %v, want 20", got.RPS)
	}
	if got := medianRound([]result{{Skipped: "a"}, {Skipped: "b"}}); got.Skipped != "b" {
		t.Fatalf("all skipped: %+v", got)
	}
}

func TestParseGoroutines(t *testing.T) {
	in := "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines 37\ngo_threads 9\n"
	n, err := parseGoroutines(bufio.NewScanner(strings.NewReader(in)))
	if err != nil || n != 37 {
		t.Fatalf("got %d, %v", n, err)
	}
	if _, err := parseGoroutines(bufio.NewScanner(strings.NewReader("go_threads 9\n"))); err == nil {
		t.Fatal("missing go_goroutines accepted")
	}
}

func TestSetTunnelHosts(t *testing.T) {
	home := t.TempDir()
	yaml := "proxy:\n  listen: \"127.0.0.1:8080\"\n  tunnel_hosts: []\n  max_connections: 4096\n"
	if err := os.WriteFile(filepath.Join(home, "stack.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &bench{stackHome: home}
	if err := b.setTunnelHosts(true); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(home, "stack.yaml"))
	if !strings.Contains(string(raw), `  tunnel_hosts: ["`+benchHost+`"]`) || !strings.Contains(string(raw), "max_connections: 4096") {
		t.Fatalf("after on:\n%s", raw)
	}
	if err := b.setTunnelHosts(false); err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(filepath.Join(home, "stack.yaml"))
	if string(raw) != yaml {
		t.Fatalf("after off:\n%s\nwant\n%s", raw, yaml)
	}
	os.WriteFile(filepath.Join(home, "stack.yaml"), []byte("proxy: {}\n"), 0o600)
	if err := b.setTunnelHosts(true); err == nil {
		t.Fatal("a stack.yaml without tunnel_hosts accepted")
	}
}

func TestSoakGrowth(t *testing.T) {
	steady := []soakSample{
		{At: "idle", Goroutines: 15, FDs: 12, RSSMiB: 30, AnonMiB: 10},
		{At: "start", Goroutines: 120, FDs: 80, RSSMiB: 40, AnonMiB: 14},
		{At: "30s", Goroutines: 130, FDs: 81, RSSMiB: 52, AnonMiB: 15},
		{At: "1m0s", Goroutines: 124, FDs: 80, RSSMiB: 70, AnonMiB: 14},
		{At: "after load", Goroutines: 16, FDs: 12, RSSMiB: 44, AnonMiB: 13},
		{At: "idle after", Goroutines: 16, FDs: 12, RSSMiB: 45, AnonMiB: 13},
	}
	if g := soakGrowth(steady); len(g) != 0 {
		t.Fatalf("steady run reported growth: %v", g)
	}
	leaky := []soakSample{
		{At: "idle", Goroutines: 15, FDs: 12, RSSMiB: 30, AnonMiB: 10},
		{At: "start", Goroutines: 120, FDs: 80, RSSMiB: 40, AnonMiB: 14},
		{At: "30s", Goroutines: 500, FDs: 300, RSSMiB: 60, AnonMiB: 30},
		{At: "1m0s", Goroutines: 900, FDs: 500, RSSMiB: 90, AnonMiB: 60},
		{At: "after load", Goroutines: 800, FDs: 450, RSSMiB: 90, AnonMiB: 60},
		{At: "idle after", Goroutines: 700, FDs: 400, RSSMiB: 90, AnonMiB: 60},
	}
	if g := soakGrowth(leaky); len(g) != 5 {
		t.Fatalf("leaky run: %v, want goroutines, fds and anonymous RSS under load and goroutines and fds idle", g)
	}
}

// The load driver against the real upstream over loopback TLS: every
// answer is counted once, warm-up included in Total only, and the
// upstream saw exactly the requests the clients completed.
func TestDriveDirect(t *testing.T) {
	up, err := startUpstream(benchHost, 256, false, "sk_test")
	if err != nil {
		t.Fatal(err)
	}
	defer up.close()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(up.ca.CertPEM())
	starts := 0
	lr, err := drive(context.Background(), loadSpec{
		Target:   "https://" + benchHost + ":" + up.port() + benchPath,
		DialAddr: "127.0.0.1:" + up.port(), Roots: roots, Header: placeholderHeader(),
		Clients: 3, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond,
		OnStart: func() { starts++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	if lr.Errors != 0 || lr.FirstError != "" {
		t.Fatalf("%d errors, first %q", lr.Errors, lr.FirstError)
	}
	if lr.Requests == 0 || lr.Total < lr.Requests || int64(len(lr.Latencies)) != lr.Requests {
		t.Fatalf("requests %d, total %d, samples %d", lr.Requests, lr.Total, len(lr.Latencies))
	}
	if got := up.requests.Load(); got != lr.Total {
		t.Fatalf("upstream answered %d requests, clients counted %d", got, lr.Total)
	}
	if up.injected.Load() != 0 {
		t.Fatal("the placeholder was counted as the secret")
	}
	if starts != 1 {
		t.Fatalf("OnStart called %d times", starts)
	}
	if lr.Elapsed != 300*time.Millisecond {
		t.Fatalf("elapsed %v, want the window", lr.Elapsed)
	}
	for i := 1; i < len(lr.Latencies); i++ {
		if lr.Latencies[i] < lr.Latencies[i-1] {
			t.Fatal("latencies not sorted")
		}
	}
}

// With unique paths every answer is kept by its own path, numbered per
// client from 0.
func TestDriveUniquePaths(t *testing.T) {
	up, err := startUpstream(benchHost, 64, false, "")
	if err != nil {
		t.Fatal(err)
	}
	defer up.close()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(up.ca.CertPEM())
	lr, err := drive(context.Background(), loadSpec{
		Target:   "https://" + benchHost + ":" + up.port() + benchPath,
		DialAddr: "127.0.0.1:" + up.port(), Roots: roots,
		Clients: 3, Duration: 200 * time.Millisecond, UniquePaths: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if lr.Errors != 0 || lr.Total == 0 || int64(len(lr.Answered)) != lr.Total || up.requests.Load() != lr.Total {
		t.Fatalf("total %d, answered %d, upstream %d, errors %d (%s)", lr.Total, len(lr.Answered), up.requests.Load(), lr.Errors, lr.FirstError)
	}
	next := map[string]int{}
	for _, p := range lr.Answered {
		rest, ok := strings.CutPrefix(p, benchPath+"/")
		client, n, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 {
			t.Fatalf("path %q", p)
		}
		if want := strconv.Itoa(next[client]); n != want {
			t.Fatalf("client %s: request %s after %d", client, n, next[client])
		}
		next[client]++
	}
	if len(next) != 3 {
		t.Fatalf("answers from %d clients, want 3", len(next))
	}
	if lr2, _ := drive(context.Background(), loadSpec{
		Target: "https://" + benchHost + ":" + up.port() + benchPath, DialAddr: "127.0.0.1:" + up.port(), Roots: roots,
		Clients: 1, Duration: 50 * time.Millisecond,
	}); lr2.Answered != nil {
		t.Fatal("answers kept without UniquePaths")
	}
}

// A target that refuses every request shows up as errors, not as
// throughput.
func TestDriveCountsErrors(t *testing.T) {
	up, err := startUpstream(benchHost, 64, false, "")
	if err != nil {
		t.Fatal(err)
	}
	defer up.close()
	// The client does not trust the upstream's CA: every handshake fails.
	lr, err := drive(context.Background(), loadSpec{
		Target:   "https://" + benchHost + ":" + up.port() + benchPath,
		DialAddr: "127.0.0.1:" + up.port(), Roots: x509.NewCertPool(),
		Clients: 2, Duration: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if lr.Requests != 0 || lr.Errors == 0 || !strings.Contains(lr.FirstError, "certificate") {
		t.Fatalf("requests %d, errors %d, first %q", lr.Requests, lr.Errors, lr.FirstError)
	}
}

// --resp-body text: the upstream answers with prose of the size asked
// for, as text/plain.
func TestUpstreamTextAnswer(t *testing.T) {
	up, err := startUpstream(benchHost, 4096, true, "")
	if err != nil {
		t.Fatal(err)
	}
	defer up.close()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(up.ca.CertPEM())
	c := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: benchHost},
	}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://127.0.0.1:" + up.port() + benchPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" || len(b) != 4096 || len(strings.Fields(string(b))) < 500 {
		t.Fatalf("%s, %d bytes, %d words", ct, len(b), len(strings.Fields(string(b))))
	}
}
