package detect

import (
	"fmt"
	"strings"
	"time"

	"github.com/stackctl/stack/hostmatch"
)

// Mode is what a detector's signals are allowed to do.
type Mode string

// Modes, from the weakest to the strongest.
const (
	// ModeOff does not run the detector at all.
	ModeOff Mode = "off"
	// ModeShadow records the detector's signals and does nothing else.
	ModeShadow Mode = "shadow"
	// ModeAlert records and alerts (log, metric, webhook). The default.
	ModeAlert Mode = "alert"
	// ModeBlock also refuses the request with a 403.
	ModeBlock Mode = "block"
	// ModeRevoke also revokes the passport (and so every passport
	// delegated from it); the request is blocked too.
	ModeRevoke Mode = "revoke"
)

// ParseMode accepts the config spelling of a mode; "" means ModeAlert.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return ModeAlert, nil
	case ModeOff, ModeShadow, ModeAlert, ModeBlock, ModeRevoke:
		return m, nil
	}
	return "", fmt.Errorf("detect: parse mode %q: %w (want off, shadow, alert, block or revoke)", s, ErrInvalidPolicy)
}

// action is the action a signal asks for under mode m.
func (m Mode) action() Action {
	switch m {
	case ModeOff:
		return ActionNone
	case ModeShadow:
		return ActionRecord
	case ModeBlock:
		return ActionBlock
	case ModeRevoke:
		return ActionRevoke
	}
	return ActionAlert
}

// Action is what the proxy does about an event.
type Action string

// Actions, from the weakest to the strongest. Each one implies those
// before it (a revoke is recorded, alerted and blocked too).
const (
	// ActionNone: nothing fired.
	ActionNone Action = "none"
	// ActionRecord: signals are recorded (audit, metrics) and nothing else,
	// as in shadow mode.
	ActionRecord Action = "record"
	// ActionAlert: recorded and alerted.
	ActionAlert Action = "alert"
	// ActionBlock: the request is refused with a 403.
	ActionBlock Action = "block"
	// ActionRevoke: the passport is revoked and the request refused.
	ActionRevoke Action = "revoke"
)

// Rank orders actions: none 0, record 1, alert 2, block 3, revoke 4;
// unknown -1.
func (a Action) Rank() int {
	switch a {
	case ActionNone, "":
		return 0
	case ActionRecord:
		return 1
	case ActionAlert:
		return 2
	case ActionBlock:
		return 3
	case ActionRevoke:
		return 4
	}
	return -1
}

// Blocks reports whether the request must be refused: block and revoke.
func (a Action) Blocks() bool { return a.Rank() >= ActionBlock.Rank() }

// Alerts reports whether the action asks for an alert: alert and above.
func (a Action) Alerts() bool { return a.Rank() >= ActionAlert.Rank() }

// mode is the mode whose action is a, for reporting composite rules.
func (a Action) mode() Mode {
	switch a {
	case ActionRecord:
		return ModeShadow
	case ActionAlert:
		return ModeAlert
	case ActionBlock:
		return ModeBlock
	case ActionRevoke:
		return ModeRevoke
	}
	return ModeOff
}

// Policy turns signals into actions. The zero Policy runs every detector
// in alert mode with no composite rules and no suppressions.
type Policy struct {
	// Modes sets each detector's mode by name; a detector not named here,
	// or named with an empty mode, runs in ModeAlert. Modes are read as
	// ParseMode reads them (case does not matter). Naming a detector the
	// grid does not run is an error (a typo must not leave a detector in
	// the default mode).
	Modes map[string]Mode
	// AlertOnly is the rollout gate: every action, composite rules
	// included, is capped at alert, whatever the modes say.
	AlertOnly bool
	// Rules are composite rules: a rule acts when every one of its
	// detectors has fired for the same agent within its window.
	Rules []Rule
	// Suppress lists known false positives; a signal or rule that matches
	// one is dropped from the decision.
	Suppress []Suppression
	// MinSeverity: signals below it are still reported but act as in
	// shadow mode (record only) and do not count toward composite rules.
	// Empty means Info: no signal is below it.
	MinSeverity Severity
}

