package detect_test

import (
	"fmt"
	"time"

	"github.com/stackctl/stack/detect"
)

// A grid with credential_burst in revoke mode: three hours of an agent
// pulling its Stripe key every 6 s, then a tight loop of pulls. The grid
// revokes on the request that takes the last minute's count to 5 times
// the learned baseline.
func ExampleNewGrid() {
	burst, err := detect.NewBurst(detect.BurstOptions{})
	if err != nil {
		panic(err)
	}
	drift, err := detect.NewDrift(detect.DriftOptions{})
	if err != nil {
		panic(err)
	}
	g, err := detect.NewGrid(detect.GridOptions{
		Detectors: []detect.Detector{burst, drift},
		Policy: detect.Policy{
			Modes: map[string]detect.Mode{detect.BurstName: detect.ModeRevoke},
		},
	})
	if err != nil {
		panic(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pull := func(at time.Time) detect.Decision {
		return g.Evaluate(&detect.Event{
			Time: at, Direction: detect.Request, Agent: "billing-agent", Mode: "enforce",
			Host: "api.stripe.com", Method: "POST", Path: "/v1/charges", Credentials: []string{"stripe"},
		})
	}
	at := start
	for ; at.Before(start.Add(3 * time.Hour)); at = at.Add(6 * time.Second) {
		pull(at)
	}
	for i := range 120 {
		d := pull(at.Add(time.Duration(i) * 10 * time.Millisecond))
		if d.Action != detect.ActionNone {
			fmt.Println("request", i, "->", d.Action)
			fmt.Println(d.Signals[0].Evidence)
			break
		}
	}
	// Output:
	// request 40 -> revoke
	// 5.0x baseline: 50 pulls of stripe in 60s vs 10.0/60s over 3h
}

// A control plane moves one agent's credential_burst from alert to
// block, while every other agent keeps the policy's alert.
func ExampleGrid_SetAgentModes() {
	burst, err := detect.NewBurst(detect.BurstOptions{AbsoluteCap: 3})
	if err != nil {
		panic(err)
	}
	g, err := detect.NewGrid(detect.GridOptions{
		Detectors: []detect.Detector{burst},
		Policy:    detect.Policy{Modes: map[string]detect.Mode{detect.BurstName: detect.ModeAlert}},
	})
	if err != nil {
		panic(err)
	}
	if err := g.SetAgentModes("billing-agent", map[string]detect.Mode{detect.BurstName: detect.ModeBlock}); err != nil {
		panic(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, agent := range []string{"billing-agent", "report-agent"} {
		var d detect.Decision
		for i := range 3 {
			d = g.Evaluate(&detect.Event{
				Time: at.Add(time.Duration(i) * time.Second), Direction: detect.Request, Agent: agent,
				Host: "api.stripe.com", Method: "GET", Path: "/v1/balance", Credentials: []string{"stripe"},
			})
		}
		fmt.Println(agent, "->", d.Action)
	}
	// Output:
	// billing-agent -> block
	// report-agent -> alert
}
