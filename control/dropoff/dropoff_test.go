package dropoff_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stackctl/stack/control/dropoff"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/handoff"
	"github.com/stackctl/stack/internal/etcdtest"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backends are the store's two: bbolt (embedded) and etcd (replicas).
func backends(t *testing.T) map[string]func(t *testing.T) store.Store {
	return map[string]func(t *testing.T) store.Store{
		"bbolt": func(t *testing.T) store.Store {
			s, err := store.OpenBolt(filepath.Join(t.TempDir(), "control.db"), store.BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"etcd": func(t *testing.T) store.Store {
			eps := etcdtest.Start(t, 1)
			s, err := store.OpenEtcd(context.Background(), store.EtcdOptions{Endpoints: eps})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

const sealed = "eyJhbGciOiJFQ0RILUVTK0EyNTZLVyJ9.a.b.c.d"

func TestDropOff(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := open(t)
			box := &dropoff.Box{Store: st, KMS: kmstest.Local(t)}
			m, err := box.Deposit(ctx, dropoff.Meta{From: "scraper", To: "drafter", Schema: "findings/v1", PayloadHash: "ab12"}, sealed, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.ID) != 32 || m.Size != len(sealed) || !m.Expires.After(m.Deposited) {
				t.Fatalf("deposited %+v", m)
			}
			// At rest the token is wrapped, not stored as sent.
			kvs, _, err := st.List(ctx, "handoffs/")
			if err != nil || len(kvs) != 1 || strings.Contains(string(kvs[0].Value), sealed) {
				t.Fatalf("stored: %d keys, %v, plain token stored: %v", len(kvs), err, len(kvs) == 1 && strings.Contains(string(kvs[0].Value), sealed))
			}
			if l, _ := box.List(ctx, "drafter"); len(l) != 1 || l[0].ID != m.ID {
				t.Fatalf("drafter's inbox: %+v", l)
			}
			if l, _ := box.List(ctx, "planner"); len(l) != 0 {
				t.Fatalf("planner's inbox: %+v", l)
			}
			if _, _, err := box.Take(ctx, "planner", m.ID); !errors.Is(err, dropoff.ErrNotFound) {
				t.Fatalf("another recipient's fetch: %v", err)
			}
			// Two fetches at once: exactly one gets it.
			var wg sync.WaitGroup
			var mu sync.Mutex
			got, gone := 0, 0
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, tok, err := box.Take(ctx, "drafter", m.ID)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil && tok == sealed:
						got++
					case errors.Is(err, dropoff.ErrGone):
						gone++
					default:
						t.Errorf("fetch: %q %v", tok, err)
					}
				}()
			}
			wg.Wait()
			if got != 1 || gone != 3 {
				t.Fatalf("%d fetches got it, %d were told it is gone", got, gone)
			}
			if _, _, err := box.Take(ctx, "drafter", m.ID); !errors.Is(err, dropoff.ErrGone) {
				t.Fatalf("a later fetch: %v", err)
			}
			if l, _ := box.List(ctx, "drafter"); len(l) != 0 {
				t.Fatalf("inbox after the fetch: %+v", l)
			}

			// A revoked sender's undelivered handoffs are withdrawn.
			for _, to := range []string{"drafter", "deployer"} {
				if _, err := box.Deposit(ctx, dropoff.Meta{From: "planner", To: to, Schema: "s"}, sealed, time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			keep, _ := box.Deposit(ctx, dropoff.Meta{From: "scraper", To: "drafter", Schema: "s"}, sealed, time.Hour)
			w, err := box.Withdraw(ctx, "planner")
			if err != nil || len(w) != 2 {
				t.Fatalf("withdrew %d: %v", len(w), err)
			}
			if l, _ := box.List(ctx, ""); len(l) != 1 || l[0].ID != keep.ID {
				t.Fatalf("left after withdrawing: %+v", l)
			}
		})
	}
}

func TestDropOffRefusesAndExpires(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "control.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	box := &dropoff.Box{Store: st, KMS: kmstest.Local(t), Now: func() time.Time { return now }}
	for name, tc := range map[string]struct {
		m   dropoff.Meta
		tok string
		ttl time.Duration
	}{
		"no recipient":   {dropoff.Meta{From: "a", Schema: "s"}, sealed, time.Hour},
		"no token":       {dropoff.Meta{From: "a", To: "b", Schema: "s"}, "", time.Hour},
		"ttl too long":   {dropoff.Meta{From: "a", To: "b", Schema: "s"}, sealed, handoff.MaxTTL + time.Second},
		"recipient path": {dropoff.Meta{From: "a", To: "b/c", Schema: "s"}, sealed, time.Hour},
	} {
		if _, err := box.Deposit(ctx, tc.m, tc.tok, tc.ttl); !errors.Is(err, dropoff.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	m, err := box.Deposit(ctx, dropoff.Meta{From: "a", To: "b", Schema: "s"}, sealed, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	live, err := box.Deposit(ctx, dropoff.Meta{From: "a", To: "b", Schema: "s"}, sealed, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if got, _, err := box.Take(ctx, "b", m.ID); !errors.Is(err, dropoff.ErrExpired) || got.ID != m.ID {
		t.Fatalf("an expired handoff: %+v, %v", got, err)
	}
	if l, _ := box.List(ctx, "b"); len(l) != 1 || l[0].ID != live.ID {
		t.Fatalf("listed %+v, want only the live handoff", l)
	}
	// Expire removes the expired handoff, once, and leaves the live one.
	gone, err := box.Expire(ctx)
	if err != nil || len(gone) != 1 || gone[0].ID != m.ID {
		t.Fatalf("Expire = %+v, %v; want %s", gone, err, m.ID)
	}
	if again, err := box.Expire(ctx); err != nil || len(again) != 0 {
		t.Fatalf("a second Expire = %+v, %v", again, err)
	}
	if _, _, err := box.Take(ctx, "b", m.ID); !errors.Is(err, dropoff.ErrNotFound) {
		t.Fatalf("an expired handoff after Expire: %v", err)
	}
	if _, _, err := box.Take(ctx, "b", live.ID); err != nil {
		t.Fatalf("the live handoff: %v", err)
	}
	// A token wrapped for one handoff does not unwrap as another's.
	now = time.Now()
	m, _ = box.Deposit(ctx, dropoff.Meta{From: "a", To: "b", Schema: "s"}, sealed, time.Minute)
	kv, _ := st.Get(ctx, "handoffs/b/"+m.ID)
	if _, err := st.Put(ctx, "handoffs/c/"+m.ID, kv.Value); err != nil {
		t.Fatal(err)
	}
	if _, _, err := box.Take(ctx, "c", m.ID); err == nil {
		t.Fatal("a handoff moved to another recipient's inbox was handed out")
	}
}

func TestDropOffIDsAreUsedOnce(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "control.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	box := &dropoff.Box{Store: st, KMS: kmstest.Local(t)}
	m := dropoff.Meta{ID: strings.Repeat("0a", 16), From: "a", To: "b", Schema: "s"}
	if _, err := box.Deposit(ctx, dropoff.Meta{ID: "../x", From: "a", To: "b", Schema: "s"}, sealed, time.Hour); !errors.Is(err, dropoff.ErrInvalid) {
		t.Fatalf("a bad id: %v", err)
	}
	got, err := box.Deposit(ctx, m, sealed, time.Hour)
	if err != nil || got.ID != m.ID {
		t.Fatalf("deposit with an id: %+v, %v", got, err)
	}
	if _, err := box.Deposit(ctx, m, sealed, time.Hour); !errors.Is(err, dropoff.ErrInvalid) {
		t.Fatalf("the same id while it waits: %v", err)
	}
	if _, _, err := box.Take(ctx, "b", m.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := box.Deposit(ctx, m, sealed, time.Hour); !errors.Is(err, dropoff.ErrInvalid) {
		t.Fatalf("the same id after delivery (a replay): %v", err)
	}
}
