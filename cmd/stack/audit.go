package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/fleet"
	"github.com/stackctl/stack/proxy"
)

// auditNow is the clock that turns "24h" into a time; tests replace it.
var auditNow = time.Now

// auditPollInterval is how often `audit tail -f` looks for new records.
var auditPollInterval = 500 * time.Millisecond

func newAuditCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify, read, export and prune the hash-chained audit log",
		Long: `The audit log is an append-only, hash-chained bbolt file (audit.path,
default DATA-DIR/audit.db) with checkpoints signed by the issuer key.
Its format is in docs/audit-format.md.

A running sidecar ("stack proxy" with this data directory) owns the file.
While it runs, verify, tail, export and timeline read a consistent snapshot
it serves through its admin API; with no sidecar running they open the file
directly, read-only. --db FILE reads that file directly instead (a backup or
a copy). prune writes the file: stop the sidecar first.

With a control plane that keeps the fleet audit log (every joined
sidecar's records, witnessed), --fleet makes export and timeline answer
from it across all sidecars, verify --fleet checks the fleet log's
checkpoint and its consistency with an older one, and prove gives a
record's inclusion proof.`,
		Example: `  stack audit verify
  stack audit tail -f --agent billing-bot
  stack audit export --format jsonl --since 24h > audit.jsonl
  stack audit timeline --agent billing-bot --since 2026-11-25T00:00:00Z
  stack audit prune --before 720h
  stack audit timeline --fleet --agent billing-bot
  stack audit prove 6f1c2a9e-0d4b-4c1e-9f4e-2b7d1c0a9e11
  stack audit verify --fleet --since fleet.checkpoint --save fleet.checkpoint`,
	}
	cmd.AddCommand(
		newAuditVerifyCmd(a),
		newAuditTailCmd(a),
		newAuditExportCmd(a),
		newAuditTimelineCmd(a),
		newAuditPruneCmd(a),
		newAuditProveCmd(a),
	)
	return cmd
}

// auditDBFlag adds --db; the empty default means audit.path.
func auditDBFlag(cmd *cobra.Command, db *string) {
	cmd.Flags().StringVar(db, "db", "", "audit log file (default audit.path from the config)")
}

// auditReadPath is the file read commands open: --db if given; else, when a
// sidecar runs with this data directory, a snapshot it serves (bbolt
// blocks readers while the sidecar writes); else audit.path.
func (a *app) auditReadPath(ctx context.Context, db string) (string, error) {
	if db != "" {
		return db, nil
	}
	c, err := a.runningSidecar(ctx)
	if err != nil {
		return "", err
	}
	if c != nil {
		return a.snapshot(ctx, c, proxy.AdminAuditSnapshot, "audit")
	}
	// A control plane running with this data directory owns its audit
	// log the same way.
	if c, err = a.localControl(ctx); err != nil || c != nil {
		if err != nil {
			return "", err
		}
		return a.snapshot(ctx, c, control.PathAuditSnapshot, "audit")
	}
	return a.cfg.Audit.Path, nil
}

func (a *app) auditPath(db string) string {
	if db != "" {
		return db
	}
	return a.cfg.Audit.Path
}

// openAuditReadOnly opens the log for reading; it is closed when the
// command ends.
func (a *app) openAuditReadOnly(ctx context.Context, db string) (*audit.Log, error) {
	path, err := a.auditReadPath(ctx, db)
	if err != nil {
		return nil, err
	}
	l, err := audit.Open(path, audit.Options{ReadOnly: true})
	if err != nil {
		return nil, explainAuditOpen(err)
	}
	a.onClose(l.Close)
	return l, nil
}

func explainAuditOpen(err error) error {
	if errors.Is(err, audit.ErrLocked) {
		return fmt.Errorf("%w; a running proxy holds the audit log", err)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w (the log is created when `stack proxy` first runs; if it ran, the file was removed)", err)
	}
	return err
}

