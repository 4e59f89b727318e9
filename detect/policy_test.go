package detect

import (
	"errors"
	"testing"
	"time"
)

func TestPolicyCapping(t *testing.T) {
	type want struct {
		action     Action
		outcomes   []Action
		capped     []string
		signals    int
		suppressed int
	}
	ev := func(mode string) *Event {
		return &Event{Time: t0, Agent: "billing", Mode: mode, Host: "api.stripe.com", Method: "POST", Path: "/v1/charges"}
	}
	cases := []struct {
		name   string
		dets   []Detector
		policy Policy
		ev     *Event
		want   want
	}{
		{
			name: "default mode is alert",
			dets: []Detector{firing("alpha", Warning)},
			ev:   ev("enforce"),
			want: want{action: ActionAlert, outcomes: []Action{ActionAlert}, capped: []string{""}, signals: 1},
		},
		{
			name:   "off does not run the detector",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeOff}},
			ev:     ev("enforce"),
			want:   want{action: ActionNone},
		},
		{
			name:   "empty mode means alert",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ""}},
			ev:     ev("enforce"),
			want:   want{action: ActionAlert, outcomes: []Action{ActionAlert}, capped: []string{""}, signals: 1},
		},
		{
			name:   "mode and rule action spelled in capitals",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": "Block"}, Rules: []Rule{{Name: "r", Detectors: []string{"alpha"}, Within: time.Minute, Action: "Revoke"}}},
			ev:     ev("enforce"),
			want:   want{action: ActionRevoke, outcomes: []Action{ActionBlock, ActionRevoke}, capped: []string{"", ""}, signals: 1},
		},
		{
			name:   "shadow records",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeShadow}},
			ev:     ev("enforce"),
			want:   want{action: ActionRecord, outcomes: []Action{ActionRecord}, capped: []string{""}, signals: 1},
		},
		{
			name:   "revoke under enforce passport",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeRevoke}},
			ev:     ev("enforce"),
			want:   want{action: ActionRevoke, outcomes: []Action{ActionRevoke}, capped: []string{""}, signals: 1},
		},
		{
			name:   "passport without mode claim enforces",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeBlock}},
			ev:     ev(""),
			want:   want{action: ActionBlock, outcomes: []Action{ActionBlock}, capped: []string{""}, signals: 1},
		},
		{
			name:   "unknown passport mode does not weaken",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeBlock}},
			ev:     ev("lenient"),
			want:   want{action: ActionBlock, outcomes: []Action{ActionBlock}, capped: []string{""}, signals: 1},
		},
		{
			name:   "passport mode alert caps revoke",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeRevoke}},
			ev:     ev("alert"),
			want:   want{action: ActionAlert, outcomes: []Action{ActionAlert}, capped: []string{"passport mode alert"}, signals: 1},
		},
		{
			name:   "passport mode shadow caps block at record",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeBlock}},
			ev:     ev("shadow"),
			want:   want{action: ActionRecord, outcomes: []Action{ActionRecord}, capped: []string{"passport mode shadow"}, signals: 1},
		},
		{
			name:   "passport mode alert leaves shadow alone",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeShadow}},
			ev:     ev("alert"),
			want:   want{action: ActionRecord, outcomes: []Action{ActionRecord}, capped: []string{""}, signals: 1},
		},
		{
			name:   "rollout gate caps block",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeBlock}, AlertOnly: true},
			ev:     ev("enforce"),
			want:   want{action: ActionAlert, outcomes: []Action{ActionAlert}, capped: []string{"rollout gate"}, signals: 1},
		},
		{
			name:   "rollout gate after passport shadow changes nothing more",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeRevoke}, AlertOnly: true},
			ev:     ev("shadow"),
			want:   want{action: ActionRecord, outcomes: []Action{ActionRecord}, capped: []string{"passport mode shadow"}, signals: 1},
		},
		{
			name:   "min severity: below records only",
			dets:   []Detector{firing("alpha", Info), firing("beta", Warning)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeBlock, "beta": ModeBlock}, MinSeverity: Warning},
			ev:     ev("enforce"),
			want: want{action: ActionBlock, outcomes: []Action{ActionRecord, ActionBlock},
				capped: []string{"below min severity warning", ""}, signals: 2},
		},
		{
			name:   "min severity and rollout gate both named",
			dets:   []Detector{firing("alpha", Warning)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeRevoke}, MinSeverity: Critical, AlertOnly: true},
			ev:     ev("enforce"),
			want:   want{action: ActionRecord, outcomes: []Action{ActionRecord}, capped: []string{"below min severity critical"}, signals: 1},
		},
		{
			name:   "suppress by agent",
			dets:   []Detector{firing("alpha", Critical), firing("beta", Warning)},
			policy: Policy{Suppress: []Suppression{{Agent: "billing", Detector: "alpha"}}},
			ev:     ev("enforce"),
			want:   want{action: ActionAlert, outcomes: []Action{ActionAlert}, capped: []string{""}, signals: 1, suppressed: 1},
		},
		{
			name:   "suppression for another agent does not apply",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeBlock}, Suppress: []Suppression{{Agent: "support"}}},
			ev:     ev("enforce"),
			want:   want{action: ActionBlock, outcomes: []Action{ActionBlock}, capped: []string{""}, signals: 1},
		},
		{
			name:   "suppress by host",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeBlock}, Suppress: []Suppression{{Host: "api.stripe.com"}}},
			ev:     ev("enforce"),
			want:   want{action: ActionNone, suppressed: 1},
		},
		{
			name:   "suppress by host wildcard",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeBlock}, Suppress: []Suppression{{Host: "*.stripe.com"}}},
			ev:     ev("enforce"),
			want:   want{action: ActionNone, suppressed: 1},
		},
		{
			name:   "host wildcard does not match the bare domain",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeBlock}, Suppress: []Suppression{{Host: "*.api.stripe.com"}}},
			ev:     ev("enforce"),
			want:   want{action: ActionBlock, outcomes: []Action{ActionBlock}, capped: []string{""}, signals: 1},
		},
		{
			name:   "host wildcard takes one label only",
			dets:   []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeBlock}, Suppress: []Suppression{{Host: "*.Stripe.com"}}},
			ev:     &Event{Time: t0, Agent: "billing", Mode: "enforce", Host: "files.eu.stripe.com", Method: "POST", Path: "/v1/files"},
			want:   want{action: ActionBlock, outcomes: []Action{ActionBlock}, capped: []string{""}, signals: 1},
		},
		{
			name:   "suppress by detector",
			dets:   []Detector{firing("alpha", Critical), firing("beta", Warning)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeBlock}, Suppress: []Suppression{{Detector: "alpha"}}},
			ev:     ev("enforce"),
			want:   want{action: ActionAlert, outcomes: []Action{ActionAlert}, capped: []string{""}, signals: 1, suppressed: 1},
		},
		{
			name:   "suppress by signal rule",
			dets:   []Detector{firing("alpha", Critical), firing("beta", Warning)},
			policy: Policy{Modes: map[string]Mode{"beta": ModeBlock}, Suppress: []Suppression{{Rule: "beta_rule"}}},
			ev:     ev("enforce"),
			want:   want{action: ActionAlert, outcomes: []Action{ActionAlert}, capped: []string{""}, signals: 1, suppressed: 1},
		},
		{
			name: "suppression needs every field to match",
			dets: []Detector{firing("alpha", Critical)},
			policy: Policy{Modes: map[string]Mode{"alpha": ModeBlock},
				Suppress: []Suppression{{Agent: "billing", Host: "api.github.com"}}},
			ev:   ev("enforce"),
			want: want{action: ActionBlock, outcomes: []Action{ActionBlock}, capped: []string{""}, signals: 1},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := mustGrid(t, GridOptions{Detectors: tc.dets, Policy: tc.policy})
			d := g.Evaluate(tc.ev)
			if d.Action != tc.want.action {
				t.Errorf("Action = %q, want %q", d.Action, tc.want.action)
			}
			if len(d.Signals) != tc.want.signals || d.Suppressed != tc.want.suppressed {
				t.Errorf("signals %d suppressed %d, want %d and %d", len(d.Signals), d.Suppressed, tc.want.signals, tc.want.suppressed)
			}
			if len(d.Outcomes) != len(tc.want.outcomes) {
				t.Fatalf("outcomes = %+v, want %d", d.Outcomes, len(tc.want.outcomes))
			}
			for i, o := range d.Outcomes {
				if o.Action != tc.want.outcomes[i] || o.Capped != tc.want.capped[i] {
					t.Errorf("outcome %d = %s capped %q, want %s capped %q", i, o.Action, o.Capped, tc.want.outcomes[i], tc.want.capped[i])
				}
				if i < len(d.Signals) && o.Detector != d.Signals[i].Detector {
					t.Errorf("outcome %d is for %q, signal %d is from %q", i, o.Detector, i, d.Signals[i].Detector)
				}
			}
		})
	}
}

