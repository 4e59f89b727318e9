package fleet

import (
	"context"
	"time"

	"github.com/stackctl/stack/reason"
)

// PropagationTargetMS is the target for the slowest sidecar.
const PropagationTargetMS = 1000

// PropagationOptions configure Propagation.
type PropagationOptions struct {
	Runs int // at least 1
}

// PropagationRun is one revocation of an agent every sidecar serves.
type PropagationRun struct {
	Run      int    `json:"run"`
	Agent    string `json:"agent"`
	Sidecars int    `json:"sidecars"`
	// JoinMS is how long restarting and joining every sidecar took.
	JoinMS float64 `json:"join_ms"`
	// CommandMS is how long `stack passport revoke --agent` ran.
	CommandMS float64 `json:"command_ms"`
	// Refusal is, over the sidecars, the time from the command's return
	// to the first refused request (zero for those that refused before
	// it returned: RefusedBeforeReturn).
	Refusal Spread `json:"refusal"`
	// SinceStart is the same from the command's start: it includes the
	// command's own time.
	SinceStart          Spread `json:"since_start"`
	RefusedBeforeReturn int    `json:"refused_before_return"`
	WithinTarget        bool   `json:"within_target"`
	// MeanIntervalMS is the time between two requests of one agent as
	// sent, the resolution of the refusal times: longer than the
	// configured interval when the machine could not keep up.
	MeanIntervalMS float64        `json:"mean_request_interval_ms"`
	Requests       int            `json:"requests"`
	Outcomes       map[string]int `json:"outcomes"`
	Problems       []string       `json:"problems,omitempty"`
}

// PropagationResult is every run of Propagation.
type PropagationResult struct {
	Sidecars    int              `json:"sidecars"`
	IntervalMS  float64          `json:"request_interval_ms"`
	TargetMaxMS float64          `json:"target_max_ms"`
	Runs        []PropagationRun `json:"runs"`
}

// Problems lists every run's problems.
func (r PropagationResult) Problems() []string {
	var ps []string
	for _, run := range r.Runs {
		ps = append(ps, run.Problems...)
	}
	return ps
}

// Propagation measures how fast `stack passport revoke --agent` reaches
// every sidecar. Each run registers a new agent (a revoked agent stays
// disabled), joins every sidecar to it anew, sends each a steady stream
// of requests, revokes the agent with the CLI and records, per sidecar,
// the first refused request after the command returned; the refusals
// must then continue.
func (f *Fleet) Propagation(ctx context.Context, opts PropagationOptions) (PropagationResult, error) {
	res := PropagationResult{Sidecars: f.opts.Sidecars, IntervalMS: ms(f.opts.Interval), TargetMaxMS: PropagationTargetMS}
	for k := 1; k <= max(opts.Runs, 1); k++ {
		run, err := f.propagationRun(ctx, k)
		if err != nil {
			return res, err
		}
		f.logf("propagation run %d: %s, command %.0f ms, %d problems", k, run.Refusal, run.CommandMS, len(run.Problems))
		res.Runs = append(res.Runs, run)
	}
	return res, nil
}

func (f *Fleet) propagationRun(ctx context.Context, k int) (PropagationRun, error) {
	run := PropagationRun{Run: k, Sidecars: f.opts.Sidecars}
	agent, err := f.newAgent(ctx, "prop", 10*time.Minute)
	if err != nil {
		return run, err
	}
	run.Agent = agent
	joinStart := time.Now()
	scs, err := f.restartSidecars(ctx, plansFor(agent, 0, f.opts.Sidecars))
	if err != nil {
		return run, err
	}
	run.JoinMS = ms(time.Since(joinStart))
	tr, err := f.settle(ctx, scs)
	if err != nil {
		return run, err
	}
	defer tr.stop()

	started, returned, err := f.revoke(ctx, agent)
	if err != nil {
		return run, err
	}
	run.CommandMS = ms(returned.Sub(started))
	var p problems
	if err := tr.waitAll(ctx, refuseTimeout, "refusal", refusedSince(started, reason.PassportRevoked)); err != nil {
		p.add("%v", err)
	}
	if err := sleepCtx(ctx, f.hold()); err != nil {
		return run, err
	}
	tr.stop()

	var fig revocationFigures
	fig.judgeAll(&p, tr.streams, started, returned)
	run.Refusal, run.SinceStart = spreadOf(fig.delays), spreadOf(fig.sinceStart)
	run.RefusedBeforeReturn = fig.beforeReturn
	run.WithinTarget = len(fig.delays) == f.opts.Sidecars && run.Refusal.MaxMS <= PropagationTargetMS
	run.MeanIntervalMS = ms(meanInterval(tr.streams))
	run.Requests, run.Outcomes, run.Problems = fig.requests, fig.outcomes, p
	return run, nil
}