func newAuditVerifyCmd(a *app) *cobra.Command {
	var (
		db          string
		fleetMode   bool
		since, save string
		keys        fleetKeyFlags
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Recompute the hash chain and check the signed checkpoints",
		Long: `Verify recomputes every record's hash, checks that sequence numbers are
contiguous and that each record links to the one before, and checks every
checkpoint's signature (issuer keys) against the chain.

It exits 0 printing the record count, the head hash and the last
checkpoint, or exits 1 naming the first bad sequence number and what is
wrong: modified, missing, out_of_order, broken_link, checkpoint_mismatch,
cut_after_checkpoint, bad_checkpoint_signature, bad_anchor_signature.

Records after the last checkpoint are not covered by a signature; verify
still exits 0 but prints a warning with their count. A clean stop of the
sidecar signs a checkpoint over every record, so after one the warning
means the sidecar was killed or a checkpoint was removed.`,
		Example: `  stack audit verify
  stack audit verify --db /backup/audit.db
  stack audit verify --fleet --since fleet.checkpoint --save fleet.checkpoint`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if fleetMode {
				if db != "" {
					return usageError(errors.New("--fleet checks the control plane's fleet log: --db does not apply"))
				}
				return a.verifyFleet(ctx, keys, since, save)
			}
			if since != "" || save != "" {
				return usageError(errors.New("--since and --save go with --fleet"))
			}
			verifiers, err := a.auditVerifiers(ctx)
			if err != nil {
				return fmt.Errorf("audit verify: loading the issuer keys: %w", err)
			}
			l, err := a.openAuditReadOnly(cmd.Context(), db)
			if err != nil {
				return err
			}
			rep, err := l.Verify(ctx, verifiers)
			var ve *audit.VerifyError
			if errors.As(err, &ve) {
				fmt.Fprintf(a.stdout, "FAIL seq %d: %s: %s\n", ve.Seq, ve.Kind, ve.Msg)
				fmt.Fprintf(a.stdout, "checked %d records and %d checkpoints before it\n", rep.Records, rep.Checkpoints)
				return exitWith(exitFailure, "")
			}
			if err != nil {
				return err
			}
			name := l.Path()
			if db == "" && name != a.cfg.Audit.Path {
				name = a.cfg.Audit.Path + " (a consistent snapshot from the running sidecar)"
			}
			printReport(a.stdout, name, rep)
			if n := l.JournalPending(); n != 0 {
				pending := fmt.Sprintf("%d acknowledged records", n)
				if n < 0 {
					pending = "records that could not be read"
				}
				fmt.Fprintf(a.stdout, "journal:         %s in %s-wal, not yet in the log file: the sidecar moves them in when it next starts\n", pending, l.Path())
			}
			return nil
		},
	}
	auditDBFlag(cmd, &db)
	cmd.Flags().BoolVar(&fleetMode, "fleet", false, "check the control plane's fleet audit log instead: its signed checkpoint and, with --since, that it extends an older one")
	cmd.Flags().StringVar(&since, "since", "", "with --fleet: a checkpoint saved earlier (--save); checks that the fleet log still holds everything it committed to")
	cmd.Flags().StringVar(&save, "save", "", "with --fleet: write the verified checkpoint to FILE, for the next --since")
	keys.add(cmd)
	return cmd
}

func printReport(w io.Writer, path string, rep audit.Report) {
	fmt.Fprintf(w, "ok: %s\n", path)
	if rep.Records == 0 {
		fmt.Fprintf(w, "records:         0\n")
	} else {
		fmt.Fprintf(w, "records:         %d (seq %d..%d)\n", rep.Records, rep.FirstSeq, rep.LastSeq)
	}
	fmt.Fprintf(w, "head:            %s\n", rep.Head)
	if ck := rep.LastCheckpoint; ck != nil {
		fmt.Fprintf(w, "last checkpoint: size %d at %s, signature verified (%d checked)\n",
			ck.Size, ck.Time.UTC().Format(time.RFC3339), rep.Checkpoints)
	} else {
		fmt.Fprintf(w, "last checkpoint: none\n")
	}
	if n := rep.Uncovered; n > 0 {
		fmt.Fprintf(w, "warning:         %d records after the last checkpoint (seq %d..%d) are not covered by a signature: "+
			"anyone who can write the file could rewrite them unnoticed. A running sidecar signs them within "+
			"audit.checkpoint_interval and a clean stop at once; after a stop they mean it was killed, or a checkpoint was removed\n",
			n, rep.LastSeq-n+1, rep.LastSeq)
	}
	if an := rep.Anchor; an != nil {
		fmt.Fprintf(w, "pruned:          records up to seq %d (anchor written %s)\n", an.Seq, an.Time.UTC().Format(time.RFC3339))
	}
}

