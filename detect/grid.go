package detect

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// GridOptions configure a Grid.
type GridOptions struct {
	// Detectors are run in this order on every event. Names must be
	// unique.
	Detectors []Detector
	// Policy turns their signals into actions; the zero Policy alerts on
	// everything.
	Policy Policy
	// Now is the clock for events whose Time is zero (time.Now when nil).
	Now func() time.Time
}

// Grid runs detectors on events and applies a Policy to their signals. It
// is safe for concurrent use; Evaluate does no I/O.
type Grid struct {
	dets   []Detector
	names  []string
	now    func() time.Time
	policy atomic.Pointer[compiledPolicy]
	// agentModes are per-agent overrides of the policy's modes (see
	// SetAgentModes): nil while no agent has any, so that Evaluate pays
	// one atomic load for them and nothing else. The map is never changed
	// once stored; writers replace it under modesMu.
	agentModes atomic.Pointer[map[string][]Mode]
	modesMu    sync.Mutex

	// Composite-rule memory: per agent, when each detector last fired.
	mu        sync.Mutex
	agents    map[string]*ruleMemory
	lastSweep time.Time
}

// ruleMemory is one agent's recent firings, indexed like Grid.dets.
type ruleMemory struct {
	fired    []time.Time
	lastSeen time.Time
}

// NewGrid checks the detectors and the policy and returns a Grid.
func NewGrid(opts GridOptions) (*Grid, error) {
	g := &Grid{now: opts.Now, agents: map[string]*ruleMemory{}}
	if g.now == nil {
		g.now = time.Now
	}
	seen := map[string]bool{}
	for i, d := range opts.Detectors {
		if d == nil {
			return nil, fmt.Errorf("detect: new grid: detector %d is nil: %w", i, ErrInvalidOptions)
		}
		n := d.Name()
		if n == "" || seen[n] {
			return nil, fmt.Errorf("detect: new grid: detector name %q empty or used twice: %w", n, ErrInvalidOptions)
		}
		seen[n] = true
		g.dets = append(g.dets, d)
		g.names = append(g.names, n)
	}
	if err := g.SetPolicy(opts.Policy); err != nil {
		return nil, fmt.Errorf("detect: new grid: %w", err)
	}
	return g, nil
}

// SetPolicy replaces the policy atomically, for a config reload: events
// being evaluated finish under the old one. An invalid policy is refused
// with an error wrapping ErrInvalidPolicy and the old one stays in force.
// Composite-rule memory is kept across the swap.
func (g *Grid) SetPolicy(p Policy) error {
	cp, err := compilePolicy(p, g.names)
	if err != nil {
		return err
	}
	g.policy.Store(cp)
	return nil
}

// Policy returns the policy in force.
func (g *Grid) Policy() Policy { return g.policy.Load().p }

// Detectors returns the names of the grid's detectors, in run order.
func (g *Grid) Detectors() []string { return append([]string(nil), g.names...) }

// SetAgentModes sets the modes of the named detectors for events of one
// agent (Event.Agent), in place of the policy's: a control plane's
// per-agent rollout. Detectors not named keep the policy's mode; an empty
// map removes the agent's overrides. The passport's mode claim and
// Policy.AlertOnly still cap what an override asks for, as they cap the
// policy's modes, and the overrides outlive SetPolicy.
//
// A detector the grid does not run, or a mode ParseMode refuses (the
// empty mode included: an override must say what it is), is an error
// wrapping ErrInvalidPolicy, and the agent's overrides in force stay as
// they were.
func (g *Grid) SetAgentModes(agent string, modes map[string]Mode) error {
	var over []Mode
	if len(modes) > 0 {
		over = make([]Mode, len(g.names))
		var problems []string
		for name, m := range modes {
			i := slices.Index(g.names, name)
			pm, err := ParseMode(string(m))
			switch {
			case i < 0:
				problems = append(problems, fmt.Sprintf("%s: no such detector", name))
			case m == "" || err != nil:
				problems = append(problems, fmt.Sprintf("%s: unknown mode %q", name, m))
			default:
				over[i] = pm
			}
		}
		if len(problems) > 0 {
			slices.Sort(problems)
			return fmt.Errorf("detect: set modes of agent %q: %w: %s", agent, ErrInvalidPolicy, strings.Join(problems, "; "))
		}
	}
	g.modesMu.Lock()
	defer g.modesMu.Unlock()
	var cur map[string][]Mode
	if p := g.agentModes.Load(); p != nil {
		cur = *p
	}
	next := make(map[string][]Mode, len(cur)+1)
	for a, m := range cur {
		if a != agent {
			next[a] = m
		}
	}
	if over != nil {
		next[agent] = over
	}
	if len(next) == 0 {
		g.agentModes.Store(nil)
		return nil
	}
	g.agentModes.Store(&next)
	return nil
}

// AgentModes returns the overrides SetAgentModes set for agent, by
// detector name; nil when it has none.
func (g *Grid) AgentModes(agent string) map[string]Mode {
	p := g.agentModes.Load()
	if p == nil {
		return nil
	}
	over := (*p)[agent]
	if over == nil {
		return nil
	}
	out := map[string]Mode{}
	for i, m := range over {
		if m != "" {
			out[g.names[i]] = m
		}
	}
	return out
}

