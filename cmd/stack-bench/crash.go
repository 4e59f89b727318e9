package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/stackctl/stack/audit"
)

// crashGrace is how long the clients keep trying after the kill: long
// enough for every answer already on its way to be read, and for every
// request under way to fail.
const crashGrace = 250 * time.Millisecond

// crashJitter spreads each kill over a few group commits of the audit
// log, so the rounds do not all land at the same point of one.
const crashJitter = 20 * time.Millisecond

// crashExamples bounds the missing requests a round lists by path.
const crashExamples = 5

// crashRound is one kill of `stack proxy` under load and what its audit
// log held afterwards for the requests answered before it.
type crashRound struct {
	Round int `json:"round"`
	// KillAfter is the load time before the SIGKILL.
	KillAfter string `json:"kill_after"`
	// Answered counts requests whose 200 answer was read to its end:
	// what the agent got, so what the log must account for.
	Answered int   `json:"answered"`
	Errors   int64 `json:"errors"`
	// JournalPending is what a reader found in the journal of the killed
	// proxy and not yet in the log file (-1: unreadable); VerifyBefore is
	// `stack audit verify` on the files as the kill left them.
	JournalPending int    `json:"journal_pending_before_restart"`
	VerifyBefore   string `json:"verify_before_restart"`
	// Verify is `stack audit verify` after one clean start and stop of
	// the proxy, which moves the journal's records into the file: "ok" or
	// the failure.
	Verify string `json:"verify_after_restart"`
	// WithAccess and WithRequest count answered requests with their
	// credential_access record and with their request record (status
	// 200); Missing* the others.
	WithAccess     int `json:"answered_with_credential_access"`
	WithRequest    int `json:"answered_with_request"`
	MissingAccess  int `json:"missing_credential_access"`
	MissingRequest int `json:"missing_request"`
	// Missing names up to crashExamples answered requests and the
	// actions missing for each.
	Missing []string `json:"missing_examples,omitempty"`
	// InFlight counts requests with a credential_access record whose
	// answer the client did not read: under way at the kill, allowed.
	InFlight int `json:"unanswered_with_credential_access"`
	// Problem is what kept the round from being checked at all.
	Problem string `json:"problem,omitempty"`
}

// pass reports whether the round found every record and a verifying chain.
func (r crashRound) pass() bool {
	return r.Problem == "" && r.Answered > 0 && r.MissingAccess == 0 && r.MissingRequest == 0 &&
		r.VerifyBefore == "ok" && r.Verify == "ok"
}

// crashReport is what --crash prints and --json writes.
type crashReport struct {
	Machine machine      `json:"machine"`
	Clients int          `json:"clients"`
	Rounds  []crashRound `json:"rounds"`
	Pass    bool         `json:"pass"`
}

// runCrash kills `stack proxy` (the shipped configuration) under load
// once per round, at a different moment each time, and checks its audit
// log: the kill must lose no record of a request whose answer the agent
// got, and the chain must verify.
func (b *bench) runCrash(ctx context.Context) error {
	o := b.opts
	rep := crashReport{Machine: machineInfo(), Clients: o.clients[0], Pass: true}
	for i := 1; i <= o.crashRounds; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		killAt := o.crashAfter*time.Duration(i)/time.Duration(o.crashRounds) + rand.N(crashJitter)
		fmt.Fprintf(b.stderr, "crash %d/%d: %d clients, SIGKILL after %s ...\n", i, o.crashRounds, rep.Clients, killAt.Round(time.Millisecond))
		r := b.crashOnce(ctx, i, killAt)
		fmt.Fprintf(b.stderr, "  %d answered, %d missing credential_access, %d missing request; verify %s\n",
			r.Answered, r.MissingAccess, r.MissingRequest, r.Verify)
		rep.Rounds = append(rep.Rounds, r)
		rep.Pass = rep.Pass && r.pass()
	}
	rep.print(b.stdout)
	if o.jsonOut != "" {
		if err := writeJSON(o.jsonOut, rep); err != nil {
			return err
		}
	}
	if !rep.Pass {
		return errors.New("crash check failed")
	}
	return nil
}