// auditFilterFlags adds --agent, --action and --since to cmd.
type auditFilterFlags struct {
	agent, action, since string
}

func (f *auditFilterFlags) add(cmd *cobra.Command, withSince bool) {
	cmd.Flags().StringVar(&f.agent, "agent", "", "only records of this agent id")
	cmd.Flags().StringVar(&f.action, "action", "", "only records with this action (e.g. request_denied)")
	if withSince {
		cmd.Flags().StringVar(&f.since, "since", "", "only records at or after TIME: RFC 3339, or a duration ago such as 24h or 7d")
	}
}

func (f *auditFilterFlags) filter() (audit.Filter, error) {
	flt := audit.Filter{AgentID: f.agent, Action: f.action}
	if f.since != "" {
		t, err := parseSince(f.since, auditNow())
		if err != nil {
			return flt, usageError(err)
		}
		flt.Since = t
	}
	return flt, nil
}

// parseSince reads TIME as RFC 3339 or as a duration before now (Go
// duration syntax, plus a whole number of days such as 7d).
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-25T12:00:00Z) or a duration ago (24h, 7d)", s)
}

func newAuditTailCmd(a *app) *cobra.Command {
	var (
		db     string
		n      int
		follow bool
		asJSON bool
		flags  auditFilterFlags
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print the newest records, and with -f keep printing new ones",
		Example: `  stack audit tail -n 20
  stack audit tail -f --agent billing-bot --action request_denied
  stack audit tail --json | jq .host`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 0 {
				return usageError(fmt.Errorf("-n %d: must not be negative", n))
			}
			flt, err := flags.filter()
			if err != nil {
				return err
			}
			emit := recordPrinter(a.stdout, asJSON)
			path, err := a.auditReadPath(cmd.Context(), db)
			if err != nil {
				return err
			}
			l, err := audit.Open(path, audit.Options{ReadOnly: true})
			if err != nil {
				return explainAuditOpen(err)
			}
			recs, err := l.Last(cmd.Context(), n, flt)
			next, _ := l.Head()
			l.Close()
			if err != nil {
				return err
			}
			for _, r := range recs {
				if err := emit(r); err != nil {
					return err
				}
			}
			if !follow {
				return nil
			}
			return followAudit(cmd.Context(), a, db, next+1, flt, emit)
		},
	}
	cmd.Flags().IntVarP(&n, "lines", "n", 10, "how many of the newest matching records to print first")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing records as they are appended, until interrupted")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each record as one JSON line")
	flags.add(cmd, false)
	auditDBFlag(cmd, &db)
	return cmd
}

// followAudit polls the log for records from seq next on. Each poll opens
// the file read-only for just as long as it takes to read, so that a proxy
// starting meanwhile can still take the file; while a proxy runs, each poll
// reads a snapshot the proxy serves.
func followAudit(ctx context.Context, a *app, db string, next uint64, flt audit.Filter, emit func(audit.Record) error) error {
	t := time.NewTimer(auditPollInterval)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return nil // interrupted: the normal end of -f
		case <-t.C:
		}
		path, err := a.auditReadPath(ctx, db)
		if err != nil {
			return err
		}
		l, err := audit.Open(path, audit.Options{ReadOnly: true, OpenTimeout: auditPollInterval})
		if path != a.auditPath(db) {
			os.Remove(path) // a snapshot, read once
		}
		switch {
		case errors.Is(err, audit.ErrLocked):
			if !warned {
				fmt.Fprintln(a.stderr, "stack: audit log held by a running proxy; waiting")
				warned = true
			}
		case err != nil:
			return err
		default:
			warned = false
			next, err = l.Scan(ctx, next, flt, emit)
			l.Close()
			if err != nil && ctx.Err() == nil {
				return err
			}
		}
		t.Reset(auditPollInterval)
	}
}

