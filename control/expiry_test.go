package control_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/internal/etcdtest"
)

// expiryStores are the stores the expiry tests run on: each opens a new,
// empty one that closes when the test ends.
var expiryStores = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"bolt", func(t *testing.T) store.Store {
		s, err := store.OpenBolt(filepath.Join(t.TempDir(), "control.db"), store.BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
	{"etcd", func(t *testing.T) store.Store {
		s, err := store.OpenEtcd(t.Context(), store.EtcdOptions{Endpoints: []string{expiryEtcd(t)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

// expiryEtcd runs a one-member etcd cluster for the test and returns
// its client URL.
func expiryEtcd(t *testing.T) string { return etcdtest.Start(t, 1)[0] }

// waitGone waits until nothing is left under prefix in st; the control
// plane's collection never runs in these tests, so only the store's own
// expiry can empty it.
func waitGone(t *testing.T, st store.Store, prefix string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		kvs, _, err := st.List(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		if len(kvs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d keys under %s still there after 30s", len(kvs), prefix)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A join token the store expired cannot be spent, even by a control plane
// whose clock says it is still valid.
func TestJoinTokenExpiredByTheStore(t *testing.T) {
	for _, tc := range expiryStores {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.open(t)
			f := newFixture(t, func(o *control.Options) { o.Store = st })
			f.register("bot")
			var jt control.JoinTokenResponse
			f.must(operatorToken, http.MethodPost, control.PathTokens, control.JoinTokenRequest{Agent: "bot", TTL: control.Duration(time.Second)}, &jt)
			if kvs, _, err := st.List(t.Context(), "jointokens/"); err != nil || len(kvs) != 1 {
				t.Fatalf("join tokens stored: %d, %v; want 1", len(kvs), err)
			}
			// From here the control plane's own check would let it in.
			f.clock.Advance(-time.Hour)
			waitGone(t, st, "jointokens/")
			if st, reason := f.call("", http.MethodPost, control.PathJoin, control.JoinRequest{JoinToken: jt.Token}, nil); st != http.StatusForbidden || reason != control.ReasonJoinTokenInvalid {
				t.Fatalf("join with a token the store expired: %d %s, want 403 %s", st, reason, control.ReasonJoinTokenInvalid)
			}
		})
	}
}

// A sidecar's session goes from the store after its life, and its
// credential with it.
func TestSessionExpiredByTheStore(t *testing.T) {
	for _, tc := range expiryStores {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.open(t)
			f := newFixture(t, func(o *control.Options) { o.Store = st; o.SidecarTTL = time.Second })
			f.register("bot")
			cred := f.join("bot")
			if kvs, _, err := st.List(t.Context(), "sessions/"); err != nil || len(kvs) != 1 {
				t.Fatalf("sessions stored: %d, %v; want 1", len(kvs), err)
			}
			f.clock.Advance(-time.Hour)
			waitGone(t, st, "sessions/")
			if st, reason := f.call(cred.Token, http.MethodPost, control.PathRenew, nil, nil); st != http.StatusUnauthorized || reason != control.ReasonCredentialInvalid {
				t.Fatalf("renew with a session the store expired: %d %s, want 401 %s", st, reason, control.ReasonCredentialInvalid)
			}
			// The sidecar's record is not the store's to expire: it
			// outlives its sessions until collected.
			if kvs, _, err := st.List(t.Context(), "sidecars/"); err != nil || len(kvs) != 1 {
				t.Fatalf("sidecar records: %d, %v; want 1", len(kvs), err)
			}
		})
	}
}

// Sidecars racing to spend one expiring join token: exactly one joins, and
// its session expires like any other.
func TestExpiringJoinTokenIsSpentOnce(t *testing.T) {
	for _, tc := range expiryStores {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.open(t)
			f := newFixture(t, func(o *control.Options) { o.Store = st })
			f.register("bot")
			var jt control.JoinTokenResponse
			f.must(operatorToken, http.MethodPost, control.PathTokens, control.JoinTokenRequest{Agent: "bot"}, &jt)
			f.joinRace(jt.Token, 10)
			if kvs, _, err := st.List(t.Context(), "jointokens/"); err != nil || len(kvs) != 0 {
				t.Fatalf("join tokens left after the spend: %d, %v", len(kvs), err)
			}
		})
	}
}
