package main

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/fleet"
	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.sidecars != 100 || o.runs != 5 || len(o.scenarios) != len(defaultScenarios) || o.interval != fleet.DefaultInterval ||
		o.batch != fleet.DefaultBatch || o.ttl != 6*time.Second || o.down != 10*time.Second {
		t.Fatalf("defaults %+v", o)
	}
	o, err = parseFlags([]string{"--sidecars", "10", "--scenarios", "kill, memory", "--json", "out.json"}, io.Discard)
	if err != nil || o.sidecars != 10 || strings.Join(o.scenarios, ",") != "kill,memory" || o.jsonOut != "out.json" {
		t.Fatalf("got %+v, %v", o, err)
	}
	for _, bad := range [][]string{
		{"--sidecars", "1"}, {"--runs", "0"}, {"--scenarios", "propagation,chaos"}, {"--scenarios", ","},
		{"--interval", "0s"}, {"--batch", "0"}, {"--ttl", "1s"}, {"--down", "0s"}, {"--scenarios", "failover,kill"}, {"--stream", "1s"}, {"extra"}, {"--no-such-flag"},
	} {
		if _, err := parseFlags(bad, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("%q: err %v, want a usage error", bad, err)
		}
	}
}

func TestReportPrint(t *testing.T) {
	rep := &report{Sidecars: 3, CPUs: 2, IntervalMS: 50, ElapsedS: 12,
		Propagation: &fleet.PropagationResult{Sidecars: 3, TargetMaxMS: 1000, Runs: []fleet.PropagationRun{
			{Run: 1, Sidecars: 3, CommandMS: 80, Refusal: fleet.Spread{N: 3, P50MS: 12, P99MS: 30, MaxMS: 30}, WithinTarget: true},
			{Run: 2, Sidecars: 3, Refusal: fleet.Spread{N: 2, MaxMS: 1500}, Problems: []string{"sidecar 2 never refused its revoked agent"}},
		}},
		TTL:    &fleet.TTLResult{Sidecars: 3, Requests: 10, Served: 9, Outcomes: map[string]int{"200": 9, "407 passport_expired": 1}},
		Kill:   &fleet.KillResult{Serving: 2, Revoked: 1, AfterRestart: fleet.Spread{N: 2, MaxMS: 4000}},
		Cutoff: &fleet.CutoffResult{Sidecars: 3, FirstAfterReconnect: "403 passport_revoked", RefusedAfter: 5},
		Memory: &fleet.MemoryResult{Sidecars: 3, Watching: 3, Control: fleet.Memory{RssAnonKB: 20000}},
		Errors: []string{"kill: gave up"},
	}
	var b strings.Builder
	rep.print(&b)
	out := b.String()
	for _, want := range []string{
		"fleet of 3 sidecars", "30 ms", "met", "missed", "PROBLEM run 2: sidecar 2 never refused",
		"407 passport_expired: 1", "every sidecar refuses: p50 0 ms, p99 0 ms, max 4000 ms (n=2)",
		"first request: 403 passport_revoked", "control plane: RssAnon 20000 kB", "ERROR kill: gave up",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if n := rep.problems(); n != 2 {
		t.Errorf("problems() = %d, want 2", n)
	}
}
