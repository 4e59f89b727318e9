package detect

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// burstAndDrift is the composite rule of the reference policy.
var burstAndDrift = Rule{Name: "burst_and_drift", Detectors: []string{"burst", "drift"}, Within: 60 * time.Second, Action: ActionRevoke}

func TestCompositeRule(t *testing.T) {
	type step struct {
		after time.Duration // since t0
		agent string
		path  string // "/burst" fires burst, "/drift" fires drift, "/both" fires both
		mode  string
		want  Action
		rule  bool // a composite outcome is expected
	}
	cases := []struct {
		name     string
		suppress []Suppression
		gate     bool
		min      Severity
		steps    []step
	}{
		{
			name: "both within the window revoke on the completing request",
			steps: []step{
				{0, "a", "/burst", "", ActionAlert, false},
				{59 * time.Second, "a", "/drift", "", ActionRevoke, true},
			},
		},
		{
			name: "exactly at the window still counts",
			steps: []step{
				{0, "a", "/drift", "", ActionAlert, false},
				{60 * time.Second, "a", "/burst", "", ActionRevoke, true},
			},
		},
		{
			name: "outside the window does not",
			steps: []step{
				{0, "a", "/burst", "", ActionAlert, false},
				{61 * time.Second, "a", "/drift", "", ActionAlert, false},
			},
		},
		{
			name:  "both on one request",
			steps: []step{{0, "a", "/both", "", ActionRevoke, true}},
		},
		{
			name: "other agents do not combine",
			steps: []step{
				{0, "a", "/burst", "", ActionAlert, false},
				{time.Second, "b", "/drift", "", ActionAlert, false},
			},
		},
		{
			name: "a quiet request after both fired does not repeat the rule",
			steps: []step{
				{0, "a", "/both", "", ActionRevoke, true},
				{time.Second, "a", "/quiet", "", ActionNone, false},
			},
		},
		{
			name: "the old firing is refreshed by a new one",
			steps: []step{
				{0, "a", "/burst", "", ActionAlert, false},
				{50 * time.Second, "a", "/burst", "", ActionAlert, false},
				{100 * time.Second, "a", "/drift", "", ActionRevoke, true},
			},
		},
		{
			name: "passport mode alert caps the rule",
			steps: []step{
				{0, "a", "/burst", "alert", ActionAlert, false},
				{time.Second, "a", "/drift", "alert", ActionAlert, true},
			},
		},
		{
			name: "rollout gate caps the rule",
			gate: true,
			steps: []step{
				{0, "a", "/burst", "", ActionAlert, false},
				{time.Second, "a", "/drift", "", ActionAlert, true},
			},
		},
		{
			name:     "rule suppressed by name",
			suppress: []Suppression{{Rule: "burst_and_drift"}},
			steps: []step{
				{0, "a", "/burst", "", ActionAlert, false},
				{time.Second, "a", "/drift", "", ActionAlert, false},
			},
		},
		{
			name:     "rule suppressed by agent",
			suppress: []Suppression{{Agent: "a", Rule: "burst_and_drift"}},
			steps: []step{
				{0, "a", "/both", "", ActionAlert, false},
				{0, "b", "/both", "", ActionRevoke, true},
			},
		},
		{
			name:     "a suppressed signal does not feed the rule",
			suppress: []Suppression{{Detector: "drift", Host: "api.example.com"}},
			steps: []step{
				{0, "a", "/burst", "", ActionAlert, false},
				{time.Second, "a", "/drift", "", ActionNone, false},
			},
		},
		{
			name: "signals below min severity do not feed the rule",
			min:  Critical, // drift fires warnings in this test
			steps: []step{
				{0, "a", "/burst", "", ActionAlert, false},
				{time.Second, "a", "/drift", "", ActionRecord, false},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := mustGrid(t, GridOptions{
				Detectors: []Detector{firing("burst", Critical, "/burst", "/both"), firing("drift", Warning, "/drift", "/both")},
				Policy:    Policy{Rules: []Rule{burstAndDrift}, Suppress: tc.suppress, AlertOnly: tc.gate, MinSeverity: tc.min},
			})
			for i, s := range tc.steps {
				d := g.Evaluate(&Event{Time: t0.Add(s.after), Agent: s.agent, Mode: s.mode, Host: "api.example.com", Path: s.path})
				if d.Action != s.want {
					t.Errorf("step %d: Action = %s, want %s (%+v)", i, d.Action, s.want, d.Outcomes)
				}
				gotRule := false
				for _, o := range d.Outcomes {
					if o.Composite {
						gotRule = true
						if o.Rule != "burst_and_drift" || o.Mode != ModeRevoke {
							t.Errorf("step %d: composite outcome %+v", i, o)
						}
					}
				}
				if gotRule != s.rule {
					t.Errorf("step %d: composite outcome present = %v, want %v", i, gotRule, s.rule)
				}
			}
		})
	}
}

