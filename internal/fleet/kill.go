package fleet

import (
	"context"
	"sync"
	"time"

	"github.com/stackctl/stack/reason"
)

// KillOptions configure Kill.
type KillOptions struct {
	// Down is how long the control plane stays dead (default 10s).
	Down time.Duration
}

// KillResult is what the fleet did while its control plane was dead and
// after it came back.
type KillResult struct {
	Sidecars int `json:"sidecars"`
	// Serving sidecars serve an agent that stays valid while the control
	// plane is dead; Revoked ones an agent revoked just before it died.
	Serving int `json:"serving_sidecars"`
	Revoked int `json:"revoked_sidecars"`
	// BeforeKill is the revoked agent's refusal times, from the revoke
	// command's return; the control plane is killed once all refuse.
	BeforeKill Spread  `json:"before_kill"`
	DownMS     float64 `json:"down_ms"`
	// Of requests sent while the control plane was dead: served by the
	// serving sidecars, failed there, refused by the revoked ones.
	ServedWhileDown  int `json:"served_while_down"`
	FailedWhileDown  int `json:"failed_while_down"`
	RefusedWhileDown int `json:"refused_while_down"`
	// RestartMS is from the restart to the control plane's run file.
	RestartMS float64 `json:"restart_ms"`
	// Reconnected is, over the serving sidecars, the time from the
	// restart to their feed being open again.
	Reconnected Spread `json:"reconnected"`
	// AfterRestart is the serving agent's refusal times once it is
	// revoked right after the restart, from the command's return: how
	// long until every sidecar refuses.
	AfterRestart          Spread         `json:"after_restart"`
	AfterRestartCommandMS float64        `json:"after_restart_command_ms"`
	Requests              int            `json:"requests"`
	Outcomes              map[string]int `json:"outcomes"`
	Problems              []string       `json:"problems,omitempty"`
}

// Kill revokes agent X, served by a quarter of the sidecars, waits until
// they all refuse it, then kills the control plane with SIGKILL. While
// it is dead every other sidecar must keep serving its agent and X's
// sidecars keep refusing. The control plane is then restarted on the
// same data directory and address, the other agent is revoked at once,
// and the scenario measures how long until every sidecar refuses it.
func (f *Fleet) Kill(ctx context.Context, opts KillOptions) (KillResult, error) {
	if opts.Down <= 0 {
		opts.Down = 10 * time.Second
	}
	n := f.opts.Sidecars
	nx := max(1, n/4)
	res := KillResult{Sidecars: n, Serving: n - nx, Revoked: nx, Outcomes: tally{}}
	serving, err := f.newAgent(ctx, "kill-serving", 10*time.Minute)
	if err != nil {
		return res, err
	}
	revoked, err := f.newAgent(ctx, "kill-revoked", 10*time.Minute)
	if err != nil {
		return res, err
	}
	scs, err := f.restartSidecars(ctx, append(plansFor(serving, 0, n-nx), plansFor(revoked, n-nx, n)...))
	if err != nil {
		return res, err
	}
	ys, xs := scs[:n-nx], scs[n-nx:]
	trY, err := f.settle(ctx, ys)
	if err != nil {
		return res, err
	}
	defer trY.stop()
	trX, err := f.settle(ctx, xs)
	if err != nil {
		return res, err
	}
	defer trX.stop()

	var p problems
	startedX, returnedX, err := f.revoke(ctx, revoked)
	if err != nil {
		return res, err
	}
	if err := trX.waitAll(ctx, refuseTimeout, "refusal before the kill", refusedSince(startedX, reason.PassportRevoked)); err != nil {
		p.add("%v", err)
	}
	killed := time.Now()
	f.control.kill()
	f.logf("kill: control plane killed; down for %s", opts.Down)
	if err := sleepCtx(ctx, opts.Down); err != nil {
		return res, err
	}
	restarted := time.Now()
	res.DownMS = ms(restarted.Sub(killed))
	if err := f.startControl(ctx); err != nil {
		return res, err
	}
	res.RestartMS = ms(time.Since(restarted))

	// Watch the feeds come back while the revocation goes out.
	var (
		wg        sync.WaitGroup
		reconnect []time.Duration
		rerr      error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		reconnect, rerr = f.reconnectTimes(ctx, ys, restarted)
	}()
	startedY, returnedY, err := f.revoke(ctx, serving)
	if err != nil {
		wg.Wait()
		return res, err
	}
	res.AfterRestartCommandMS = ms(returnedY.Sub(startedY))
	if err := trY.waitAll(ctx, refuseTimeout, "refusal after the restart", refusedSince(startedY, reason.PassportRevoked)); err != nil {
		p.add("%v", err)
	}
	wg.Wait()
	if rerr != nil {
		p.add("feeds after the restart: %v", rerr)
	}
	res.Reconnected = spreadOf(reconnect)
	if err := sleepCtx(ctx, f.hold()); err != nil {
		return res, err
	}
	trX.stop()
	trY.stop()

	var figX, figY revocationFigures
	figX.judgeAll(&p, trX.streams, startedX, returnedX)
	figY.judgeAll(&p, trY.streams, startedY, returnedY)
	res.BeforeKill, res.AfterRestart = spreadOf(figX.delays), spreadOf(figY.delays)
	res.Requests = figX.requests + figY.requests
	for _, t := range []tally{figX.outcomes, figY.outcomes} {
		for k, v := range t {
			res.Outcomes[k] += v
		}
	}
	for _, st := range trY.streams {
		for _, sm := range window(st.snapshot(), killed, restarted) {
			if sm.ok() {
				res.ServedWhileDown++
			} else {
				res.FailedWhileDown++
			}
		}
	}
	for _, st := range trX.streams {
		for _, sm := range window(st.snapshot(), killed, restarted) {
			if sm.refused(reason.PassportRevoked) {
				res.RefusedWhileDown++
			}
		}
	}
	if res.ServedWhileDown == 0 {
		p.add("no request was served while the control plane was dead")
	}
	if res.FailedWhileDown > 0 {
		p.add("%d requests of the serving agent failed while the control plane was dead", res.FailedWhileDown)
	}
	res.Problems = p
	f.logf("kill: %d served and %d failed while down; after the restart every sidecar refused within %.0f ms", res.ServedWhileDown, res.FailedWhileDown, res.AfterRestart.MaxMS)
	return res, nil
}

// reconnectTimes polls the sidecars until each has its feed open again
// and returns, for each, the time since since.
func (f *Fleet) reconnectTimes(ctx context.Context, scs []*sidecar, since time.Time) ([]time.Duration, error) {
	var times []time.Duration
	pending := append([]*sidecar(nil), scs...)
	err := waitFor(ctx, refuseTimeout, 100*time.Millisecond, func() (bool, error) {
		var still []*sidecar
		for _, s := range pending {
			ok, err := s.readyzConnected(ctx)
			if err != nil {
				return false, err
			}
			if ok {
				times = append(times, time.Since(since))
			} else {
				still = append(still, s)
			}
		}
		pending = still
		return len(pending) == 0, nil
	})
	return times, err
}
