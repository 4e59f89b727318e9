package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// print writes the report as a few readable tables.
func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "fleet of %d sidecars on %d CPUs, one request per agent every %.0f ms (as configured), %.0f s in all\n",
		r.Sidecars, r.CPUs, r.IntervalMS, r.ElapsedS)
	if p := r.Propagation; p != nil {
		fmt.Fprintf(w, "\npropagation: `stack passport revoke --agent` until each sidecar refuses (from the command's return; target max %.0f ms)\n", p.TargetMaxMS)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "run\tjoin\tcommand\tp50\tp99\tmax\tbefore return\trequests\tinterval\ttarget\tproblems\t")
		for _, run := range p.Runs {
			fmt.Fprintf(tw, "%d\t%.1f s\t%.0f ms\t%.0f ms\t%.0f ms\t%.0f ms\t%d/%d\t%d\t%.0f ms\t%s\t%d\t\n",
				run.Run, run.JoinMS/1000, run.CommandMS, run.Refusal.P50MS, run.Refusal.P99MS, run.Refusal.MaxMS,
				run.RefusedBeforeReturn, run.Sidecars, run.Requests, run.MeanIntervalMS, met(run.WithinTarget), len(run.Problems))
		}
		tw.Flush()
		for _, run := range p.Runs {
			fmt.Fprintf(w, "  run %d from the command's start: %s\n", run.Run, run.SinceStart)
		}
		for _, run := range p.Runs {
			printProblems(w, fmt.Sprintf("run %d", run.Run), run.Problems)
		}
	}
	if t := r.TTL; t != nil {
		fmt.Fprintf(w, "\nttl: %.0f s passports, traffic for %.0f s: %d requests (one per agent every %.0f ms), %d served; %d passports issued; %d of %d sidecars refreshed\n",
			t.TTLMS/1000, t.DurationMS/1000, t.Requests, t.MeanIntervalMS, t.Served, t.PassportsIssued, t.Refreshed, t.Sidecars)
		printOutcomes(w, t.Outcomes)
		printProblems(w, "ttl", t.Problems)
	}
	if k := r.Kill; k != nil {
		fmt.Fprintf(w, "\nkill: control plane SIGKILLed for %.1f s (%d sidecars serving, %d revoked just before)\n", k.DownMS/1000, k.Serving, k.Revoked)
		fmt.Fprintf(w, "  before the kill, revoked agent refused: %s\n", k.BeforeKill)
		fmt.Fprintf(w, "  while dead: %d requests served, %d failed; %d refused for the revoked agent\n", k.ServedWhileDown, k.FailedWhileDown, k.RefusedWhileDown)
		fmt.Fprintf(w, "  restart: run file after %.0f ms; feeds open again: %s\n", k.RestartMS, k.Reconnected)
		fmt.Fprintf(w, "  revocation right after the restart (command %.0f ms), every sidecar refuses: %s\n", k.AfterRestartCommandMS, k.AfterRestart)
		printProblems(w, "kill", k.Problems)
	}
	if c := r.Cutoff; c != nil {
		fmt.Fprintf(w, "\ncutoff: sidecar 0 behind a fault proxy, cut; seen disconnected after %.0f ms\n", c.CutDetectedMS)
		fmt.Fprintf(w, "  revoked: the %d others refuse: %s\n", c.Sidecars-1, c.Others)
		fmt.Fprintf(w, "  while cut, after the revocation: %d served (fail-static), %d failed\n", c.ServedWhileCut, c.FailedWhileCut)
		fmt.Fprintf(w, "  restored: connected after %.0f ms; first request: %s; then %d of the next 5 refused\n", c.ReconnectMS, c.FirstAfterReconnect, c.RefusedAfter)
		printProblems(w, "cutoff", c.Problems)
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "\nmemory with %d sidecars (%d watching):\n", m.Sidecars, m.Watching)
		fmt.Fprintf(w, "  control plane: RssAnon %d kB, VmRSS %d kB, peak %d kB, %d threads\n", m.Control.RssAnonKB, m.Control.VmRSSKB, m.Control.VmHWMKB, m.Control.Threads)
		fmt.Fprintf(w, "  sidecar (median): RssAnon %d kB, VmRSS %d kB; RssAnon over all: min %d, p50 %d, max %d kB\n",
			m.Sidecar.RssAnonKB, m.Sidecar.VmRSSKB, m.SidecarRssAnonKB.Min, m.SidecarRssAnonKB.P50, m.SidecarRssAnonKB.Max)
		printProblems(w, "memory", m.Problems)
	}
	if a := r.Audit; a != nil {
		fmt.Fprintf(w, "\naudit: %d sidecars, traffic for %.0f s (%d requests), control plane SIGKILLed for %.1f s in the middle\n", a.Sidecars, a.DurationMS/1000, a.Requests, a.DownMS/1000)
		fmt.Fprintf(w, "  while dead: up to %.0f records waiting in one sidecar's log; caught up %.0f ms after the restart; shipping lag afterwards at most %.2f s\n", a.PeakLagRecords, a.CaughtUpMS, a.LagSecondsAfter)
		fmt.Fprintf(w, "  sidecar files: %d records; fleet log: %d of them (%d missing, %d extra, %d with another hash), and %d written after the files were read\n", a.Records, a.Fleet, a.Missing, a.Extra, a.Differ, a.Later)
		printProblems(w, "audit", a.Problems)
	}
	if fo := r.Failover; fo != nil {
		fmt.Fprintf(w, "\nfailover: %d sidecars, %d control replicas on 3 etcd members; %d revocations issued (%d of agents), %d failed, %d call retries, slowest call %.0f ms\n",
			fo.Sidecars, fo.Replicas, fo.Issued, fo.Agents, fo.Failed, fo.RevokeRetries, fo.MaxRevokeCallMS)
		for _, e := range fo.Events {
			if e.Outage {
				fmt.Fprintf(w, "  at %5.1f s: %s; revocations issued in the next seconds: %s\n", e.AtMS/1000, e.What, e.Propagation)
			} else {
				fmt.Fprintf(w, "  at %5.1f s: %s\n", e.AtMS/1000, e.What)
			}
		}
		fmt.Fprintf(w, "  lost (revocation, sidecar) pairs: %d; served to a revoked agent after it applied: %d; not connected at the end: %d; replica moves: %d\n",
			fo.Lost, fo.ServedAfterRevocation, fo.Disconnected, fo.Moves)
		fmt.Fprintf(w, "  key rotation: %s signs from %s; %d of %d replicas serve both keys; %d of %d unrevoked agents' sidecars on a passport of the new key; %d of their requests not served\n",
			fo.Rotation.KID, fo.Rotation.ActiveAt.Format("15:04:05"), fo.Rotation.JWKSBothKeys, fo.Replicas, fo.Rotation.NewKeySidecars, fo.Rotation.Unrevoked, fo.FailedUnrevoked)
		fmt.Fprintf(w, "  propagation outside failover: %s (target max %.0f ms: %s)\n", fo.OutsideFailover, fo.TargetMaxMS, met(fo.WithinTarget))
		fmt.Fprintf(w, "  propagation during failover:  %s\n", fo.DuringFailover)
		printOutcomes(w, fo.Outcomes)
		printProblems(w, "failover", fo.Problems)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\nERROR %s\n", e)
	}
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

func printOutcomes(w io.Writer, o map[string]int) {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(o)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, o[k]))
	}
	fmt.Fprintf(w, "  outcomes: %s\n", strings.Join(parts, ", "))
}

func printProblems(w io.Writer, what string, ps []string) {
	for _, p := range ps {
		fmt.Fprintf(w, "  PROBLEM %s: %s\n", what, p)
	}
}
