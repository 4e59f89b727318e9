package fleet

import (
	"context"
	"time"

	"github.com/stackctl/stack/reason"
)

// TTLOptions configure TTL.
type TTLOptions struct {
	// TTL is the agent's passport lifetime (default 6s).
	TTL time.Duration
	// Duration is how long the traffic lasts (default 3 TTLs and 3s).
	Duration time.Duration
}

// TTLResult is what the agents saw over several passport lifetimes.
type TTLResult struct {
	Sidecars   int     `json:"sidecars"`
	TTLMS      float64 `json:"ttl_ms"`
	DurationMS float64 `json:"duration_ms"`
	// MeanIntervalMS is the time between two requests of one agent as
	// sent.
	MeanIntervalMS float64        `json:"mean_request_interval_ms"`
	Requests       int            `json:"requests"`
	Served         int            `json:"served"`
	Outcomes       map[string]int `json:"outcomes"`
	// PassportsIssued is how many passports the control plane issued
	// while the traffic lasted (its stack_control_passports_issued_total).
	PassportsIssued int `json:"passports_issued"`
	// Refreshed is how many sidecars held a later passport at the end
	// than at the start.
	Refreshed int      `json:"refreshed"`
	Problems  []string `json:"problems,omitempty"`
}

// TTL sends steady traffic through every sidecar for several lifetimes
// of a short-lived passport: the sidecars refresh it at 2/3 of its life,
// so no request may be refused, least of all with passport_expired.
//
// The sidecars run with passport.leeway 0: with the default 30 s leeway
// an expired passport would still be accepted for longer than the whole
// scenario, and a broken refresh would go unseen.
func (f *Fleet) TTL(ctx context.Context, opts TTLOptions) (TTLResult, error) {
	if opts.TTL <= 0 {
		opts.TTL = 6 * time.Second
	}
	if opts.Duration <= 0 {
		opts.Duration = 3*opts.TTL + 3*time.Second
	}
	res := TTLResult{Sidecars: f.opts.Sidecars, TTLMS: ms(opts.TTL), DurationMS: ms(opts.Duration), Outcomes: tally{}}
	agent, err := f.newAgent(ctx, "ttl", opts.TTL)
	if err != nil {
		return res, err
	}
	scs, err := f.restartSidecars(ctx, plansFor(agent, 0, f.opts.Sidecars, "STACK_PASSPORT_LEEWAY=0s"))
	if err != nil {
		return res, err
	}
	tr, err := f.settle(ctx, scs)
	if err != nil {
		return res, err
	}
	defer tr.stop()
	start := time.Now()
	issuedBefore, err := f.controlMetric(ctx, "stack_control_passports_issued_total")
	if err != nil {
		return res, err
	}
	expiries := make([]float64, len(scs))
	for i, s := range scs {
		if expiries[i], err = s.metric(ctx, "stack_passport_expiry_timestamp_seconds"); err != nil {
			return res, err
		}
	}
	if err := sleepCtx(ctx, opts.Duration); err != nil {
		return res, err
	}
	tr.stop()
	end := time.Now()
	issuedAfter, err := f.controlMetric(ctx, "stack_control_passports_issued_total")
	if err != nil {
		return res, err
	}
	res.PassportsIssued = int(issuedAfter - issuedBefore)
	res.MeanIntervalMS = ms(meanInterval(tr.streams))

	var (
		p       problems
		failed  offenders
		expired int
	)
	for i, st := range tr.streams {
		s := window(st.snapshot(), start, end)
		res.Requests += len(s)
		tally(res.Outcomes).add(s)
		n, first := 0, ""
		for _, sm := range s {
			if sm.ok() {
				res.Served++
				continue
			}
			if sm.refused(reason.PassportExpired) {
				expired++
			}
			if n == 0 {
				first = sm.describe()
			}
			n++
		}
		failed.add(st.sc.Index, n, first)
		exp, err := st.sc.metric(ctx, "stack_passport_expiry_timestamp_seconds")
		if err != nil {
			return res, err
		}
		if exp > expiries[i] {
			res.Refreshed++
		} else {
			p.add("sidecar %d: passport expiry %s at the end, as at the start: never refreshed", st.sc.Index, time.Unix(int64(exp), 0).UTC().Format(time.RFC3339))
		}
	}
	failed.report(&p, "requests were not served")
	if expired > 0 {
		p.add("%d requests refused with %s", expired, reason.PassportExpired)
	}
	res.Problems = p
	f.logf("ttl: %d requests, %d served, %d passports issued", res.Requests, res.Served, res.PassportsIssued)
	return res, nil
}