func recordPrinter(w io.Writer, asJSON bool) func(audit.Record) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return func(r audit.Record) error { return enc.Encode(&r) }
	}
	return func(r audit.Record) error {
		_, err := fmt.Fprintf(w, "%d %s %s %s%s\n", r.Seq, formatMS(r.TimestampMS), r.Action, orDash(r.AgentID), recordSummary(&r))
		return err
	}
}

func formatMS(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z") }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// recordSummary lists the set fields after the common ones, key=value.
func recordSummary(r *audit.Record) string {
	var b strings.Builder
	add := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, strconv.Quote(v)[1:len(strconv.Quote(v))-1])
		}
	}
	add("method", r.Method)
	add("host", r.Host)
	add("path", r.Path)
	add("credential", r.CredentialID)
	if r.Status != 0 {
		add("status", strconv.Itoa(r.Status))
	}
	add("reason", r.Reason)
	add("detector", r.Detector)
	add("severity", r.Severity)
	add("detail", r.Detail)
	return b.String()
}

func newAuditExportCmd(a *app) *cobra.Command {
	var (
		db        string
		format    string
		flags     auditFilterFlags
		fleetMode bool
	)
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Stream records to stdout for a SIEM (JSON Lines)",
		Long: `Export streams the matching records to stdout, one JSON object per line,
oldest first, in constant memory. Keys are those of docs/audit-format.md
("JSON Lines export"); hashes are hex.`,
		Example: `  stack audit export --format jsonl > audit.jsonl
  stack audit export --format jsonl --since 24h | vector --config siem.toml
  stack audit export --format jsonl --since 2026-11-25T00:00:00Z --agent billing-bot`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "jsonl" {
				return usageError(fmt.Errorf("--format %q: only jsonl is supported", format))
			}
			flt, err := flags.filter()
			if err != nil {
				return err
			}
			if fleetMode {
				enc := json.NewEncoder(a.stdout)
				return a.fleetRecords(cmd.Context(), flt, func(it fleet.Item) error { return enc.Encode(it) })
			}
			l, err := a.openAuditReadOnly(cmd.Context(), db)
			if err != nil {
				return err
			}
			_, err = l.ExportFilter(cmd.Context(), a.stdout, flt)
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "jsonl", "output format: jsonl")
	cmd.Flags().BoolVar(&fleetMode, "fleet", false, "export from the control plane's fleet audit log, all sidecars, ordered by time; each line is {fleet_index, log, sidecar, record}")
	flags.add(cmd, true)
	auditDBFlag(cmd, &db)
	return cmd
}