func TestPolicyValidation(t *testing.T) {
	dets := []Detector{firing("alpha", Warning), firing("beta", Warning)}
	cases := []struct {
		name   string
		policy Policy
	}{
		{"unknown mode", Policy{Modes: map[string]Mode{"alpha": "loud"}}},
		{"mode for a detector not in the grid", Policy{Modes: map[string]Mode{"alhpa": ModeBlock}}},
		{"rule without name", Policy{Rules: []Rule{{Detectors: []string{"alpha"}, Within: time.Minute, Action: ActionBlock}}}},
		{"rule names twice", Policy{Rules: []Rule{
			{Name: "r", Detectors: []string{"alpha"}, Within: time.Minute, Action: ActionBlock},
			{Name: "r", Detectors: []string{"beta"}, Within: time.Minute, Action: ActionBlock}}}},
		{"rule without detectors", Policy{Rules: []Rule{{Name: "r", Within: time.Minute, Action: ActionBlock}}}},
		{"rule with unknown detector", Policy{Rules: []Rule{{Name: "r", Detectors: []string{"alpha", "gamma"}, Within: time.Minute, Action: ActionBlock}}}},
		{"rule without window", Policy{Rules: []Rule{{Name: "r", Detectors: []string{"alpha"}, Action: ActionBlock}}}},
		{"rule with action none", Policy{Rules: []Rule{{Name: "r", Detectors: []string{"alpha"}, Within: time.Minute, Action: ActionNone}}}},
		{"rule with unknown action", Policy{Rules: []Rule{{Name: "r", Detectors: []string{"alpha"}, Within: time.Minute, Action: "nuke"}}}},
		{"empty suppression", Policy{Suppress: []Suppression{{}}}},
		{"suppression of unknown detector", Policy{Suppress: []Suppression{{Detector: "gamma"}}}},
		{"suppression of a wildcard over a top-level domain", Policy{Suppress: []Suppression{{Host: "*.com"}}}},
		{"suppression of a host with a port", Policy{Suppress: []Suppression{{Host: "api.stripe.com:443"}}}},
		{"unknown min severity", Policy{MinSeverity: "severe"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewGrid(GridOptions{Detectors: dets, Policy: tc.policy}); !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("NewGrid error = %v, want ErrInvalidPolicy", err)
			}
			g := mustGrid(t, GridOptions{Detectors: dets, Policy: Policy{Modes: map[string]Mode{"alpha": ModeBlock}}})
			if err := g.SetPolicy(tc.policy); !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("SetPolicy error = %v, want ErrInvalidPolicy", err)
			}
			// The old policy stays in force.
			if d := g.Evaluate(&Event{Time: t0, Agent: "a"}); d.Action != ActionBlock {
				t.Fatalf("after a refused SetPolicy, Action = %s, want block", d.Action)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeAlert, "off": ModeOff, "Shadow": ModeShadow, " block ": ModeBlock, "revoke": ModeRevoke} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseMode("enforce"); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("ParseMode(enforce) error = %v, want ErrInvalidPolicy", err)
	}
}

func TestActionOrder(t *testing.T) {
	order := []Action{ActionNone, ActionRecord, ActionAlert, ActionBlock, ActionRevoke}
	for i, a := range order {
		if a.Rank() != i {
			t.Errorf("%s.Rank() = %d, want %d", a, a.Rank(), i)
		}
		if a.Blocks() != (i >= 3) || a.Alerts() != (i >= 2) {
			t.Errorf("%s: Blocks %v Alerts %v", a, a.Blocks(), a.Alerts())
		}
	}
	if Action("nuke").Rank() != -1 || Action("nuke").Blocks() {
		t.Error("an unknown action ranks -1 and does not block")
	}
}
