// Command stack-fleet measures a fleet of sidecars joined to one control
// plane, by hand and at full size: it runs the scenarios of package
// internal/fleet (revocation propagation, passport refresh over several
// TTLs, a killed control plane, a sidecar cut off from it, memory) and
// prints their figures as a table and, with --json, to a file. The
// failover scenario runs alone, on a control plane of three replicas on
// a 3-member etcd cluster whose members are this binary's own child
// processes (`stack-fleet etcd-member ...`).
//
//	go run ./cmd/stack-fleet --sidecars 100 --runs 5
//	go run ./cmd/stack-fleet --sidecars 20 --scenarios propagation,memory --json fleet.json
//	go run ./cmd/stack-fleet --sidecars 50 --scenarios failover
//
// Every process listens on 127.0.0.1 only and every wait is bounded. The
// work directory (data directories and every process's log) is kept,
// and its path printed, when --keep is given or a scenario found a
// problem.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/stackctl/stack/internal/fleet"
	"github.com/stackctl/stack/internal/stacktest"
)

// allScenarios in the order they run; every one but failover runs by
// default.
var (
	allScenarios     = []string{"propagation", "ttl", "kill", "cutoff", "memory", "audit", "handoff", "failover"}
	defaultScenarios = allScenarios[:len(allScenarios)-1]
)

// failoverReplicas is how many control replicas the failover scenario
// runs.
const failoverReplicas = 3

type options struct {
	stackBin  string
	sidecars  int
	runs      int
	scenarios []string
	jsonOut   string
	interval  time.Duration
	batch     int
	ttl       time.Duration
	down      time.Duration
	stream    time.Duration
	audit     time.Duration
	handoff   time.Duration
	tmpfs     string
	keep      bool
}

var errUsage = errors.New("usage")

// errProblems says the fleet misbehaved; the report lists how.
var errProblems = errors.New("the scenarios found problems")

func main() {
	if len(os.Args) > 1 && os.Args[1] == fleet.EtcdMemberCommand {
		if err := fleet.EtcdMemberMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "stack-fleet etcd-member:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "stack-fleet:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("stack-fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.stackBin, "stack", "", "stack binary (default: go build ./cmd/stack into the work directory)")
	fs.IntVar(&o.sidecars, "sidecars", 100, "sidecars in the fleet")
	fs.IntVar(&o.runs, "runs", 5, "propagation runs, each with a new agent and every sidecar joined anew")
	scenarios := fs.String("scenarios", strings.Join(defaultScenarios, ","), "comma-separated scenarios to run; failover runs alone")
	fs.StringVar(&o.jsonOut, "json", "", "also write the results to this JSON file")
	fs.DurationVar(&o.interval, "interval", fleet.DefaultInterval, "time between two requests of one agent; bounds the resolution of refusal times")
	fs.IntVar(&o.batch, "batch", fleet.DefaultBatch, "sidecars started at once")
	fs.DurationVar(&o.ttl, "ttl", 6*time.Second, "passport lifetime of the ttl scenario")
	fs.DurationVar(&o.down, "down", 10*time.Second, "how long the kill scenario keeps the control plane dead")
	fs.DurationVar(&o.stream, "stream", 30*time.Second, "how long the failover scenario's revocation stream lasts (one every 100 ms)")
	fs.DurationVar(&o.handoff, "handoff-duration", 20*time.Second, "how long the handoff scenario's senders send")
	fs.DurationVar(&o.audit, "audit-duration", 60*time.Second, "how long the audit scenario's traffic runs (the control plane is dead for --down in the middle)")
	fs.StringVar(&o.tmpfs, "sidecar-tmpfs", "", "put the sidecars' data directories under this directory (a tmpfs such as /dev/shm), so that their fsyncs do not contend with etcd's on one disk")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (data directories, logs) and print its path")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	for s := range strings.SplitSeq(*scenarios, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allScenarios, s) {
			return o, fmt.Errorf("%w: unknown scenario %q (known: %s)", errUsage, s, strings.Join(allScenarios, ", "))
		}
		o.scenarios = append(o.scenarios, s)
	}
	switch {
	case len(o.scenarios) == 0:
		return o, fmt.Errorf("%w: no scenario", errUsage)
	case slices.Contains(o.scenarios, "failover") && len(o.scenarios) > 1:
		return o, fmt.Errorf("%w: the failover scenario runs alone (its control plane is three replicas on etcd)", errUsage)
	case o.audit < o.down+4*time.Second:
		return o, fmt.Errorf("%w: --audit-duration must be at least --down + 4s", errUsage)
	case o.stream < 4*time.Second || o.stream > 10*time.Minute:
		return o, fmt.Errorf("%w: --stream must be between 4s and 10m", errUsage)
	case o.sidecars < 2 || o.sidecars > 1000:
		return o, fmt.Errorf("%w: --sidecars must be between 2 and 1000", errUsage)
	case o.runs < 1 || o.runs > 100:
		return o, fmt.Errorf("%w: --runs must be between 1 and 100", errUsage)
	case o.interval < time.Millisecond || o.interval > 10*time.Second:
		return o, fmt.Errorf("%w: --interval must be between 1ms and 10s", errUsage)
	case o.batch < 1 || o.batch > 256:
		return o, fmt.Errorf("%w: --batch must be between 1 and 256", errUsage)
	case o.ttl < 3*time.Second || o.ttl > 10*time.Minute:
		return o, fmt.Errorf("%w: --ttl must be between 3s and 10m", errUsage)
	case o.down < time.Second || o.down > 10*time.Minute:
		return o, fmt.Errorf("%w: --down must be between 1s and 10m", errUsage)
	}
	return o, nil
}