func TestRuleMemoryForgetsIdleAgents(t *testing.T) {
	now := t0
	g := mustGrid(t, GridOptions{
		Detectors: []Detector{firing("burst", Critical, "/burst"), firing("drift", Warning, "/drift")},
		Policy:    Policy{Rules: []Rule{burstAndDrift}},
	})
	for i := range 100 {
		g.Evaluate(&Event{Time: now, Agent: fmt.Sprintf("agent-%d", i), Path: "/burst"})
	}
	if n := g.trackedAgents(); n != 100 {
		t.Fatalf("tracked agents = %d, want 100", n)
	}
	// Past the longest window, the next evaluation sweeps them away and
	// keeps only the one active now.
	g.Evaluate(&Event{Time: now.Add(2 * time.Minute), Agent: "late", Path: "/burst"})
	if n := g.trackedAgents(); n != 1 {
		t.Fatalf("tracked agents after idle window = %d, want 1", n)
	}
}

func TestEvaluateFillsTime(t *testing.T) {
	var seen time.Time
	det := staticDetector{name: "clock", fn: func(ev *Event) []Signal { seen = ev.Time; return nil }}
	g := mustGrid(t, GridOptions{Detectors: []Detector{det}, Now: func() time.Time { return t0 }})
	ev := &Event{Agent: "a"}
	if d := g.Evaluate(ev); d.Action != ActionNone || len(d.Signals) != 0 {
		t.Fatalf("clean event: %+v", d)
	}
	if !seen.Equal(t0) || !ev.Time.Equal(t0) {
		t.Fatalf("detector saw %v, event has %v, want %v", seen, ev.Time, t0)
	}
}

func TestPanickingDetectorFailsClosed(t *testing.T) {
	boom := staticDetector{name: "boom", fn: func(*Event) []Signal { panic("index out of range") }}
	g := mustGrid(t, GridOptions{Detectors: []Detector{boom, firing("alpha", Info)}, Policy: Policy{Modes: map[string]Mode{"boom": ModeBlock}}})
	d := g.Evaluate(&Event{Time: t0, Agent: "a"})
	if d.Action != ActionBlock || len(d.Signals) != 2 {
		t.Fatalf("decision = %+v, want block with 2 signals", d)
	}
	if s := d.Signals[0]; s.Detector != "boom" || s.Severity != Critical || s.Rule != "detector_failure" {
		t.Fatalf("panic signal = %+v", s)
	}
}

func TestNewGridRejects(t *testing.T) {
	cases := map[string][]Detector{
		"nil detector":   {nil},
		"duplicate name": {firing("alpha", Info), firing("alpha", Warning)},
		"empty name":     {firing("", Info)},
	}
	for name, dets := range cases {
		if _, err := NewGrid(GridOptions{Detectors: dets}); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: error = %v, want ErrInvalidOptions", name, err)
		}
	}
}

