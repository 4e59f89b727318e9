package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/stackctl/stack/control/fleet"
)

// AuditOptions configure Audit.
type AuditOptions struct {
	// Duration is how long the traffic runs (default 60s); Down how long
	// the control plane is dead in the middle of it (default 10s).
	Duration time.Duration
	Down     time.Duration
}

// AuditResult is what the fleet audit log holds after a run in which the
// control plane died, compared with the sidecars' own files.
type AuditResult struct {
	Sidecars   int     `json:"sidecars"`
	DurationMS float64 `json:"duration_ms"`
	DownMS     float64 `json:"down_ms"`
	Requests   int     `json:"requests"`
	// Records is the count of records in the sidecars' files, Fleet the
	// count the fleet export holds; Missing are in a file and not in the
	// fleet log, Extra the reverse, Differ in both with another hash.
	Records int `json:"records"`
	Fleet   int `json:"fleet_records"`
	Missing int `json:"missing"`
	Extra   int `json:"extra"`
	Differ  int `json:"differ"`
	// Later are records the fleet log holds that their sidecar wrote
	// after its file was read, and are left out of the comparison.
	Later int `json:"later"`
	// PeakLagRecords is the most records any sidecar held unshipped, seen
	// while the control plane was dead.
	PeakLagRecords float64 `json:"peak_lag_records"`
	// CaughtUpMS is from the restart until every sidecar's oldest
	// unshipped record was at most a second old (traffic still running).
	CaughtUpMS float64 `json:"caught_up_ms"`
	// LagSecondsAfter is the largest stack_audit_ship_lag_seconds over
	// every sidecar, sampled under traffic after the catch-up.
	LagSecondsAfter float64  `json:"lag_seconds_after"`
	Problems        []string `json:"problems,omitempty"`
}

// Audit runs steady traffic through every sidecar for Duration, kills
// the control plane with SIGKILL for Down in the middle, and checks that
// afterwards the fleet audit log holds exactly every record of every
// sidecar (count and hashes against each sidecar's own file) and that the
// shipping lag is back to at most a second.
func (f *Fleet) Audit(ctx context.Context, opts AuditOptions) (AuditResult, error) {
	if opts.Duration <= 0 {
		opts.Duration = 60 * time.Second
	}
	if opts.Down <= 0 {
		opts.Down = 10 * time.Second
	}
	n := f.opts.Sidecars
	res := AuditResult{Sidecars: n}
	agent, err := f.newAgent(ctx, "audit", 10*time.Minute)
	if err != nil {
		return res, err
	}
	scs, err := f.restartSidecars(ctx, plansFor(agent, 0, n))
	if err != nil {
		return res, err
	}
	tr, err := f.settle(ctx, scs)
	if err != nil {
		return res, err
	}
	defer tr.stop()
	var p problems
	began := time.Now()
	if err := sleepCtx(ctx, (opts.Duration-opts.Down)/2); err != nil {
		return res, err
	}
	killed := time.Now()
	f.control.kill()
	f.logf("audit: control plane killed; down for %s", opts.Down)
	for time.Since(killed) < opts.Down {
		for _, s := range scs {
			v, err := s.metric(ctx, "stack_audit_ship_lag_records")
			if err == nil {
				res.PeakLagRecords = max(res.PeakLagRecords, v)
			}
		}
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return res, err
		}
	}
	restarted := time.Now()
	res.DownMS = ms(restarted.Sub(killed))
	if err := f.startControl(ctx); err != nil {
		return res, err
	}
	if res.PeakLagRecords == 0 {
		p.add("no sidecar held unshipped records while the control plane was dead: the run proves nothing")
	}
	// Under traffic a sidecar always holds the records of its last
	// quarter second: caught up is every sidecar's oldest unshipped
	// record at most a second old.
	if err := f.waitLag(ctx, scs, time.Second); err != nil {
		p.add("after the restart: %v", err)
	} else {
		res.CaughtUpMS = ms(time.Since(restarted))
	}
	// Then, while the traffic goes on, the lag stays within a second.
	caughtUp := time.Now()
	for time.Since(began) < opts.Duration || time.Since(caughtUp) < 3*time.Second {
		for _, s := range scs {
			if v, err := s.metric(ctx, "stack_audit_ship_lag_seconds"); err == nil {
				res.LagSecondsAfter = max(res.LagSecondsAfter, v)
			}
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return res, err
		}
	}
	res.DurationMS = ms(time.Since(began))
	tr.stop()
	if res.LagSecondsAfter > 1 {
		p.add("shipping lag after the catch-up reached %.2f s (at most 1 s wanted)", res.LagSecondsAfter)
	}
	for _, st := range tr.streams {
		res.Requests += len(st.snapshot())
	}
	if err := f.waitShipped(ctx, scs); err != nil {
		p.add("after the traffic stopped: %v", err)
	}
	if err := f.compareAudit(ctx, scs, &res, &p); err != nil {
		return res, err
	}
	res.Problems = p
	f.logf("audit: %d records in %d sidecar files, %d in the fleet log (%d missing, %d extra, %d differ, %d written later); caught up %.0f ms after the restart; lag after %.2f s",
		res.Records, n, res.Fleet, res.Missing, res.Extra, res.Differ, res.Later, res.CaughtUpMS, res.LagSecondsAfter)
	return res, nil
}

