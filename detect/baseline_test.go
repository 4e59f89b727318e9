package detect

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func mustStore(t *testing.T, path string) *Store {
	t.Helper()
	st, err := OpenStore(path, StoreOptions{Timeout: 100 * time.Millisecond, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Learn, save, reopen in a new detector: the baseline is there and the
// burst fires at the same request as it would have without the restart.
func TestStoreBurstSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "detect.db")
	b1 := mustBurst(t, BurstOptions{})
	start := learnBaseline(t, mustGrid(t, GridOptions{Detectors: []Detector{b1}}), "billing-agent", "stripe", 3*time.Hour)
	st := mustStore(t, path)
	if err := st.Save(b1); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := st.Save(b1); !errors.Is(err, ErrStoreClosed) {
		t.Fatalf("Save after Close: %v, want ErrStoreClosed", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode: %v, %v", fi, err)
	}

	b2 := mustBurst(t, BurstOptions{})
	if err := mustStore(t, path).Load(b2); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if base, ok := b2.Baseline("billing-agent", "stripe"); !ok || base != 10 {
		t.Fatalf("restored baseline = %v, %v; want 10, usable", base, ok)
	}
	fired := -1
	for i := range 120 {
		if s := b2.Inspect(pull("billing-agent", "stripe", start.Add(time.Duration(i)*time.Second/120))); len(s) > 0 {
			fired = i
			break
		}
	}
	if fired != 40 {
		t.Fatalf("after restart the burst fired at request %d, want 40", fired)
	}
}

func TestStoreDriftSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "detect.db")
	d1 := mustDrift(t, DriftOptions{})
	at := learnProfile(t, d1, "billing")
	b1 := mustBurst(t, BurstOptions{})
	st := mustStore(t, path)
	if err := st.Save(d1, b1); err != nil {
		t.Fatal(err)
	}
	st.Close()

	d2 := mustDrift(t, DriftOptions{})
	if err := mustStore(t, path).Load(d2); err != nil {
		t.Fatal(err)
	}
	if !d2.Learned("billing", at) {
		t.Fatal("restored profile is not past its learning period")
	}
	if s := d2.Inspect(req("billing", "GET", "api.stripe.com", "/v1/customers/cus_12345678QwEr", at)); len(s) != 0 {
		t.Fatalf("a known request fired after restart: %+v", s)
	}
	if s := d2.Inspect(req("billing", "DELETE", "api.stripe.com", "/v1/charges", at)); len(s) != 1 || s[0].Rule != "new_method" {
		t.Fatalf("a new method after restart: %+v", s)
	}
	// Snapshots are stable: what was loaded marshals as it was saved.
	a, _ := d1.MarshalState()
	d3 := mustDrift(t, DriftOptions{})
	if err := d3.UnmarshalState(a); err != nil {
		t.Fatal(err)
	}
	if b, _ := d3.MarshalState(); string(a) != string(b) {
		t.Fatalf("round trip changed the state:\n%s\n%s", a, b)
	}
}

func TestStoreLoadNothingSaved(t *testing.T) {
	b := mustBurst(t, BurstOptions{})
	if err := mustStore(t, filepath.Join(t.TempDir(), "detect.db")).Load(b); err != nil {
		t.Fatalf("Load of an empty store: %v", err)
	}
	if b.keys.len() != 0 {
		t.Fatal("state appeared from nowhere")
	}
}

func TestStoreRejectsMismatchedState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "detect.db")
	b48 := mustBurst(t, BurstOptions{})
	b48.Inspect(pull("a", "stripe", t0))
	st := mustStore(t, path)
	if err := st.Save(b48); err != nil {
		t.Fatal(err)
	}
	b24 := mustBurst(t, BurstOptions{LearningWindow: 24 * time.Hour})
	b24.Inspect(pull("kept", "stripe", t0))
	if err := st.Load(b24); !errors.Is(err, ErrBadState) {
		t.Fatalf("Load with another learning window: %v, want ErrBadState", err)
	}
	if _, ok := b24.keys.get("kept\x00stripe"); !ok {
		t.Fatal("a refused load changed the detector's state")
	}
	for name, data := range map[string]string{
		"not json":        "{",
		"unknown version": `{"v":2}`,
		"short ring":      `{"v":1,"learning_window":172800000000000,"short_window":60000000000,"keys":[{"credential":"x","long":[1]}]}`,
	} {
		if err := b48.UnmarshalState([]byte(data)); !errors.Is(err, ErrBadState) {
			t.Errorf("burst %s: %v, want ErrBadState", name, err)
		}
	}
	d := mustDrift(t, DriftOptions{})
	for _, data := range []string{"[", `{"v":9}`} {
		if err := d.UnmarshalState([]byte(data)); !errors.Is(err, ErrBadState) {
			t.Errorf("drift %q: %v, want ErrBadState", data, err)
		}
	}
}

func TestOpenStoreRefusesOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("records")); return err }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := OpenStore(path, StoreOptions{}); !errors.Is(err, ErrNotStore) {
		t.Fatalf("OpenStore(audit log) = %v, want ErrNotStore", err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.db")
	if err := os.WriteFile(garbage, []byte("not a database at all, not at all, not at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(garbage, StoreOptions{}); err == nil {
		t.Fatal("OpenStore of garbage succeeded")
	}
}

// A second opener waits at most Timeout for the lock, then says so.
func TestOpenStoreLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "detect.db")
	mustStore(t, path)
	_, err := OpenStore(path, StoreOptions{Timeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrStoreLocked) {
		t.Fatalf("second OpenStore = %v, want ErrStoreLocked", err)
	}
}

func TestLRU(t *testing.T) {
	l := newLRU[int](3)
	for i, k := range []string{"a", "b", "c"} {
		l.put(k, i)
	}
	l.get("a")    // a is now the most recent
	l.put("d", 3) // evicts b
	if _, ok := l.get("b"); ok {
		t.Fatal("b not evicted")
	}
	var order []string
	l.eachOldestFirst(func(k string, _ int) { order = append(order, k) })
	if got := order; len(got) != 3 || got[0] != "c" || got[1] != "a" || got[2] != "d" {
		t.Fatalf("order = %v, want [c a d]", got)
	}
	l.delete("a")
	if k, _, _ := l.oldest(); k != "c" || l.len() != 2 {
		t.Fatalf("oldest = %s, len %d", k, l.len())
	}
}
