package detect

import (
	"errors"
	"maps"
	"sync"
	"testing"
)

// agentGrid runs one detector, "burst", that fires a warning on every
// event, and "drift", which fires on /drift, with policy modes.
func agentGrid(t *testing.T, p Policy) *Grid {
	t.Helper()
	return mustGrid(t, GridOptions{
		Detectors: []Detector{firing("burst", Warning), firing("drift", Warning, "/drift")},
		Policy:    p,
	})
}

func TestAgentModes(t *testing.T) {
	alertBoth := Policy{Modes: map[string]Mode{"burst": ModeAlert, "drift": ModeAlert}}
	cases := []struct {
		name     string
		policy   Policy
		modes    map[string]Mode // for agent "a"
		agent    string
		path     string
		passport string // the passport's mode claim
		want     Action
		mode     Mode   // the outcome's mode of burst
		capped   string // the outcome's cap of burst
	}{
		{name: "the override wins for its agent", policy: alertBoth, modes: map[string]Mode{"burst": ModeBlock},
			agent: "a", want: ActionBlock, mode: ModeBlock},
		{name: "other agents keep the policy", policy: alertBoth, modes: map[string]Mode{"burst": ModeBlock},
			agent: "b", want: ActionAlert, mode: ModeAlert},
		{name: "detectors not named keep the policy", policy: alertBoth, modes: map[string]Mode{"drift": ModeRevoke},
			agent: "a", want: ActionAlert, mode: ModeAlert},
		{name: "modes are read as ParseMode reads them", policy: alertBoth, modes: map[string]Mode{"burst": " Revoke "},
			agent: "a", want: ActionRevoke, mode: ModeRevoke},
		{name: "off for the agent does not run it", policy: alertBoth, modes: map[string]Mode{"burst": ModeOff},
			agent: "a", want: ActionNone},
		{name: "a detector the policy has off runs for the agent", policy: Policy{Modes: map[string]Mode{"burst": ModeOff}},
			modes: map[string]Mode{"burst": ModeShadow}, agent: "a", want: ActionRecord, mode: ModeShadow},
		{name: "the passport's alert mode caps the override", policy: alertBoth, modes: map[string]Mode{"burst": ModeBlock},
			agent: "a", passport: "alert", want: ActionAlert, mode: ModeBlock, capped: "passport mode alert"},
		{name: "the passport's shadow mode caps the override", policy: alertBoth, modes: map[string]Mode{"burst": ModeRevoke},
			agent: "a", passport: "shadow", want: ActionRecord, mode: ModeRevoke, capped: "passport mode shadow"},
		{name: "the rollout gate caps the override",
			policy: Policy{Modes: map[string]Mode{"burst": ModeAlert}, AlertOnly: true},
			modes:  map[string]Mode{"burst": ModeRevoke}, agent: "a", want: ActionAlert, mode: ModeRevoke, capped: "rollout gate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := agentGrid(t, tc.policy)
			if err := g.SetAgentModes("a", tc.modes); err != nil {
				t.Fatal(err)
			}
			d := g.Evaluate(&Event{Time: t0, Agent: tc.agent, Path: "/x", Mode: tc.passport})
			if d.Action != tc.want {
				t.Fatalf("action %s, want %s (%+v)", d.Action, tc.want, d.Outcomes)
			}
			if tc.mode == "" {
				if len(d.Outcomes) != 0 {
					t.Fatalf("outcomes %+v, want none", d.Outcomes)
				}
				return
			}
			if len(d.Outcomes) != 1 || d.Outcomes[0].Mode != tc.mode || d.Outcomes[0].Capped != tc.capped {
				t.Fatalf("outcomes %+v, want burst in %s capped %q", d.Outcomes, tc.mode, tc.capped)
			}
		})
	}
}