func newAuditTimelineCmd(a *app) *cobra.Command {
	var (
		db        string
		flags     auditFilterFlags
		fleetMode bool
	)
	cmd := &cobra.Command{
		Use:   "timeline",
		Short: "Print one agent's records as a human-readable incident timeline",
		Long: `Timeline prints, oldest first, what one agent did: time, action, host and
request, credential, detector, and the outcome (status and reason, or the
detector's severity).`,
		Example: `  stack audit timeline --agent billing-bot
  stack audit timeline --agent billing-bot --since 2h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flt, err := flags.filter()
			if err != nil {
				return err
			}
			// Fixed-width columns rather than a tabwriter: the timeline
			// streams, however long the log.
			const row = "%-24s  %-18s  %-24s  %-12s  %-18s  %s\n"
			n := 0
			print := func(r audit.Record) error {
				n++
				host := r.Host
				if r.Method != "" || r.Path != "" {
					host = strings.TrimSpace(r.Method + " " + r.Host + r.Path)
				}
				_, err := fmt.Fprintf(a.stdout, row, formatMS(r.TimestampMS), r.Action, orDash(host),
					orDash(r.CredentialID), orDash(r.Detector), outcome(&r))
				return err
			}
			if fleetMode {
				fmt.Fprintf(a.stdout, row, "TIME", "ACTION", "HOST", "CREDENTIAL", "DETECTOR", "OUTCOME")
				err = a.fleetRecords(cmd.Context(), flt, func(it fleet.Item) error { return print(it.Record) })
			} else {
				l, oerr := a.openAuditReadOnly(cmd.Context(), db)
				if oerr != nil {
					return oerr
				}
				fmt.Fprintf(a.stdout, row, "TIME", "ACTION", "HOST", "CREDENTIAL", "DETECTOR", "OUTCOME")
				_, err = l.Scan(cmd.Context(), 0, flt, print)
			}
			if err != nil {
				return err
			}
			if n == 0 {
				fmt.Fprintf(a.stderr, "stack: no records for agent %q\n", flags.agent)
			}
			return nil
		},
	}
	flags.add(cmd, true)
	_ = cmd.MarkFlagRequired("agent")
	cmd.Flags().BoolVar(&fleetMode, "fleet", false, "read the control plane's fleet audit log: the agent's records from every sidecar, ordered by time")
	auditDBFlag(cmd, &db)
	return cmd
}

// outcome says how a record ended, for the timeline.
func outcome(r *audit.Record) string {
	var parts []string
	switch {
	case r.Status >= 400:
		parts = append(parts, "denied "+strconv.Itoa(r.Status))
	case r.Status > 0:
		parts = append(parts, "allowed "+strconv.Itoa(r.Status))
	}
	if r.Reason != "" {
		parts = append(parts, r.Reason)
	}
	if r.Severity != "" {
		parts = append(parts, r.Severity)
	}
	if r.Detail != "" {
		parts = append(parts, strconv.Quote(r.Detail))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func newAuditPruneCmd(a *app) *cobra.Command {
	var (
		db     string
		before string
	)
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove records older than a time, leaving a signed anchor",
		Long: `Prune removes the oldest records, those stamped before TIME (stopping at the
first newer one), and stores a signed anchor naming the last removed record
so that the rest of the log still verifies. Checkpoints below the anchor are
dropped. It needs write access: stop the proxy first.`,
		Example: `  stack audit prune --before 720h
  stack audit prune --before 2026-01-01T00:00:00Z`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if before == "" {
				return usageError(errors.New("--before TIME is required"))
			}
			t, err := parseSince(before, auditNow())
			if err != nil {
				return usageError(err)
			}
			ctx := cmd.Context()
			signer, err := a.auditSigner(ctx)
			if err != nil {
				return fmt.Errorf("audit prune: loading the issuer key: %w", err)
			}
			l, err := audit.Open(a.auditPath(db), auditWriteOptions(a, signer))
			if err != nil {
				return explainAuditOpen(err)
			}
			a.onClose(l.Close)
			removed, err := l.Prune(ctx, t)
			if err != nil {
				return err
			}
			if err := l.Close(); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "pruned %d records stamped before %s\n", removed, t.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&before, "before", "", "remove records stamped before TIME: RFC 3339, or a duration ago such as 720h or 30d")
	auditDBFlag(cmd, &db)
	return cmd
}

// auditWriteOptions maps the audit config onto audit.Options. The config
// spells "no count-based checkpoints" as 0, the library as a negative
// number.
func auditWriteOptions(a *app, signer note.Signer) audit.Options {
	every := a.cfg.Audit.CheckpointEvery
	if every == 0 {
		every = -1
	}
	// Validated with the configuration.
	policy, _ := audit.ParseSyncPolicy(a.cfg.Audit.Sync)
	return audit.Options{Signer: signer, CheckpointEvery: every, CheckpointInterval: a.cfg.Audit.CheckpointInterval,
		Sync: policy, SyncInterval: a.cfg.Audit.SyncInterval}
}
