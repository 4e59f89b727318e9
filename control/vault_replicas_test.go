package control_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/vault"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

// TestReplicasShareTheVault: two control planes on one store, each with
// the vault opened from that store, lease what was put through either,
// and the vault's records never reach the feed.
func TestReplicasShareTheVault(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "shared.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	k := kmstest.Local(t)
	replica := func() *fixture {
		v, err := vault.OpenStore(context.Background(), st, k, vault.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		f := newFixture(t, func(o *control.Options) { o.Store, o.Vault = st, v })
		f.store, f.vault = st, v
		return f
	}
	a, b := replica(), replica()

	a.must(operatorToken, http.MethodPost, control.PathAgents, control.AgentRequest{Agent: control.Agent{Name: "bot",
		Scope: passport.Scope{{Hosts: []string{"api.example.com"}, Credentials: []string{"example"}}}}}, nil)
	cred := b.join("bot")
	rev, err := st.Rev(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	feed := a.watch(ctx, cred.Token, rev)

	b.must(operatorToken, http.MethodPost, control.PathVaultPut, control.VaultWriteRequest{Name: "example",
		Secret: []byte("sk_live_first_secret"), Hosts: []string{"api.example.com"}, Render: "bearer"}, nil)
	record, err := st.Get(context.Background(), vault.StorePrefix+"records/example")
	if err != nil {
		t.Fatalf("the vault's record is not in the shared store: %v", err)
	}
	// The feed tells the sidecar to renew, and carries nothing of the
	// record itself: not even a bookmark at the record's revision.
	for {
		ev := nextAny(t, feed)
		if ev.Rev == record.ModRev {
			t.Fatalf("the feed delivered the vault record's revision: %+v", ev)
		}
		if ev.Type == control.EventCredentials {
			if ev.Credential != "example" {
				t.Fatalf("feed: %+v", ev)
			}
			break
		}
	}

	lease := func(f *fixture) string {
		t.Helper()
		var lr control.LeasesResponse
		f.must(cred.Token, http.MethodPost, control.PathLeases, nil, &lr)
		if len(lr.Leases) != 1 || lr.Leases[0].Name != "example" {
			t.Fatalf("leases: %+v (missing %v)", lr.Leases, lr.Missing)
		}
		return string(lr.Leases[0].Secret)
	}
	if got := lease(a); got != "sk_live_first_secret" {
		t.Fatal("the other replica leased another secret")
	}
	// a has the secret cached now; a rotation through b must still reach
	// the sidecars a serves.
	b.must(operatorToken, http.MethodPost, control.PathVaultRotate, control.VaultWriteRequest{Name: "example",
		Secret: []byte("sk_live_second_secret")}, nil)
	if got := lease(a); got != "sk_live_second_secret" {
		t.Fatal("a replica leased a secret rotated out through the other")
	}
	if got := lease(b); got != "sk_live_second_secret" {
		t.Fatal("the replica that rotated leased the old secret")
	}
	var list []*vault.Credential
	a.must(operatorToken, http.MethodGet, control.PathVaultList, nil, &list)
	if len(list) != 1 || list[0].Version != 2 {
		t.Fatalf("list through the other replica: %+v", list)
	}
}

// nextAny returns the next event, bookmarks included.
func nextAny(t *testing.T, ch <-chan control.WatchEvent) control.WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("feed ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return control.WatchEvent{}
}
