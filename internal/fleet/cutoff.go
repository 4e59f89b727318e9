package fleet

import (
	"context"
	"fmt"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/collectors"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/stackctl/stack/reason"
)

// afterReconnect is how many requests, besides the first, must be
// refused once the cut-off sidecar is back.
const afterReconnect = 5

// CutoffResult is what a sidecar cut off from the control plane did.
type CutoffResult struct {
	Sidecars int `json:"sidecars"`
	// CutDetectedMS is from the cut to the sidecar reporting its feed
	// disconnected.
	CutDetectedMS float64 `json:"cut_detected_ms"`
	// Others is the refusal times of the sidecars that were not cut.
	Others Spread `json:"others"`
	// Of the cut sidecar's requests sent after the revocation while it
	// was cut: served (fail-static) and not.
	ServedWhileCut int `json:"served_while_cut"`
	FailedWhileCut int `json:"failed_while_cut"`
	// ReconnectMS is from the restored connection to the sidecar's
	// stack_control_connected being 1.
	ReconnectMS float64 `json:"reconnect_ms"`
	// FirstAfterReconnect is the answer to the first request after that.
	FirstAfterReconnect string `json:"first_after_reconnect"`
	// RefusedAfter counts the refusals among the requests after it.
	RefusedAfter int            `json:"refused_after"`
	Outcomes     map[string]int `json:"outcomes"`
	Problems     []string       `json:"problems,omitempty"`
}

// Cutoff puts sidecar 0 behind a fault proxy on its way to the control
// plane; every sidecar serves the same agent. It cuts the link, revokes
// the agent (the others refuse it, sidecar 0 keeps serving: fail-static),
// restores the link, waits until sidecar 0 reports its feed connected,
// and expects the very next request to be refused.
func (f *Fleet) Cutoff(ctx context.Context) (CutoffResult, error) {
	res := CutoffResult{Sidecars: f.opts.Sidecars, Outcomes: tally{}}
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	srv.Metrics.ProxyMetrics = collectors.NewProxyMetricCollectors()
	link := toxiproxy.NewProxy(srv, "control", "127.0.0.1:0", f.controlAddr)
	if err := link.Start(); err != nil {
		return res, err
	}
	defer link.Stop()

	agent, err := f.newAgent(ctx, "cutoff", 10*time.Minute)
	if err != nil {
		return res, err
	}
	plans := plansFor(agent, 0, f.opts.Sidecars)
	// The fault proxy's address is a loopback IP, for which the control
	// plane's certificate is valid like for its own.
	plans[0].controlURL = "https://" + link.Listen
	scs, err := f.restartSidecars(ctx, plans)
	if err != nil {
		return res, err
	}
	cut, others := scs[0], scs[1:]
	trCut, err := f.settle(ctx, []*sidecar{cut})
	if err != nil {
		return res, err
	}
	defer trCut.stop()
	trOthers, err := f.settle(ctx, others)
	if err != nil {
		return res, err
	}
	defer trOthers.stop()

	var p problems
	cutAt := time.Now()
	link.Stop()
	err = waitFor(ctx, refuseTimeout, 10*time.Millisecond, func() (bool, error) {
		ok, err := cut.connected(ctx)
		return !ok, err
	})
	if err != nil {
		return res, fmt.Errorf("the cut sidecar still reports its feed connected: %w", err)
	}
	res.CutDetectedMS = ms(time.Since(cutAt))

	started, returned, err := f.revoke(ctx, agent)
	if err != nil {
		return res, err
	}
	if err := trOthers.waitAll(ctx, refuseTimeout, "refusal", refusedSince(started, reason.PassportRevoked)); err != nil {
		p.add("%v", err)
	}
	// Long enough for the cut sidecar to show it serves on.
	if err := sleepCtx(ctx, f.hold()); err != nil {
		return res, err
	}
	trCut.stop()
	for _, sm := range window(trCut.streams[0].snapshot(), started, time.Now()) {
		if sm.ok() {
			res.ServedWhileCut++
		} else {
			res.FailedWhileCut++
		}
	}
	if res.ServedWhileCut == 0 || res.FailedWhileCut > 0 {
		p.add("while cut off, sidecar 0 served %d and failed %d requests after the revocation: want all served (fail-static)", res.ServedWhileCut, res.FailedWhileCut)
	}

	restored := time.Now()
	if err := link.Start(); err != nil {
		return res, err
	}
	// Poll often, so that the request below follows the reconnect
	// closely: it must already be refused.
	err = waitFor(ctx, refuseTimeout, 2*time.Millisecond, func() (bool, error) { return cut.connected(ctx) })
	if err != nil {
		return res, fmt.Errorf("the cut sidecar did not reconnect: %w", err)
	}
	res.ReconnectMS = ms(time.Since(restored))
	target := f.up.url("/v1/fleet")
	after := []sample{cut.send(ctx, target)}
	res.FirstAfterReconnect = after[0].describe()
	if !after[0].refused(reason.PassportRevoked) {
		p.add("the first request after sidecar 0 reconnected was answered %s, not refused with %s", res.FirstAfterReconnect, reason.PassportRevoked)
	}
	for range afterReconnect {
		if err := sleepCtx(ctx, f.opts.Interval); err != nil {
			return res, err
		}
		sm := cut.send(ctx, target)
		after = append(after, sm)
		if sm.refused(reason.PassportRevoked) {
			res.RefusedAfter++
		}
	}
	if res.RefusedAfter != afterReconnect {
		p.add("after the reconnect sidecar 0 refused %d of the %d next requests", res.RefusedAfter, afterReconnect)
	}
	trOthers.stop()

	var fig revocationFigures
	fig.judgeAll(&p, trOthers.streams, started, returned)
	res.Others = spreadOf(fig.delays)
	res.Outcomes = fig.outcomes
	tally(res.Outcomes).add(trCut.streams[0].snapshot())
	tally(res.Outcomes).add(after)
	res.Problems = p
	f.logf("cutoff: served %d while cut, reconnected in %.0f ms, then %s", res.ServedWhileCut, res.ReconnectMS, res.FirstAfterReconnect)
	return res, nil
}
