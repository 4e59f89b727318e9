package e2e

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/fleet"
)

// Fleet sizes for CI: a tenth of the hand-run fleet, every scenario.
const (
	fleetSidecars = 10
	fleetRuns     = 2
)

// TestFleet runs the fleet scenarios of package internal/fleet at CI
// size against the binary TestMain built: ten sidecars joined to one
// control plane. Times are logged, never asserted: the scenarios only
// bound them generously (every sidecar refuses within a minute), and
// every problem they report fails the test.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end tests start processes; skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := workDir(t, "stack-e2e-fleet-")
	f, err := fleet.Start(ctx, fleet.Options{Bin: stackBin, Dir: dir, Sidecars: fleetSidecars, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })

	t.Run("propagation", func(t *testing.T) {
		r, err := f.Propagation(ctx, fleet.PropagationOptions{Runs: fleetRuns})
		logFigures(t, r)
		if err != nil {
			t.Fatal(err)
		}
		for _, run := range r.Runs {
			t.Logf("run %d: every sidecar refused %s after `stack passport revoke` returned (command %.0f ms, %d refused before it returned; from its start %s)",
				run.Run, run.Refusal, run.CommandMS, run.RefusedBeforeReturn, run.SinceStart)
			if run.Refusal.N != fleetSidecars {
				t.Errorf("run %d: %d sidecars refused, want %d", run.Run, run.Refusal.N, fleetSidecars)
			}
		}
		failOn(t, r.Problems())
	})

	t.Run("ttl", func(t *testing.T) {
		r, err := f.TTL(ctx, fleet.TTLOptions{TTL: 6 * time.Second})
		logFigures(t, r)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d requests over %.0f s of %.0f s passports, %d served, %d passports issued",
			r.Requests, r.DurationMS/1000, r.TTLMS/1000, r.Served, r.PassportsIssued)
		if r.Served == 0 {
			t.Error("no request was served")
		}
		failOn(t, r.Problems)
	})

	t.Run("kill", func(t *testing.T) {
		r, err := f.Kill(ctx, fleet.KillOptions{Down: 10 * time.Second})
		logFigures(t, r)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("control plane dead %.1f s: %d requests served, %d failed; after the restart every sidecar refused the revoked agent %s",
			r.DownMS/1000, r.ServedWhileDown, r.FailedWhileDown, r.AfterRestart)
		failOn(t, r.Problems)
	})

	t.Run("cutoff", func(t *testing.T) {
		r, err := f.Cutoff(ctx)
		logFigures(t, r)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("cut off: %d requests served after the revocation; reconnected after %.0f ms; first request then: %s",
			r.ServedWhileCut, r.ReconnectMS, r.FirstAfterReconnect)
		failOn(t, r.Problems)
	})

	t.Run("audit", func(t *testing.T) {
		r, err := f.Audit(ctx, fleet.AuditOptions{Duration: 24 * time.Second, Down: 10 * time.Second})
		logFigures(t, r)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d records in the sidecars' files, %d in the fleet log; up to %.0f waiting while the control plane was dead %.1f s; caught up %.0f ms after the restart; lag afterwards %.2f s",
			r.Records, r.Fleet, r.PeakLagRecords, r.DownMS/1000, r.CaughtUpMS, r.LagSecondsAfter)
		failOn(t, r.Problems)
	})

	t.Run("handoff", func(t *testing.T) {
		r, err := f.Handoffs(ctx, fleet.HandoffOptions{Duration: 5 * time.Second})
		logFigures(t, r)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d pairs: %d handoffs sent, %d delivered, %.0f/s; deposit %s; fetch %s",
			r.Pairs, r.Sent, r.Delivered, r.PerSecond, r.Deposit, r.Fetch)
		failOn(t, r.Problems)
	})

	t.Run("memory", func(t *testing.T) {
		r, err := f.Memory(ctx)
		logFigures(t, r)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("control plane RssAnon %d kB with %d sidecars watching; a sidecar's %d kB",
			r.Control.RssAnonKB, r.Watching, r.Sidecar.RssAnonKB)
		if r.Control.RssAnonKB <= 0 || r.Sidecar.RssAnonKB <= 0 {
			t.Errorf("memory not read: %+v", r)
		}
		failOn(t, r.Problems)
	})
}

// workDir makes a fleet's work directory. It holds every process's log:
// kept when the test fails, removed otherwise.
func workDir(t *testing.T, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("work directory kept, logs in %s/logs", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// testLog sends the fleet's progress lines to the test's log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// logFigures logs a scenario's result as JSON.
func logFigures(t *testing.T, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("figures: %s", b)
}

func failOn(t *testing.T, problems []string) {
	t.Helper()
	for _, p := range problems {
		t.Error(p)
	}
}

// Failover sizes for CI: 3 etcd members and 3 control replicas as in the
// hand-run drill, fewer sidecars and a shorter stream.
const (
	failoverSidecars = 6
	failoverStream   = 12 * time.Second
)

// TestFleetFailover runs the failover drill at CI size: six sidecars on
// three control replicas on a 3-member etcd cluster (this test binary's
// children), a revocation every 100 ms while the issuer key is rotated, a
// replica and then the etcd leader are SIGKILLed and restarted, and the
// third replica is cut off from etcd. Nothing may be lost, no revoked
// agent served after its sidecar applied the revocation, passports of
// both keys must serve, sidecars must move and all be connected at the
// end; times are logged.
func TestFleetFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end tests start processes; skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := workDir(t, "stack-e2e-failover-")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := fleet.Start(ctx, fleet.Options{Bin: stackBin, Dir: dir, Sidecars: failoverSidecars, Replicas: 3, EtcdBin: self, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r, err := f.Failover(ctx, fleet.FailoverOptions{Duration: failoverStream, Agents: 3, AgentRevokes: 2})
	logFigures(t, r)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d revocations, %d lost; propagation outside failover %s, during %s; %d replica moves",
		r.Issued, r.Lost, r.OutsideFailover, r.DuringFailover, r.Moves)
	if r.Issued == 0 || r.Agents == 0 {
		t.Errorf("the drill issued %d revocations, %d of agents", r.Issued, r.Agents)
	}
	// The propagation target is the hand-run drill's to judge
	// (WithinTarget); a shared CI machine only bounds it.
	failOn(t, r.Problems)
}
