package control_test

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/config"
	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/client"
)

// modesOf is the detector → mode of the overrides in ad.
func modesOf(ad control.AgentDetectors) map[string]string {
	out := map[string]string{}
	for _, d := range ad.Detectors {
		if d.Override {
			out[d.Detector] = d.Mode
		}
	}
	return out
}

func stateOf(t *testing.T, ad control.AgentDetectors, detector string) control.DetectorState {
	t.Helper()
	for _, d := range ad.Detectors {
		if d.Detector == detector {
			return d
		}
	}
	t.Fatalf("no %s in %+v", detector, ad)
	return control.DetectorState{}
}

func TestDetectorModesAPI(t *testing.T) {
	f := newFixture(t, nil)
	f.register("bot")
	f.register("other")
	var ag control.Agent
	f.must(operatorToken, http.MethodGet, control.PathAgents+"/bot", nil, &ag)

	var ad control.AgentDetectors
	f.must(operatorToken, http.MethodGet, control.DetectorsPath("bot"), nil, &ad)
	var names []string
	for _, d := range ad.Detectors {
		names = append(names, d.Detector)
		if d.Mode != control.ModeDefault || d.Override || !d.Since.Equal(ag.Created) || d.GateMet || d.By != "" {
			t.Errorf("never set: %+v, want default since the agent's registration %s", d, ag.Created)
		}
	}
	if !slices.Equal(names, config.Detectors) || ad.Agent != "bot" || time.Duration(ad.Gate) != control.DefaultDetectorGate {
		t.Fatalf("detectors of a new agent: %+v", ad)
	}

	before := f.clock.Now()
	f.must(operatorToken, http.MethodPost, control.DetectorsPath("bot"), control.DetectorModeRequest{Detector: "credential_burst", Mode: "Block", Reason: "burst seen"}, &ad)
	got := stateOf(t, ad, "credential_burst")
	if got.Mode != "block" || !got.Override || got.By != "operator" || got.Reason != "burst seen" || got.Since.Before(before.Add(-time.Second)) || got.GateMet {
		t.Fatalf("after setting block: %+v", got)
	}
	if m := modesOf(ad); !maps.Equal(m, map[string]string{"credential_burst": "block"}) {
		t.Fatalf("overrides %v", m)
	}
	recs := f.audit.actions(control.ActionDetectorModeChanged)
	if len(recs) != 1 || recs[0].AgentID != "bot" || recs[0].Detector != "credential_burst" ||
		recs[0].Detail != "mode block (was default) by operator: burst seen" {
		t.Fatalf("audit of the change: %+v", recs)
	}

	// The same mode again changes nothing: no record, the same since.
	f.must(operatorToken, http.MethodPost, control.DetectorsPath("bot"), control.DetectorModeRequest{Detector: "credential_burst", Mode: "block", Reason: "again"}, &ad)
	if again := stateOf(t, ad, "credential_burst"); !again.Since.Equal(got.Since) || again.Reason != "burst seen" || len(f.audit.actions(control.ActionDetectorModeChanged)) != 1 {
		t.Fatalf("setting the same mode: %+v", again)
	}
	// The other agent is untouched.
	f.must(operatorToken, http.MethodGet, control.DetectorsPath("other"), nil, &ad)
	if m := modesOf(ad); len(m) != 0 {
		t.Fatalf("another agent's overrides: %v", m)
	}

	// Default (or empty) removes the override; when it was removed stays.
	removedAt := f.clock.Now()
	f.must(operatorToken, http.MethodPost, control.DetectorsPath("bot"), control.DetectorModeRequest{Detector: "credential_burst", Mode: ""}, &ad)
	if d := stateOf(t, ad, "credential_burst"); d.Override || d.Mode != control.ModeDefault || d.Since.Before(removedAt.Add(-time.Second)) {
		t.Fatalf("after removing: %+v", d)
	}
	if recs := f.audit.actions(control.ActionDetectorModeChanged); len(recs) != 2 || !strings.HasPrefix(recs[1].Detail, "mode default (was block)") {
		t.Fatalf("audit of the removal: %+v", recs)
	}

	// A sidecar reads its own agent's modes, and only those; it sets none.
	cred := f.join("bot")
	f.must(cred.Token, http.MethodGet, control.DetectorsPath("bot"), nil, &ad)
	for name, tc := range map[string]struct {
		token, method, agent string
		body                 any
		status               int
		reason               string
	}{
		"an unknown detector":        {operatorToken, http.MethodPost, "bot", control.DetectorModeRequest{Detector: "burst", Mode: "block"}, 400, control.ReasonBadRequest},
		"an unknown mode":            {operatorToken, http.MethodPost, "bot", control.DetectorModeRequest{Detector: "credential_burst", Mode: "enforce"}, 400, control.ReasonBadRequest},
		"an unknown field":           {operatorToken, http.MethodPost, "bot", map[string]string{"detector": "credential_burst", "mode": "block", "agent": "x"}, 400, control.ReasonBadRequest},
		"a reason too long":          {operatorToken, http.MethodPost, "bot", control.DetectorModeRequest{Detector: "credential_burst", Mode: "block", Reason: strings.Repeat("x", 2000)}, 400, control.ReasonBadRequest},
		"an unknown agent":           {operatorToken, http.MethodPost, "nobody", control.DetectorModeRequest{Detector: "credential_burst", Mode: "block"}, 404, control.ReasonAgentUnknown},
		"reading an unknown agent":   {operatorToken, http.MethodGet, "nobody", nil, 404, control.ReasonAgentUnknown},
		"a sidecar setting a mode":   {cred.Token, http.MethodPost, "bot", control.DetectorModeRequest{Detector: "credential_burst", Mode: "off"}, 403, control.ReasonUnauthorized},
		"a sidecar reading another":  {cred.Token, http.MethodGet, "other", nil, 403, control.ReasonUnauthorized},
		"no token":                   {"", http.MethodGet, "bot", nil, 401, control.ReasonUnauthorized},
		"a wrong token":              {"not-the-operator-token", http.MethodPost, "bot", control.DetectorModeRequest{Detector: "credential_burst", Mode: "off"}, 401, control.ReasonUnauthorized},
		"an unknown agent, detector": {operatorToken, http.MethodPost, "nobody", control.DetectorModeRequest{Detector: "nope", Mode: "block"}, 400, control.ReasonBadRequest},
	} {
		if st, reason := f.call(tc.token, tc.method, control.DetectorsPath(tc.agent), tc.body, nil); st != tc.status || reason != tc.reason {
			t.Errorf("%s: %d %s, want %d %s", name, st, reason, tc.status, tc.reason)
		}
	}
	if n := len(f.audit.actions(control.ActionDetectorModeChanged)); n != 2 {
		t.Errorf("refusals changed modes: %d changes recorded", n)
	}
}