// report is everything one invocation measured.
type report struct {
	Started     time.Time                `json:"started"`
	ElapsedS    float64                  `json:"elapsed_s"`
	CPUs        int                      `json:"cpus"`
	Sidecars    int                      `json:"sidecars"`
	IntervalMS  float64                  `json:"request_interval_ms"`
	Propagation *fleet.PropagationResult `json:"propagation,omitempty"`
	TTL         *fleet.TTLResult         `json:"ttl,omitempty"`
	Kill        *fleet.KillResult        `json:"kill,omitempty"`
	Cutoff      *fleet.CutoffResult      `json:"cutoff,omitempty"`
	Memory      *fleet.MemoryResult      `json:"memory,omitempty"`
	Audit       *fleet.AuditResult       `json:"audit,omitempty"`
	Handoff     *fleet.HandoffResult     `json:"handoff,omitempty"`
	Failover    *fleet.FailoverResult    `json:"failover,omitempty"`
	// Errors are scenarios the harness could not finish.
	Errors []string `json:"errors,omitempty"`
}

func (r *report) problems() int {
	n := len(r.Errors)
	if r.Propagation != nil {
		n += len(r.Propagation.Problems())
	}
	if r.TTL != nil {
		n += len(r.TTL.Problems)
	}
	if r.Kill != nil {
		n += len(r.Kill.Problems)
	}
	if r.Cutoff != nil {
		n += len(r.Cutoff.Problems)
	}
	if r.Memory != nil {
		n += len(r.Memory.Problems)
	}
	if r.Handoff != nil {
		n += len(r.Handoff.Problems)
	}
	if r.Audit != nil {
		n += len(r.Audit.Problems)
	}
	if r.Failover != nil {
		n += len(r.Failover.Problems)
	}
	return n
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "stack-fleet-")
	if err != nil {
		return err
	}
	rep := &report{Started: time.Now().UTC(), CPUs: runtime.NumCPU(), Sidecars: o.sidecars, IntervalMS: float64(o.interval) / float64(time.Millisecond)}
	defer func() {
		if o.keep || err != nil {
			fmt.Fprintf(stderr, "work directory (data directories, logs/): %s\n", work)
			return
		}
		os.RemoveAll(work)
	}()
	bin := o.stackBin
	if bin == "" {
		fmt.Fprintln(stderr, "building ./cmd/stack ...")
		bctx, cancel := context.WithTimeout(ctx, stacktest.BuildTimeout)
		bin, err = stacktest.BuildStack(bctx, work)
		cancel()
		if err != nil {
			return err
		}
	} else if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	fo := fleet.Options{Bin: bin, Dir: work, Sidecars: o.sidecars, Batch: o.batch, Interval: o.interval, Log: stderr}
	if o.tmpfs != "" {
		if fo.SidecarDir, err = os.MkdirTemp(o.tmpfs, "stack-fleet-sidecars-"); err != nil {
			return err
		}
		defer func() {
			if o.keep || err != nil {
				fmt.Fprintf(stderr, "sidecar data directories: %s\n", fo.SidecarDir)
				return
			}
			os.RemoveAll(fo.SidecarDir)
		}()
	}
	if slices.Contains(o.scenarios, "failover") {
		fo.Replicas = failoverReplicas
		if fo.EtcdBin, err = os.Executable(); err != nil {
			return err
		}
	}
	f, err := fleet.Start(ctx, fo)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, s := range o.scenarios {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(stderr, "scenario %s ...\n", s)
		if err := runScenario(ctx, f, o, s, rep); err != nil {
			fmt.Fprintf(stderr, "  %s: %v\n", s, err)
			rep.Errors = append(rep.Errors, s+": "+err.Error())
		}
	}
	f.Close()
	rep.ElapsedS = time.Since(rep.Started).Round(time.Millisecond).Seconds()
	rep.print(stdout)
	if o.jsonOut != "" {
		raw, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonOut, append(raw, '\n'), 0o644); err != nil {
			return err
		}
	}
	if n := rep.problems(); n > 0 {
		return fmt.Errorf("%w: %d", errProblems, n)
	}
	return nil
}

func runScenario(ctx context.Context, f *fleet.Fleet, o options, name string, rep *report) error {
	switch name {
	case "propagation":
		r, err := f.Propagation(ctx, fleet.PropagationOptions{Runs: o.runs})
		rep.Propagation = &r
		return err
	case "ttl":
		r, err := f.TTL(ctx, fleet.TTLOptions{TTL: o.ttl})
		rep.TTL = &r
		return err
	case "kill":
		r, err := f.Kill(ctx, fleet.KillOptions{Down: o.down})
		rep.Kill = &r
		return err
	case "cutoff":
		r, err := f.Cutoff(ctx)
		rep.Cutoff = &r
		return err
	case "memory":
		r, err := f.Memory(ctx)
		rep.Memory = &r
		return err
	case "handoff":
		r, err := f.Handoffs(ctx, fleet.HandoffOptions{Duration: o.handoff})
		rep.Handoff = &r
		return err
	case "audit":
		r, err := f.Audit(ctx, fleet.AuditOptions{Duration: o.audit, Down: o.down})
		rep.Audit = &r
		return err
	case "failover":
		r, err := f.Failover(ctx, fleet.FailoverOptions{Duration: o.stream})
		rep.Failover = &r
		return err
	}
	return fmt.Errorf("%w: unknown scenario %q", errUsage, name)
}