// crashOnce runs one round: a fresh proxy and audit log, load, the kill
// after killAt, then the checks.
func (b *bench) crashOnce(ctx context.Context, round int, killAt time.Duration) crashRound {
	r := crashRound{Round: round, KillAfter: killAt.Round(time.Millisecond).String()}
	auditPath := filepath.Join(b.work, fmt.Sprintf("crash-%d-audit.db", round))
	name := fmt.Sprintf("stack-crash-%d", round)
	p, err := b.startStack(name, b.stackBin, auditPath)
	if err != nil {
		r.Problem = "start: " + firstLine(err.Error())
		return r
	}
	defer p.stop()
	spec := loadSpec{
		Target: b.targetURL(), Header: placeholderHeader(), Clients: b.opts.clients[0], Proxy: b.proxyURL(p.addr),
		Roots: b.stackCA, Duration: killAt + crashGrace, UniquePaths: true,
	}
	var wg sync.WaitGroup
	killed := make(chan bool, 1) // whether the proxy was still running when killed
	wg.Go(func() {
		t := time.NewTimer(killAt)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		select {
		case <-p.done:
			killed <- false
		default:
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
			killed <- true
		}
	})
	lr, err := drive(ctx, spec)
	wg.Wait()
	if ctx.Err() != nil {
		r.Problem = "interrupted"
		return r
	}
	if !<-killed {
		r.Problem = "the proxy exited before the kill: " + firstLine(p.tail())
		return r
	}
	if err != nil {
		r.Problem = err.Error()
		return r
	}
	r.Answered, r.Errors = len(lr.Answered), lr.Errors

	// What the kill left, as a reader sees it.
	r.VerifyBefore = b.verifyAudit(auditPath)
	r.JournalPending = -1
	if l, err := audit.Open(auditPath, audit.Options{ReadOnly: true}); err == nil {
		r.JournalPending = l.JournalPending()
		l.Close()
	}
	// A restart, as after a real crash, moves the journal's records into
	// the file; a clean stop then signs a checkpoint over them.
	p2, err := b.startStack(name+"-restart", b.stackBin, auditPath)
	if err != nil {
		r.Problem = "restart: " + firstLine(err.Error())
		return r
	}
	if err := p2.stop(); err != nil {
		r.Problem = "stop after restart: " + firstLine(err.Error())
		return r
	}
	r.Verify = b.verifyAudit(auditPath)
	if err := r.match(ctx, auditPath, lr.Answered); err != nil {
		r.Problem = err.Error()
	}
	return r
}

// verifyAudit runs `stack audit verify` on the log at path: "ok", or the
// failure's first line.
func (b *bench) verifyAudit(path string) string {
	out, err := runCmdTimeout(10*time.Minute, "", b.stackEnv(path), b.stackBin, "--home", b.stackHome, "audit", "verify")
	if err == nil {
		return "ok"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && strings.HasPrefix(out, "FAIL") {
		return firstLine(out)
	}
	return firstLine(err.Error())
}

// Bits of what the log holds for one request path.
const (
	hasAccess = 1 << iota
	hasRequest
)

// match reads the log at path and counts, for the requests answered,
// those with and without their credential_access and request records.
func (r *crashRound) match(ctx context.Context, path string, answered []string) error {
	l, err := audit.Open(path, audit.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer l.Close()
	found := map[string]int{}
	err = l.Iterate(ctx, 0, func(rec audit.Record) error {
		switch {
		case rec.Action == audit.ActionCredentialAccess:
			found[rec.Path] |= hasAccess
		case rec.Action == audit.ActionRequest && rec.Status == 200:
			found[rec.Path] |= hasRequest
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.tally(found, answered)
	return nil
}

// tally fills the counts from found (what the log holds per path) and
// the paths answered.
func (r *crashRound) tally(found map[string]int, answered []string) {
	for _, p := range answered {
		f := found[p]
		var missing []string
		if f&hasAccess != 0 {
			r.WithAccess++
		} else {
			r.MissingAccess++
			missing = append(missing, audit.ActionCredentialAccess)
		}
		if f&hasRequest != 0 {
			r.WithRequest++
		} else {
			r.MissingRequest++
			missing = append(missing, audit.ActionRequest)
		}
		if len(missing) > 0 && len(r.Missing) < crashExamples {
			r.Missing = append(r.Missing, p+": no "+strings.Join(missing, ", no "))
		}
		delete(found, p)
	}
	for _, f := range found {
		if f&hasAccess != 0 {
			r.InFlight++
		}
	}
}

func (rep crashReport) print(w io.Writer) {
	m := rep.Machine
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s, load %s\n", m.CPUs, m.CPUModel, m.GoVersion, m.Load)
	fmt.Fprintf(w, "crash: %d keep-alive clients through stack proxy (shipped configuration), SIGKILL under load, one restart, then stack audit verify\n\n", rep.Clients)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tkill after\tanswered\terrors\twith credential_access\twith request\tmissing credential_access\tmissing request\tin flight\tjournal pending\t")
	for _, r := range rep.Rounds {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", r.Round, r.KillAfter, r.Answered, r.Errors,
			r.WithAccess, r.WithRequest, r.MissingAccess, r.MissingRequest, r.InFlight, r.JournalPending)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rep.Rounds {
		fmt.Fprintf(w, "round %d: verify before restart: %s; after restart: %s\n", r.Round, r.VerifyBefore, r.Verify)
		if r.Problem != "" {
			fmt.Fprintf(w, "round %d PROBLEM: %s\n", r.Round, r.Problem)
		}
		for _, m := range r.Missing {
			fmt.Fprintf(w, "round %d MISSING %s\n", r.Round, m)
		}
	}
	if rep.Pass {
		fmt.Fprintln(w, "crash: every answered request has its records; the chain verifies")
	} else {
		fmt.Fprintln(w, "crash: FAILED")
	}
}