// Evaluate runs every detector that is not off on ev and decides what to
// do. When ev.Time is zero it is set from the grid's clock first, so every
// detector sees the same time.
func (g *Grid) Evaluate(ev *Event) Decision {
	if ev.Time.IsZero() {
		ev.Time = g.now()
	}
	cp := g.policy.Load()
	var over []Mode // the agent's overrides, by detector index; "" for none
	if p := g.agentModes.Load(); p != nil {
		over = (*p)[ev.Agent]
	}
	d := Decision{Action: ActionNone}
	var firedRuleDets []int // detectors feeding rules that fired here
	var why []string
	for i, det := range g.dets {
		mode := cp.modes[i]
		if over != nil && over[i] != "" {
			mode = over[i]
		}
		if mode == ModeOff {
			continue
		}
		sigs := inspect(det, g.names[i], ev)
		for _, s := range sigs {
			if s.Detector == "" {
				s.Detector = g.names[i]
			}
			if cp.suppressedSignal(ev, &s) {
				d.Suppressed++
				continue
			}
			why = why[:0]
			a := mode.action()
			belowBar := s.Severity.Rank() < cp.minRank
			if belowBar && a.Rank() > ActionRecord.Rank() {
				a, why = ActionRecord, append(why, "below min severity "+string(cp.p.MinSeverity))
			}
			a, why = cp.capAction(a, ev.Mode, why)
			d.Signals = append(d.Signals, s)
			d.Outcomes = append(d.Outcomes, Outcome{
				Detector: s.Detector, Rule: s.Rule, Mode: mode, Action: a, Capped: strings.Join(why, "; "),
			})
			if a.Rank() > d.Action.Rank() {
				d.Action = a
			}
			if !belowBar && cp.inRule[i] && (len(firedRuleDets) == 0 || firedRuleDets[len(firedRuleDets)-1] != i) {
				firedRuleDets = append(firedRuleDets, i)
			}
		}
	}
	if len(cp.p.Rules) > 0 {
		g.applyRules(cp, ev, firedRuleDets, &d)
	}
	return d
}

// inspect runs one detector. A detector that panics fails closed: the
// panic becomes a critical signal instead of crashing the proxy or
// letting the request through unexamined.
func inspect(det Detector, name string, ev *Event) (sigs []Signal) {
	defer func() {
		if r := recover(); r != nil {
			sigs = []Signal{{
				Detector: name, Severity: Critical, Score: 1, Rule: "detector_failure",
				Evidence: fmt.Sprintf("detector %s failed: %v", name, r),
			}}
		}
	}()
	return det.Inspect(ev)
}

// applyRules records this event's firings for ev.Agent and adds the
// outcome of every composite rule they complete.
func (g *Grid) applyRules(cp *compiledPolicy, ev *Event, fired []int, d *Decision) {
	now := ev.Time
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweep(now, cp.longest)
	if len(fired) == 0 {
		return
	}
	m := g.agents[ev.Agent]
	if m == nil {
		m = &ruleMemory{fired: make([]time.Time, len(g.dets))}
		g.agents[ev.Agent] = m
	}
	m.lastSeen = now
	for _, i := range fired {
		if now.After(m.fired[i]) {
			m.fired[i] = now
		}
	}
	var why []string
	for ri := range cp.p.Rules {
		r := &cp.p.Rules[ri]
		dets := cp.ruleDets[ri]
		touched, complete := false, true
		for _, i := range dets {
			// Concurrent requests reach the grid slightly out of time
			// order, so the window is measured both ways.
			t := m.fired[i]
			if t.IsZero() || absDuration(now.Sub(t)) > r.Within {
				complete = false
				break
			}
			if containsInt(fired, i) {
				touched = true
			}
		}
		if !complete || !touched {
			continue
		}
		if cp.suppressedRule(ev, r) {
			d.Suppressed++
			continue
		}
		var a Action
		a, why = cp.capAction(r.Action, ev.Mode, why[:0])
		d.Outcomes = append(d.Outcomes, Outcome{
			Rule: r.Name, Composite: true, Mode: r.Action.mode(), Action: a, Capped: strings.Join(why, "; "),
		})
		if a.Rank() > d.Action.Rank() {
			d.Action = a
		}
	}
}

// sweep forgets agents idle for longer than the longest rule window, at
// most once per such window, so memory follows the agents active lately.
func (g *Grid) sweep(now time.Time, longest time.Duration) {
	if now.Sub(g.lastSweep) < longest {
		return
	}
	g.lastSweep = now
	for a, m := range g.agents {
		if now.Sub(m.lastSeen) > longest {
			delete(g.agents, a)
		}
	}
}

// trackedAgents is the number of agents in composite-rule memory.
func (g *Grid) trackedAgents() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.agents)
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func containsInt(list []int, x int) bool {
	for _, y := range list {
		if y == x {
			return true
		}
	}
	return false
}