// waitLag waits until every sidecar's oldest unshipped record is at most
// limit old.
func (f *Fleet) waitLag(ctx context.Context, scs []*sidecar, limit time.Duration) error {
	var behind []string
	err := waitFor(ctx, refuseTimeout, 100*time.Millisecond, func() (bool, error) {
		behind = behind[:0]
		for _, s := range scs {
			v, err := s.metric(ctx, "stack_audit_ship_lag_seconds")
			if err != nil {
				return false, err
			}
			if v > limit.Seconds() {
				behind = append(behind, fmt.Sprintf("%d (%.1f s)", s.Index, v))
			}
		}
		return len(behind) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("sidecars %s still behind: %w", strings.Join(behind, ", "), err)
	}
	return nil
}

// waitShipped waits until every sidecar has shipped every record it
// holds (with no traffic).
func (f *Fleet) waitShipped(ctx context.Context, scs []*sidecar) error {
	var behind []string
	err := waitFor(ctx, refuseTimeout, 100*time.Millisecond, func() (bool, error) {
		behind = behind[:0]
		for _, s := range scs {
			v, err := s.metric(ctx, "stack_audit_ship_lag_records")
			if err != nil {
				return false, err
			}
			if v > 0 {
				behind = append(behind, fmt.Sprintf("%d (%.0f records)", s.Index, v))
			}
		}
		return len(behind) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("sidecars %s still behind: %w", strings.Join(behind, ", "), err)
	}
	return nil
}

// compareAudit reads every sidecar's file and the fleet export and
// compares them record by record.
func (f *Fleet) compareAudit(ctx context.Context, scs []*sidecar, res *AuditResult, p *problems) error {
	local := map[string]string{}
	seqs := map[string]uint64{}
	for _, s := range scs {
		out, err := runStack(ctx, commandTimeout, f.opts.Bin, s.Home, "", f.env, f.opts.Dir, "audit", "export", "--format", "jsonl")
		if err != nil {
			return err
		}
		for line := range strings.Lines(out) {
			var r struct {
				EventID string `json:"event_id"`
				Seq     uint64 `json:"seq"`
				Hash    string `json:"hash"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				return fmt.Errorf("sidecar %d export: %w", s.Index, err)
			}
			local[r.EventID] = r.Hash
			seqs[r.EventID] = r.Seq
		}
	}
	// What a sidecar wrote just before its file was read is shipped by
	// now.
	if err := f.waitShipped(ctx, scs); err != nil {
		p.add("after reading the files: %v", err)
	}
	out, err := f.stack(ctx, "", "audit", "export", "--fleet", "--format", "jsonl")
	if err != nil {
		return err
	}
	// The fleet log also holds what sidecars of earlier scenarios
	// shipped: compare the logs these sidecars ship to, whole, up to
	// the last record each file held when it was read (a sidecar still
	// writes, an alert summary say, after its file was read).
	var items []fleet.Item
	heads := map[string]uint64{}
	for line := range strings.Lines(out) {
		var it fleet.Item
		if err := json.Unmarshal([]byte(line), &it); err != nil {
			return fmt.Errorf("fleet export: %w", err)
		}
		items = append(items, it)
		if seq, ok := seqs[it.Record.EventID]; ok {
			heads[it.Log] = max(heads[it.Log], seq)
		}
	}
	held := map[string]string{}
	for _, it := range items {
		head, ok := heads[it.Log]
		if !ok {
			continue
		}
		if it.Record.Seq > head {
			res.Later++
			continue
		}
		if _, dup := held[it.Record.EventID]; dup {
			p.add("event %s is in the fleet log twice", it.Record.EventID)
		}
		held[it.Record.EventID] = it.Record.Hash.String()
	}
	res.Records, res.Fleet = len(local), len(held)
	for id, h := range local {
		switch got, ok := held[id]; {
		case !ok:
			res.Missing++
		case got != h:
			res.Differ++
		}
	}
	for id := range held {
		if _, ok := local[id]; !ok {
			res.Extra++
		}
	}
	if res.Missing+res.Extra+res.Differ > 0 {
		p.add("the fleet log differs from the sidecars' files: %d missing, %d extra, %d with another hash", res.Missing, res.Extra, res.Differ)
	}
	if res.Records == 0 {
		p.add("the sidecars wrote no records")
	}
	return nil
}