// Rule is a composite rule: when every detector in Detectors has fired
// for one agent within Within, with at least one of them firing on the
// current event, the rule asks for Action.
type Rule struct {
	// Name identifies the rule in decisions, audit records and
	// suppressions.
	Name string
	// Detectors are the detector names that must all fire (at least two
	// make a composite; one is allowed, to raise a single detector's
	// action only when it fires again).
	Detectors []string
	// Within is the window in which all of them must have fired.
	Within time.Duration
	// Action is what the rule asks for; ActionRecord to ActionRevoke.
	Action Action
}

// Suppression matches known false positives. Every field that is set must
// match; empty fields match anything, and at least one must be set.
type Suppression struct {
	// Agent is the passport subject.
	Agent string
	// Host is a hostmatch pattern for the request host: exact, or
	// "*.example.com" for exactly one more label (a.example.com, not
	// example.com nor a.b.example.com), as credentials are bound.
	Host string
	// Detector is a detector name. For a composite rule it matches when
	// the rule uses that detector.
	Detector string
	// Rule is a composite rule's name, or the Rule of a signal (the
	// pattern a detector matched, e.g. one prompt-injection pattern).
	Rule string
}

// Outcome explains the action asked for by one signal or composite rule.
type Outcome struct {
	// Detector is the signal's detector; empty for a composite rule.
	Detector string
	// Rule is the composite rule's name; for a signal, the signal's Rule
	// (the pattern it matched), if any.
	Rule string
	// Composite is true for a composite rule's outcome.
	Composite bool
	// Mode is the detector's mode for this event: the policy's, or the
	// agent's override (Grid.SetAgentModes). For a rule: the mode matching
	// the rule's configured action.
	Mode Mode
	// Action is what this signal or rule asks for, after capping.
	Action Action
	// Capped says why Action is weaker than Mode asks, when it is: "below
	// min severity warning", "passport mode alert", "passport mode
	// shadow", "rollout gate"; several are joined with "; ".
	Capped string
}

// Decision is the grid's verdict on one event.
type Decision struct {
	// Action is the strongest action asked for by any outcome; ActionNone
	// when nothing fired. Block and revoke both refuse the request.
	Action Action
	// Signals are every signal raised, suppressed ones excluded.
	Signals []Signal
	// Outcomes holds one entry per signal, in the order of Signals
	// (Outcomes[i] belongs to Signals[i]), then one per composite rule that
	// acted.
	Outcomes []Outcome
	// Suppressed counts signals and rules dropped by a suppression.
	Suppressed int
}

// Validate checks a policy on its own: modes, actions, rules and
// suppressions are well formed. The grid also checks that every detector
// named is one it runs.
func (p Policy) Validate() error {
	var problems []string
	for name, m := range p.Modes {
		if _, err := ParseMode(string(m)); err != nil {
			problems = append(problems, fmt.Sprintf("modes.%s: unknown mode %q", name, m))
		}
	}
	seen := map[string]bool{}
	for i, r := range p.Rules {
		where := fmt.Sprintf("rules[%d]", i)
		if r.Name == "" {
			problems = append(problems, where+": no name")
		} else if seen[r.Name] {
			problems = append(problems, fmt.Sprintf("%s: name %q used twice", where, r.Name))
		}
		seen[r.Name] = true
		if len(r.Detectors) == 0 {
			problems = append(problems, where+": no detectors")
		}
		if r.Within <= 0 {
			problems = append(problems, where+": within must be positive")
		}
		if normAction(r.Action).Rank() < ActionRecord.Rank() {
			problems = append(problems, fmt.Sprintf("%s: action %q (want record, alert, block or revoke)", where, r.Action))
		}
	}
	for i, s := range p.Suppress {
		if s == (Suppression{}) {
			problems = append(problems, fmt.Sprintf("suppress[%d]: names nothing (it would suppress every signal)", i))
		}
	}
	switch p.MinSeverity {
	case "", Info, Warning, Critical:
	default:
		problems = append(problems, fmt.Sprintf("min_severity: unknown severity %q", p.MinSeverity))
	}
	if len(problems) > 0 {
		return fmt.Errorf("detect: validate policy: %w: %s", ErrInvalidPolicy, strings.Join(problems, "; "))
	}
	return nil
}

func normAction(a Action) Action {
	return Action(strings.ToLower(strings.TrimSpace(string(a))))
}

// compiledPolicy is a validated Policy in the shape Evaluate reads.
type compiledPolicy struct {
	p Policy
	// modes by detector index in the grid.
	modes []Mode
	// ruleDets[i] are the grid indexes of rule i's detectors.
	ruleDets [][]int
	// inRule[d] is true when detector d feeds some rule.
	inRule   []bool
	longest  time.Duration
	minRank  int
	suppress []Suppression
}

