package fleet

import (
	"context"
	"errors"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/stacktest"
	"github.com/stackctl/stack/reason"
	"go.uber.org/goleak"
)

// stackBin is the stack binary TestMain builds.
var stackBin string

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(stacktest.BuildFirst(m, "fleet", func(ctx context.Context, dir string) (err error) {
		stackBin, err = stacktest.BuildStack(ctx, dir)
		return err
	}))
}

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	cases := []struct {
		name string
		q    float64
		want time.Duration
	}{
		{"median", 0.5, 50 * time.Millisecond},
		{"p99", 0.99, 99 * time.Millisecond},
		{"max", 1, 100 * time.Millisecond},
		{"min", 0, time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := quantile(ds, tc.q); got != tc.want {
				t.Errorf("q%.2f = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("quantile sorted its argument")
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("no samples: %v", got)
	}
	if s := spreadOf(ds[:10]); s.N != 10 || s.P99MS != 100 || s.MaxMS != 100 || s.P50MS != 95 {
		t.Errorf("spread of 10: %+v", s)
	}
}

func TestParseStatus(t *testing.T) {
	in := "Name:\tstack\nVmHWM:\t   31672 kB\nVmRSS:\t   20000 kB\nRssAnon:\t    9000 kB\nRssFile:\t 11000 kB\nThreads:\t9\n"
	m, err := parseStatus(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Memory{RssAnonKB: 9000, VmRSSKB: 20000, VmHWMKB: 31672, Threads: 9}); m != want {
		t.Errorf("got %+v, want %+v", m, want)
	}
	for name, bad := range map[string]string{
		"missing field": "VmRSS:\t1 kB\nVmHWM:\t1 kB\nThreads:\t1\n",
		"other unit":    "VmRSS:\t1 MB\nVmHWM:\t1 kB\nRssAnon:\t1 kB\nThreads:\t1\n",
		"not a number":  "VmRSS:\tx kB\nVmHWM:\t1 kB\nRssAnon:\t1 kB\nThreads:\t1\n",
	} {
		if _, err := parseStatus(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if m, err := readMemory(os.Getpid()); err != nil || m.RssAnonKB <= 0 || m.Threads <= 0 {
		t.Errorf("this process: %+v, %v", m, err)
	}
}

func TestMetricValue(t *testing.T) {
	body := "# HELP stack_control_connected 1 while...\n# TYPE stack_control_connected gauge\nstack_control_connected 1\nstack_control_connected_other 7\nstack_passport_expiry_timestamp_seconds 1.7963e+09\n"
	for series, want := range map[string]float64{
		"stack_control_connected":                 1,
		"stack_passport_expiry_timestamp_seconds": 1.7963e9,
		"absent": 0,
	} {
		if got, err := metricValue(body, series); err != nil || got != want {
			t.Errorf("%s = %v, %v; want %v", series, got, err, want)
		}
	}
}

func TestJudge(t *testing.T) {
	base := time.Now()
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	ok := func(ms int) sample { return sample{sent: at(ms - 1), done: at(ms), status: 200} }
	revoked := func(ms int) sample {
		return sample{sent: at(ms - 1), done: at(ms), status: 403, reason: reason.PassportRevoked}
	}
	failed := func(ms int) sample { return sample{sent: at(ms - 1), done: at(ms), err: "EOF"} }
	started, returned := at(100), at(150)
	cases := []struct {
		name string
		s    []sample
		want verdict
	}{
		{"refused after the return", []sample{ok(50), ok(120), revoked(180), revoked(230)},
			verdict{refused: true, delay: 30 * time.Millisecond, sinceStart: 80 * time.Millisecond}},
		{"refused before the return", []sample{ok(50), revoked(130), revoked(180)},
			verdict{refused: true, beforeReturn: true, sinceStart: 30 * time.Millisecond}},
		{"never refused", []sample{ok(50), ok(200)}, verdict{}},
		{"a failure before", []sample{failed(50), revoked(200)},
			verdict{refused: true, delay: 50 * time.Millisecond, sinceStart: 100 * time.Millisecond, failed: 1, firstFailed: "EOF"}},
		{"served after a refusal", []sample{revoked(200), ok(250), revoked(300), failed(350)},
			verdict{refused: true, delay: 50 * time.Millisecond, sinceStart: 100 * time.Millisecond, leaked: 2, firstLeaked: "200"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := judge(tc.s, started, returned); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	got := redact([]string{"--join-token", "stkj_0123", "--agent", "a"})
	if want := []string{"--join-token", "stkj_[redacted]", "--agent", "a"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestStartChecksOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no binary":   {Dir: t.TempDir(), Sidecars: 2},
		"no dir":      {Bin: "stack", Sidecars: 2},
		"one sidecar": {Bin: "stack", Dir: t.TempDir(), Sidecars: 1},
	} {
		if f, err := Start(context.Background(), o); err == nil {
			f.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

// A small fleet runs the scenarios that need no minute of waiting, and
// leaves no goroutine or process behind.
func TestSmallFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and sidecars; skipped in -short mode")
	}
	goroutines := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log strings.Builder
	f, err := Start(ctx, Options{Bin: stackBin, Dir: t.TempDir(), Sidecars: 3, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Log(log.String())
		}
	}()

	prop, err := f.Propagation(ctx, PropagationOptions{Runs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(prop.Runs) != 1 || prop.Runs[0].Refusal.N != 3 || prop.Runs[0].Outcomes["200"] == 0 {
		t.Errorf("propagation: %+v", prop)
	}
	for _, p := range prop.Problems() {
		t.Errorf("propagation: %s", p)
	}

	cut, err := f.Cutoff(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cut.FirstAfterReconnect == "" || cut.ServedWhileCut == 0 {
		t.Errorf("cutoff: %+v", cut)
	}
	for _, p := range cut.Problems {
		t.Errorf("cutoff: %s", p)
	}

	pids := []int{f.control.pid()}
	for _, s := range f.running {
		pids = append(pids, s.PID)
	}
	f.Close()
	f.Close() // idempotent
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pid %d still exists after Close", pid)
		}
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Close, %d before\n%s", n, goroutines, buf[:runtime.Stack(buf, true)])
	}
}