func TestSetAgentModesRefusesAndKeeps(t *testing.T) {
	g := agentGrid(t, Policy{})
	before := map[string]Mode{"burst": ModeBlock}
	if err := g.SetAgentModes("a", before); err != nil {
		t.Fatal(err)
	}
	for name, modes := range map[string]map[string]Mode{
		"an unknown detector":            {"burst": ModeAlert, "nope": ModeBlock},
		"an unknown mode":                {"burst": "enforce"},
		"an empty mode":                  {"burst": ""},
		"a mode for the wrong detector":  {"drift": "blocks"},
		"an unknown detector, left case": {"Burst": ModeAlert},
	} {
		err := g.SetAgentModes("a", modes)
		if !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("%s: %v, want ErrInvalidPolicy", name, err)
		}
		if got := g.AgentModes("a"); !maps.Equal(got, before) {
			t.Errorf("%s changed the overrides to %v", name, got)
		}
		if d := g.Evaluate(&Event{Time: t0, Agent: "a", Path: "/x"}); d.Action != ActionBlock {
			t.Errorf("%s: action %s, want the override in force (block)", name, d.Action)
		}
	}
	// A bad set for another agent does not create it.
	if err := g.SetAgentModes("b", map[string]Mode{"nope": ModeOff}); err == nil || g.AgentModes("b") != nil {
		t.Errorf("a refused set left overrides for b: %v %v", err, g.AgentModes("b"))
	}
}

func TestAgentModesRemovedAndKeptAcrossSetPolicy(t *testing.T) {
	g := agentGrid(t, Policy{})
	if g.agentModes.Load() != nil {
		t.Fatal("a new grid holds overrides")
	}
	for _, agent := range []string{"a", "b"} {
		if err := g.SetAgentModes(agent, map[string]Mode{"burst": ModeBlock}); err != nil {
			t.Fatal(err)
		}
	}
	// A reload replaces the policy, not the control plane's overrides.
	if err := g.SetPolicy(Policy{Modes: map[string]Mode{"burst": ModeShadow}}); err != nil {
		t.Fatal(err)
	}
	if d := g.Evaluate(&Event{Time: t0, Agent: "a", Path: "/x"}); d.Action != ActionBlock {
		t.Fatalf("after SetPolicy: %s, want the override (block)", d.Action)
	}
	if d := g.Evaluate(&Event{Time: t0, Agent: "c", Path: "/x"}); d.Action != ActionRecord {
		t.Fatalf("another agent after SetPolicy: %s, want the new policy (record)", d.Action)
	}
	if err := g.SetAgentModes("a", map[string]Mode{}); err != nil {
		t.Fatal(err)
	}
	if g.AgentModes("a") != nil || g.AgentModes("b") == nil {
		t.Fatalf("removing a's overrides: a %v, b %v", g.AgentModes("a"), g.AgentModes("b"))
	}
	if d := g.Evaluate(&Event{Time: t0, Agent: "a", Path: "/x"}); d.Action != ActionRecord {
		t.Fatalf("a without overrides: %s, want the policy (record)", d.Action)
	}
	if err := g.SetAgentModes("b", nil); err != nil {
		t.Fatal(err)
	}
	if g.agentModes.Load() != nil {
		t.Fatal("no agent has overrides, yet Evaluate still looks them up")
	}
}

// Overrides change while events are evaluated: every decision is the
// policy's or the override's, never anything else (and -race sees no
// race).
func TestAgentModesConcurrent(t *testing.T) {
	g := agentGrid(t, Policy{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if a := g.Evaluate(&Event{Time: t0, Agent: "a", Path: "/x"}).Action; a != ActionAlert && a != ActionBlock {
					t.Errorf("action %s, want alert or block", a)
					return
				}
			}
		})
	}
	for i := range 1000 {
		modes := map[string]Mode{"burst": ModeBlock}
		if i%2 == 1 {
			modes = nil
		}
		if err := g.SetAgentModes("a", modes); err != nil {
			t.Fatal(err)
		}
		if err := g.SetAgentModes("other", map[string]Mode{"drift": ModeOff}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}