func compilePolicy(p Policy, names []string) (*compiledPolicy, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	index := make(map[string]int, len(names))
	for i, n := range names {
		index[n] = i
	}
	var problems []string
	cp := &compiledPolicy{p: p, modes: make([]Mode, len(names)), inRule: make([]bool, len(names)), minRank: p.MinSeverity.Rank()}
	if cp.minRank == 0 {
		cp.minRank = Info.Rank()
	}
	for i := range cp.modes {
		cp.modes[i] = ModeAlert
	}
	for name, m := range p.Modes {
		i, ok := index[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("modes.%s: no such detector", name))
			continue
		}
		cp.modes[i], _ = ParseMode(string(m)) // validated above
	}
	// Keep a copy of the rules, normalized, so that the caller's slice can
	// change without changing the policy in force.
	rules := make([]Rule, len(p.Rules))
	for i, r := range p.Rules {
		r.Detectors = append([]string(nil), r.Detectors...)
		r.Action = normAction(r.Action)
		rules[i] = r
	}
	cp.p.Rules = rules
	cp.p.Modes = make(map[string]Mode, len(p.Modes))
	for k, v := range p.Modes {
		cp.p.Modes[k] = v
	}
	cp.p.Suppress = append([]Suppression(nil), p.Suppress...)
	for _, r := range rules {
		var dets []int
		for _, d := range r.Detectors {
			i, ok := index[d]
			if !ok {
				problems = append(problems, fmt.Sprintf("rule %q: no such detector %q", r.Name, d))
				continue
			}
			dets = append(dets, i)
			cp.inRule[i] = true
		}
		cp.ruleDets = append(cp.ruleDets, dets)
		cp.longest = max(cp.longest, r.Within)
	}
	for i, s := range p.Suppress {
		if s.Detector != "" {
			if _, ok := index[s.Detector]; !ok {
				problems = append(problems, fmt.Sprintf("suppress[%d]: no such detector %q", i, s.Detector))
			}
		}
		if s.Host != "" {
			h, err := hostmatch.Pattern(s.Host)
			if err != nil {
				problems = append(problems, fmt.Sprintf("suppress[%d]: host %q: %v", i, s.Host, err))
			}
			s.Host = h
		}
		cp.suppress = append(cp.suppress, s)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("detect: compile policy: %w: %s", ErrInvalidPolicy, strings.Join(problems, "; "))
	}
	return cp, nil
}

// suppressedSignal reports whether a suppression drops signal s on ev.
func (cp *compiledPolicy) suppressedSignal(ev *Event, s *Signal) bool {
	for i := range cp.suppress {
		x := &cp.suppress[i]
		if (x.Agent == "" || x.Agent == ev.Agent) && (x.Host == "" || hostmatch.Match(x.Host, ev.Host)) &&
			(x.Detector == "" || x.Detector == s.Detector) && (x.Rule == "" || x.Rule == s.Rule) {
			return true
		}
	}
	return false
}

// suppressedRule reports whether a suppression drops composite rule r on ev.
func (cp *compiledPolicy) suppressedRule(ev *Event, r *Rule) bool {
	for i := range cp.suppress {
		x := &cp.suppress[i]
		if (x.Agent == "" || x.Agent == ev.Agent) && (x.Host == "" || hostmatch.Match(x.Host, ev.Host)) &&
			(x.Detector == "" || contains(r.Detectors, x.Detector)) && (x.Rule == "" || x.Rule == r.Name) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// capAction lowers a by the passport's mode claim and the rollout gate,
// adding the reason of every cap that lowered it to why.
func (cp *compiledPolicy) capAction(a Action, passportMode string, why []string) (Action, []string) {
	switch passportMode {
	case "shadow":
		if a.Rank() > ActionRecord.Rank() {
			a, why = ActionRecord, append(why, "passport mode shadow")
		}
	case "alert":
		if a.Rank() > ActionAlert.Rank() {
			a, why = ActionAlert, append(why, "passport mode alert")
		}
	}
	// Any other passport mode ("enforce", empty, or one this version does
	// not know) applies the configured action: unknown claims never weaken
	// enforcement.
	if cp.p.AlertOnly && a.Rank() > ActionAlert.Rank() {
		a, why = ActionAlert, append(why, "rollout gate")
	}
	return a, why
}
