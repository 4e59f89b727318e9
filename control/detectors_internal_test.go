package control

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/internal/testclock"
	"github.com/stackctl/stack/passport"
)

// storedSignals appends detector_fired records of agent to a real audit
// log and returns their stored values, as a sidecar ships them.
func storedSignals(t *testing.T, agent string, fired map[string]time.Time) [][]byte {
	t.Helper()
	l, err := audit.Open(filepath.Join(t.TempDir(), "audit.db"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for d, at := range fired {
		if _, err := l.Append(ctx, audit.Record{AgentID: agent, Action: audit.ActionDetectorFired, Detector: d, TimestampMS: at.UnixMilli()}); err != nil {
			t.Fatal(err)
		}
	}
	var out [][]byte
	if _, err := l.ScanStored(ctx, 0, func(_ uint64, v []byte) error {
		out = append(out, append([]byte(nil), v...))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Signals are in memory at once and in the store at most once a minute
// per agent, merged with what the store holds.
func TestSignalsWrittenAtMostOnceAMinute(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "control.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, err := passport.GenerateKeySet(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	clock := testclock.Start()
	s, err := New(Options{Store: st, Keys: keys, Token: "0123456789abcdef0123456789abcdef-operator", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stored := func() (map[string]time.Time, int64) {
		t.Helper()
		kv, err := st.Get(ctx, "signals/alice")
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]time.Time
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			t.Fatal(err)
		}
		return m, kv.ModRev
	}
	woken := func() bool {
		select {
		case <-s.signals.wake:
			return true
		default:
			return false
		}
	}

	t1 := clock.Now().Add(-time.Hour)
	s.noteSignals("alice", storedSignals(t, "alice", map[string]time.Time{"credential_burst": t1}))
	if !woken() {
		t.Fatal("the first signals of an agent did not wake the writer")
	}
	if next := s.writeSignals(ctx, false); next != signalWriteEvery {
		t.Fatalf("next write in %s, want %s", next, signalWriteEvery)
	}
	m, rev := stored()
	if !m["credential_burst"].Equal(t1) {
		t.Fatalf("stored %v, want credential_burst at %s", m, t1)
	}

	// Within the minute: in memory at once, not in the store.
	clock.Advance(10 * time.Second)
	t2 := clock.Now().Add(-time.Second)
	s.noteSignals("alice", storedSignals(t, "alice", map[string]time.Time{"credential_burst": t2}))
	if woken() {
		t.Fatal("signals within the minute woke the writer")
	}
	if next := s.writeSignals(ctx, false); next != 50*time.Second {
		t.Fatalf("next write in %s, want 50s", next)
	}
	if _, r := stored(); r != rev {
		t.Fatal("written twice within a minute")
	}
	last, err := s.lastSignals(ctx, "alice")
	if err != nil || !last["credential_burst"].Equal(t2) {
		t.Fatalf("in memory: %v %v, want %s", last, err, t2)
	}

	// Another replica wrote a later signal of another detector meanwhile:
	// the write keeps it.
	other := clock.Now()
	b, _ := json.Marshal(map[string]time.Time{"credential_burst": t1, "scope_drift": other})
	if _, err := st.Put(ctx, "signals/alice", b); err != nil {
		t.Fatal(err)
	}
	clock.Advance(50 * time.Second)
	s.writeSignals(ctx, false)
	m, _ = stored()
	if !m["credential_burst"].Equal(t2) || !m["scope_drift"].Equal(other) {
		t.Fatalf("after the minute: %v, want credential_burst %s and scope_drift %s", m, t2, other)
	}

	// When the control plane stops, what is left is written at once; a
	// sidecar's clock ahead of ours counts as now.
	ahead := clock.Now().Add(time.Hour)
	s.noteSignals("alice", storedSignals(t, "alice", map[string]time.Time{"prompt_injection": ahead}))
	s.writeSignals(ctx, true)
	if m, _ = stored(); !m["prompt_injection"].Equal(clock.Now().UTC()) {
		t.Fatalf("at stop: %v, want prompt_injection at now (%s)", m, clock.Now())
	}
}