// The gate: a detector in alert is ready for block once it has been
// clean (no shipped signal) for the gate since it was set to alert.
func TestDetectorGate(t *testing.T) {
	tune, fp := withFleet(t, false)
	f := newFixture(t, func(o *control.Options) {
		tune(o)
		o.DetectorGate = time.Hour
	})
	fp.srv = f.srv
	f.register("alice")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- f.srv.Run(ctx, time.Hour) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Error(err)
		}
	}()

	ad, err := f.srv.SetDetectorMode(ctx, "alice", "credential_burst", "alert", "test", "start in alert")
	if err != nil {
		t.Fatal(err)
	}
	if d := stateOf(t, ad, "credential_burst"); d.GateMet || d.By != "test" || time.Duration(ad.Gate) != time.Hour {
		t.Fatalf("just set to alert: %+v", d)
	}
	f.clock.Advance(2 * time.Hour)
	if ad, err = f.srv.DetectorModes(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if d := stateOf(t, ad, "credential_burst"); !d.GateMet || time.Duration(d.CleanFor) < 2*time.Hour {
		t.Fatalf("alert and clean for 2h of a 1h gate: %+v", d)
	}
	if d := stateOf(t, ad, "scope_drift"); d.GateMet {
		t.Fatalf("no override is never ready: %+v", d)
	}

	// The agent's sidecar ships a signal ten minutes old: clean for ten
	// minutes only. Signals of another agent it served, or of a detector
	// that is not a built-in, do not count.
	s := f.startSidecar(ctx, f.ts.URL, "alice", "", nil)
	a := newSidecarAudit(t)
	fired := f.clock.Now().Add(-10 * time.Minute).Truncate(time.Millisecond).UTC()
	for _, r := range []audit.Record{
		{AgentID: "alice", Action: audit.ActionDetectorFired, Detector: "credential_burst", TimestampMS: fired.Add(-time.Minute).UnixMilli()},
		{AgentID: "alice", Action: audit.ActionDetectorFired, Detector: "credential_burst", TimestampMS: fired.UnixMilli()},
		{AgentID: "bob", Action: audit.ActionDetectorFired, Detector: "scope_drift", TimestampMS: fired.UnixMilli()},
		{AgentID: "alice", Action: audit.ActionDetectorFired, Detector: "audit_integrity", TimestampMS: fired.UnixMilli()},
		{AgentID: "alice", Action: audit.ActionCredentialAccess, Detector: "scope_drift", TimestampMS: fired.UnixMilli()},
	} {
		if _, err := a.log.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	sh := ship(t, ctx, s, a)
	eventually(t, "the signals shipped", func() bool { return sh.Status().Acked == 5 })
	if ad, err = f.srv.DetectorModes(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	d := stateOf(t, ad, "credential_burst")
	if !d.LastSignal.Equal(fired) || d.GateMet || time.Duration(d.CleanFor) < 10*time.Minute || time.Duration(d.CleanFor) > 11*time.Minute {
		t.Fatalf("after a signal 10 minutes ago: %+v, want last signal %s", d, fired)
	}
	for _, name := range []string{"scope_drift", "prompt_injection", "credential_exfiltration"} {
		if d := stateOf(t, ad, name); !d.LastSignal.IsZero() {
			t.Errorf("%s: a signal counted that is not alice's %s: %+v", name, name, d)
		}
	}

	// Written to the store (outside the feed), so that a restarted
	// control plane, or another replica, knows it.
	eventually(t, "the signals in the store", func() bool {
		kv, err := f.store.Get(ctx, "signals/alice")
		return err == nil && strings.Contains(string(kv.Value), "credential_burst")
	})
	if _, err := f.store.Get(ctx, "signals/bob"); err == nil {
		t.Error("signals of an agent the sidecar is not were stored")
	}
	restarted, err := control.New(control.Options{Store: f.store, Keys: f.keys, Token: operatorToken, Now: f.clock.Now, DetectorGate: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if ad, err = restarted.DetectorModes(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if d := stateOf(t, ad, "credential_burst"); !d.LastSignal.Equal(fired) || d.Mode != "alert" || d.By != "test" {
		t.Fatalf("after a restart: %+v", d)
	}
}

// recordedModes keeps what OnDetectorModes was handed, as a sidecar's
// grid would apply it.
type recordedModes struct {
	mu    sync.Mutex
	calls []map[string]string
}

func (r *recordedModes) set(agent string, modes map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, maps.Clone(modes))
}

func (r *recordedModes) since(n int) []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls[n:])
}

func (r *recordedModes) last() (map[string]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) == 0 {
		return nil, 0
	}
	return r.calls[len(r.calls)-1], len(r.calls)
}

// A sidecar is handed its agent's modes at start and each change from
// the feed, never another agent's; operators watching see every agent's.
func TestDetectorModesReachTheAgentsSidecars(t *testing.T) {
	f := newFixture(t, nil)
	f.register("alice")
	f.register("bob")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := f.srv.SetDetectorMode(ctx, "alice", "prompt_injection", "block", "test", "set before the sidecar starts"); err != nil {
		t.Fatal(err)
	}
	rev, err := f.store.Rev(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ops := f.watch(ctx, operatorToken, rev)

	var got recordedModes
	dir := t.TempDir()
	sctx, stop := context.WithCancel(ctx)
	first := f.startSidecar(sctx, f.ts.URL, "alice", dir, func(o *client.Options) { o.OnDetectorModes = got.set })
	if m, n := got.last(); n != 1 || !maps.Equal(m, map[string]string{"prompt_injection": "block"}) {
		t.Fatalf("at start: %v (%d calls)", m, n)
	}

	want := func(what string, modes map[string]string) {
		t.Helper()
		eventually(t, what, func() bool {
			m, _ := got.last()
			return maps.Equal(m, modes)
		})
	}
	if _, err := f.srv.SetDetectorMode(ctx, "alice", "credential_burst", "revoke", "test", ""); err != nil {
		t.Fatal(err)
	}
	want("credential_burst revoke", map[string]string{"prompt_injection": "block", "credential_burst": "revoke"})
	if ev := next(t, ops); ev.Type != control.EventDetectors || ev.Agent != "alice" || ev.Detectors["credential_burst"] != "revoke" {
		t.Fatalf("operator feed: %+v", ev)
	}

	_, before := got.last()
	if _, err := f.srv.SetDetectorMode(ctx, "bob", "credential_burst", "off", "test", ""); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ops); ev.Type != control.EventDetectors || ev.Agent != "bob" || ev.Detectors["credential_burst"] != "off" {
		t.Fatalf("operator feed of bob's change: %+v", ev)
	}
	for _, name := range []string{"prompt_injection", "credential_burst"} {
		if _, err := f.srv.SetDetectorMode(ctx, "alice", name, control.ModeDefault, "test", ""); err != nil {
			t.Fatal(err)
		}
	}
	want("every override removed", map[string]string{})
	for _, m := range got.since(before) {
		if m["credential_burst"] == "off" {
			t.Fatalf("alice's sidecar was handed bob's modes: %v", m)
		}
	}

	// A delete of the key (by hand) tells the sidecar too.
	if _, err := f.srv.SetDetectorMode(ctx, "alice", "scope_drift", "shadow", "test", ""); err != nil {
		t.Fatal(err)
	}
	want("scope_drift shadow", map[string]string{"scope_drift": "shadow"})
	if _, err := f.store.Delete(ctx, "feed/detectors/alice"); err != nil {
		t.Fatal(err)
	}
	want("the key deleted", map[string]string{})

	// Changed while the sidecar is away: it has them when it starts again.
	stop()
	first.revs.Close()
	if _, err := f.srv.SetDetectorMode(ctx, "alice", "credential_exfiltration", "revoke", "test", ""); err != nil {
		t.Fatal(err)
	}
	var again recordedModes
	f.startSidecar(ctx, f.ts.URL, "alice", dir, func(o *client.Options) { o.OnDetectorModes = again.set })
	if m, _ := again.last(); !maps.Equal(m, map[string]string{"credential_exfiltration": "revoke"}) {
		t.Fatalf("at restart: %v", m)
	}

	// A sidecar's own feed carries no other agent's modes.
	cred := f.join("alice")
	rev, err = f.store.Rev(ctx)
	if err != nil {
		t.Fatal(err)
	}
	own := f.watch(ctx, cred.Token, rev)
	if _, err := f.srv.SetDetectorMode(ctx, "bob", "scope_drift", "block", "test", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.SetDetectorMode(ctx, "alice", "scope_drift", "block", "test", ""); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, own); ev.Type != control.EventDetectors || ev.Agent != "alice" {
		t.Fatalf("alice's feed: %+v, want alice's change first and bob's not at all", ev)
	}
}

func TestDetectorModesJSON(t *testing.T) {
	b, err := json.Marshal(control.DetectorState{Detector: "credential_burst", Mode: "alert", CleanFor: control.Duration(31 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); !strings.Contains(s, `"clean_for":"31h0m0s"`) || strings.Contains(s, "last_signal") {
		t.Fatalf("%s", s)
	}
}
