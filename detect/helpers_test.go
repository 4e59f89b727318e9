package detect

import (
	"testing"
	"time"
)

// t0 is a start time aligned to the learning buckets (a multiple of 10
// minutes since the epoch), so expected baselines are exact.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// staticDetector is a real Detector whose signals are given by a function
// of the event; it stands in for detectors this package does not own.
type staticDetector struct {
	name string
	fn   func(ev *Event) []Signal
}

func (d staticDetector) Name() string { return d.name }
func (d staticDetector) Inspect(ev *Event) []Signal {
	if d.fn == nil {
		return nil
	}
	return d.fn(ev)
}

// firing returns a detector that raises one signal of severity sev on
// every event whose Path is in paths (every event when paths is empty).
func firing(name string, sev Severity, paths ...string) staticDetector {
	return staticDetector{name: name, fn: func(ev *Event) []Signal {
		if len(paths) > 0 && !contains(paths, ev.Path) {
			return nil
		}
		return []Signal{{Detector: name, Severity: sev, Score: 1, Rule: name + "_rule", Evidence: name + " saw " + ev.Path}}
	}}
}

func mustGrid(t testing.TB, opts GridOptions) *Grid {
	t.Helper()
	g, err := NewGrid(opts)
	if err != nil {
		t.Fatalf("NewGrid: %v", err)
	}
	return g
}

func mustBurst(t testing.TB, opts BurstOptions) *Burst {
	t.Helper()
	b, err := NewBurst(opts)
	if err != nil {
		t.Fatalf("NewBurst: %v", err)
	}
	return b
}

func mustDrift(t testing.TB, opts DriftOptions) *Drift {
	t.Helper()
	d, err := NewDrift(opts)
	if err != nil {
		t.Fatalf("NewDrift: %v", err)
	}
	return d
}

// pull is a request event of agent using credential at time at.
func pull(agent, credential string, at time.Time) *Event {
	return &Event{Time: at, Direction: Request, Agent: agent, Mode: "enforce", Host: "api.stripe.com",
		Method: "POST", Path: "/v1/charges", Credentials: []string{credential}}
}
