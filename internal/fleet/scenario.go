package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/stackctl/stack/reason"
)

// warmRequests is how many answers in a row every agent must have had
// before a scenario measures anything: its tunnel is open and its
// sidecar serves.
const warmRequests = 3

// settle starts one stream per sidecar and waits until every agent is
// served and every sidecar's feed is open. The caller stops the traffic.
func (f *Fleet) settle(ctx context.Context, scs []*sidecar) (*traffic, error) {
	tr := f.startTraffic(ctx, scs)
	if err := tr.warm(ctx, warmRequests); err != nil {
		tr.stop()
		return nil, err
	}
	if err := f.waitConnected(ctx, scs); err != nil {
		tr.stop()
		return nil, err
	}
	return tr, nil
}

// waitConnected waits until every sidecar reports its feed open.
func (f *Fleet) waitConnected(ctx context.Context, scs []*sidecar) error {
	pending := append([]*sidecar(nil), scs...)
	err := waitFor(ctx, refuseTimeout, 50*time.Millisecond, func() (bool, error) {
		var still []*sidecar
		for _, s := range pending {
			ok, err := s.readyzConnected(ctx)
			if err != nil {
				return false, err
			}
			if !ok {
				still = append(still, s)
			}
		}
		pending = still
		return len(pending) == 0, nil
	})
	if err != nil {
		var idx []int
		for _, s := range pending {
			idx = append(idx, s.Index)
		}
		return fmt.Errorf("feeds of sidecars %v not connected: %w", idx, err)
	}
	return nil
}

// hold is how long streams keep going after the last sidecar refused, to
// see that refusals continue.
func (f *Fleet) hold() time.Duration { return max(time.Second, 10*f.opts.Interval) }

// verdict is what one agent's stream says about a revocation of its
// agent that started at started and whose command returned at returned.
type verdict struct {
	refused bool
	// delay is from the command's return to the first refusal; zero
	// when the sidecar refused before the command returned.
	delay        time.Duration
	beforeReturn bool
	// sinceStart is from the command's start to the first refusal.
	sinceStart time.Duration
	// failed are the requests neither served nor refused for the
	// revocation before the first refusal; leaked the ones served or
	// failed after it.
	failed, leaked           int
	firstFailed, firstLeaked string
}

func judge(s []sample, started, returned time.Time) verdict {
	var v verdict
	i := firstRefusal(s, started, reason.PassportRevoked)
	before := s
	if i >= 0 {
		before = s[:i]
		v.refused = true
		v.delay = s[i].done.Sub(returned)
		v.sinceStart = s[i].done.Sub(started)
		if v.delay < 0 {
			v.delay, v.beforeReturn = 0, true
		}
		for _, sm := range s[i+1:] {
			if !sm.refused(reason.PassportRevoked) {
				if v.leaked == 0 {
					v.firstLeaked = sm.describe()
				}
				v.leaked++
			}
		}
	}
	for _, sm := range before {
		if !sm.ok() {
			if v.failed == 0 {
				v.firstFailed = sm.describe()
			}
			v.failed++
		}
	}
	return v
}

// revocationFigures judges every stream of a revoked agent.
type revocationFigures struct {
	delays       []time.Duration
	sinceStart   []time.Duration
	beforeReturn int
	requests     int
	outcomes     tally
}

func (r *revocationFigures) judgeAll(p *problems, streams []*stream, started, returned time.Time) {
	if r.outcomes == nil {
		r.outcomes = tally{}
	}
	var never, failed, leaked offenders
	for _, st := range streams {
		s := st.snapshot()
		r.requests += len(s)
		r.outcomes.add(s)
		v := judge(s, started, returned)
		if !v.refused {
			never.add(st.sc.Index, 1, "")
		} else {
			r.delays = append(r.delays, v.delay)
			r.sinceStart = append(r.sinceStart, v.sinceStart)
			if v.beforeReturn {
				r.beforeReturn++
			}
		}
		failed.add(st.sc.Index, v.failed, v.firstFailed)
		leaked.add(st.sc.Index, v.leaked, v.firstLeaked)
	}
	if len(never.sidecars) > 0 {
		p.add("sidecars %v never refused their revoked agent", never.sidecars)
	}
	failed.report(p, "requests failed before the revocation applied")
	leaked.report(p, "requests were not refused after the first refusal")
}

// offenders are the sidecars where something went wrong, one problem
// for all of them.
type offenders struct {
	sidecars []int
	n        int
	first    string
}

func (o *offenders) add(sidecar, n int, first string) {
	if n == 0 {
		return
	}
	if len(o.sidecars) == 0 {
		o.first = fmt.Sprintf("sidecar %d: %s", sidecar, first)
	}
	o.sidecars = append(o.sidecars, sidecar)
	o.n += n
}

func (o *offenders) report(p *problems, what string) {
	if o.n > 0 {
		p.add("%d %s, on sidecars %v (first: %s)", o.n, what, o.sidecars, o.first)
	}
}

// plansFor serves agent on sidecars [from, to).
func plansFor(agent string, from, to int, env ...string) []plan {
	var ps []plan
	for i := from; i < to; i++ {
		ps = append(ps, plan{index: i, agent: agent, env: env})
	}
	return ps
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
