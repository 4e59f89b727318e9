package fleet

import (
	"context"
	"fmt"
	"time"
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
	// failed are the requests neither served nor refused for the
	// revocation before the first refusal; leaked the ones served or
	// failed after it.
	failed, leaked           int
	firstFailed, firstLeaked string
}

func judge(s []sample, started, returned time.Time) verdict {
	var v verdict
	i := firstRefusal(s, started, reasonRevoked)
	before := s
	if i >= 0 {
		before = s[:i]
		v.refused = true
		v.delay = s[i].done.Sub(returned)
		if v.delay < 0 {
			v.delay, v.beforeReturn = 0, true
		}
		for _, sm := range s[i+1:] {
			if !sm.refused(reasonRevoked) {
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
	beforeReturn int
	requests     int
	outcomes     tally
}

func (r *revocationFigures) judgeAll(p *problems, streams []*stream, started, returned time.Time) {
	if r.outcomes == nil {
		r.outcomes = tally{}
	}
	for _, st := range streams {
		s := st.snapshot()
		r.requests += len(s)
		r.outcomes.add(s)
		v := judge(s, started, returned)
		if !v.refused {
			p.add("sidecar %d never refused its revoked agent", st.sc.Index)
		} else {
			r.delays = append(r.delays, v.delay)
			if v.beforeReturn {
				r.beforeReturn++
			}
		}
		if v.failed > 0 {
			p.add("sidecar %d: %d requests failed before the revocation applied (first: %s)", st.sc.Index, v.failed, v.firstFailed)
		}
		if v.leaked > 0 {
			p.add("sidecar %d: %d requests not refused after its first refusal (first: %s)", st.sc.Index, v.leaked, v.firstLeaked)
		}
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