func TestSetPolicySwaps(t *testing.T) {
	g := mustGrid(t, GridOptions{Detectors: []Detector{firing("alpha", Warning)}})
	if d := g.Evaluate(&Event{Time: t0}); d.Action != ActionAlert {
		t.Fatalf("before: %s", d.Action)
	}
	if err := g.SetPolicy(Policy{Modes: map[string]Mode{"alpha": ModeBlock}}); err != nil {
		t.Fatal(err)
	}
	if d := g.Evaluate(&Event{Time: t0}); d.Action != ActionBlock {
		t.Fatalf("after: %s", d.Action)
	}
	if got := g.Policy().Modes["alpha"]; got != ModeBlock {
		t.Fatalf("Policy().Modes = %v", g.Policy().Modes)
	}
	if got := strings.Join(g.Detectors(), ","); got != "alpha" {
		t.Fatalf("Detectors() = %s", got)
	}
}

// Many goroutines evaluate while the policy is swapped under them; run
// with -race. Every decision is one of the two policies' answers.
func TestGridConcurrent(t *testing.T) {
	burst := mustBurst(t, BurstOptions{})
	drift := mustDrift(t, DriftOptions{MinEvents: 10, MinAge: time.Minute})
	g := mustGrid(t, GridOptions{
		Detectors: []Detector{burst, drift, firing("alpha", Warning, "/alpha")},
		Policy:    Policy{Rules: []Rule{{Name: "r", Detectors: []string{"alpha", BurstName}, Within: time.Minute, Action: ActionBlock}}},
	})
	policies := []Policy{
		{Modes: map[string]Mode{"alpha": ModeBlock}},
		{Modes: map[string]Mode{"alpha": ModeAlert}, AlertOnly: true},
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				ev := &Event{Time: t0.Add(time.Duration(i) * time.Second), Direction: Request, Agent: fmt.Sprintf("agent-%d", w%3),
					Host: fmt.Sprintf("h%d.example.com", i%5), Method: "GET", Path: "/alpha", Credentials: []string{"stripe"}}
				d := g.Evaluate(ev)
				if d.Action != ActionBlock && d.Action != ActionAlert {
					errs <- fmt.Errorf("worker %d event %d: action %s", w, i, d.Action)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			if err := g.SetPolicy(policies[i%2]); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkGridNoBody is the grid on a request without a body: the
// credential_burst and scope_drift detectors on learned state, and a
// do-nothing detector standing in for the body scanners.
func BenchmarkGridNoBody(b *testing.B) {
	burst := mustBurst(b, BurstOptions{})
	drift := mustDrift(b, DriftOptions{MinEvents: 10, MinAge: time.Hour})
	g := mustGrid(b, GridOptions{
		Detectors: []Detector{burst, drift, staticDetector{name: "prompt_injection"}, staticDetector{name: "credential_exfiltration"}},
		Policy:    Policy{Rules: []Rule{{Name: "r", Detectors: []string{BurstName, DriftName}, Within: time.Minute, Action: ActionRevoke}}},
	})
	const agents = 100
	paths := []string{"/v1/charges", "/v1/customers/cus_9s6XKzkNRiz8i3", "/v1/payment_intents/pi_3MtwBwLkdIwHu7ix28a3tqPa/confirm"}
	// Two hours of learning for every agent, one request every 30 s.
	now := t0
	for i := range agents * 240 {
		now = t0.Add(time.Duration(i) * 30 * time.Second / agents)
		g.Evaluate(&Event{Time: now, Direction: Request, Agent: fmt.Sprintf("agent-%d", i%agents), Mode: "enforce",
			Host: "api.stripe.com", Method: "POST", Path: paths[i%len(paths)], Credentials: []string{"stripe"}})
	}
	evs := make([]Event, agents)
	for i := range evs {
		evs[i] = Event{Direction: Request, Agent: fmt.Sprintf("agent-%d", i), Mode: "enforce", Host: "api.stripe.com",
			Method: "POST", Path: paths[i%len(paths)], Credentials: []string{"stripe"}}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ev := evs[i%agents]
		now = now.Add(30 * time.Second / agents)
		ev.Time = now
		if d := g.Evaluate(&ev); d.Action != ActionNone {
			b.Fatalf("steady traffic fired: %+v", d)
		}
		i++
	}
}
