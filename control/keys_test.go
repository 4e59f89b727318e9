package control_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/internal/etcdtest"
	"github.com/stackctl/stack/internal/testclock"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

// seeChange is how long a replica may take to see a change in etcd: far
// more than it needs, for a loaded machine.
const seeChange = 30 * time.Second

// sharedCluster is an etcd cluster and what the control-plane replicas on
// it share: the KMS that wraps the issuer keys and the clock.
type sharedCluster struct {
	t         *testing.T
	endpoints []string
	kms       passport.Wrapper
	clock     *testclock.Clock
}

func newSharedCluster(t *testing.T) *sharedCluster {
	return &sharedCluster{t: t, endpoints: etcdtest.Start(t, 3), kms: kmstest.Local(t), clock: testclock.Start()}
}

// openStore opens a client of its own on the cluster, as a replica does.
func (c *sharedCluster) openStore() store.Store {
	c.t.Helper()
	st, err := store.OpenEtcd(c.t.Context(), store.EtcdOptions{Endpoints: c.endpoints, Prefix: "/stack-test/"})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { st.Close() })
	return st
}

// localKeys is a replica's own keys file: a fresh set.
func (c *sharedCluster) localKeys() func(context.Context) (*passport.KeySet, error) {
	ks, err := passport.GenerateKeySet(c.clock.Now())
	if err != nil {
		c.t.Fatal(err)
	}
	return func(context.Context) (*passport.KeySet, error) { return ks, nil }
}

// replica is a control plane on the cluster, over real TLS on loopback,
// watching the shared keys until the test ends.
type replica struct {
	*fixture
	logs *observer.ObservedLogs
}

const activationDelay = 10 * time.Second

func (c *sharedCluster) startReplica() *replica {
	c.t.Helper()
	st := c.openStore()
	ks, rev, err := control.SharedKeys(c.t.Context(), st, c.kms, c.localKeys())
	if err != nil {
		c.t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	f := newFixture(c.t, func(o *control.Options) {
		o.Store, o.Keys, o.KeyWrapper, o.KeysRev = st, ks, c.kms, rev
		o.KeyActivationDelay = activationDelay
		o.Now = c.clock.Now
		o.Log = zap.New(core)
	})
	f.store = st
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.WatchKeys(ctx) }()
	c.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			c.t.Errorf("WatchKeys: %v", err)
		}
	})
	return &replica{fixture: f, logs: logs}
}

// jwks is the replica's JWKS as served.
func (r *replica) jwks() jose.JSONWebKeySet {
	r.t.Helper()
	var set jose.JSONWebKeySet
	r.must("", http.MethodGet, control.PathJWKS, nil, &set)
	return set
}

func kids(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

// issue has the replica sign a passport for a sidecar's credential and
// returns the token and the kid it was signed with.
func (r *replica) issue(cred control.Credential) (token, kid string) {
	r.t.Helper()
	var pr control.PassportResponse
	r.must(cred.Token, http.MethodPost, control.PathIssue, nil, &pr)
	jws, err := jose.ParseSignedCompact(pr.Passport, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		r.t.Fatal(err)
	}
	return pr.Passport, jws.Signatures[0].Protected.KeyID
}

// waitForKid waits until the replica's JWKS serves kid.
func (r *replica) waitForKid(kid string) {
	r.t.Helper()
	for deadline := time.Now().Add(seeChange); !slices.Contains(kids(r.jwks()), kid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatalf("the replica's JWKS %v still lacks %s after %s", kids(r.jwks()), kid, seeChange)
		}
	}
}

// waitForLog waits until the replica logged msg at level or above.
func (r *replica) waitForLog(msg string) {
	r.t.Helper()
	for deadline := time.Now().Add(seeChange); r.logs.FilterMessage(msg).Len() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatalf("the replica did not log %q within %s", msg, seeChange)
		}
	}
}

func TestReplicasPublishARotatedKeyBeforeEitherSignsWithIt(t *testing.T) {
	c := newSharedCluster(t)
	a, b := c.startReplica(), c.startReplica()
	oldKid, _ := a.srv.Reload(t.Context())
	if got := kids(b.jwks()); !slices.Equal(got, kids(a.jwks())) || !slices.Contains(got, oldKid) {
		t.Fatalf("replicas serve different keys: %v and %v", kids(a.jwks()), got)
	}
	a.register("bot")
	cred := b.join("bot")
	var tokens []string
	for _, r := range []*replica{a, b} {
		tok, kid := r.issue(cred)
		if kid != oldKid {
			t.Fatalf("signed with %s before any rotation, want %s", kid, oldKid)
		}
		tokens = append(tokens, tok)
	}

	var rot control.KeyRotation
	a.must(operatorToken, http.MethodPost, control.PathKeysRotate, nil, &rot)
	if rot.PreviousKID != oldKid || rot.KID == oldKid || !rot.ActiveAt.Equal(c.clock.Now().Add(activationDelay)) {
		t.Fatalf("rotation = %+v, want a new key active in %s after %s", rot, activationDelay, oldKid)
	}
	a.waitForKid(rot.KID)
	b.waitForKid(rot.KID)
	// Published everywhere, but not signing until its time.
	c.clock.Advance(activationDelay - time.Second)
	for _, r := range []*replica{a, b} {
		tok, kid := r.issue(cred)
		if kid != oldKid {
			t.Fatalf("a pending key signed: %s, want %s until %s", kid, oldKid, rot.ActiveAt)
		}
		tokens = append(tokens, tok)
	}
	c.clock.Advance(time.Second)
	for _, r := range []*replica{a, b} {
		tok, kid := r.issue(cred)
		if kid != rot.KID {
			t.Fatalf("signed with %s at activation, want %s", kid, rot.KID)
		}
		tokens = append(tokens, tok)
	}
	for name, r := range map[string]*replica{"a": a, "b": b} {
		v, err := passport.NewVerifier(passport.VerifierOptions{Keys: r.jwks(), Now: c.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		for i, tok := range tokens {
			if _, err := v.Verify(tok); err != nil {
				t.Errorf("passport %d against replica %s's JWKS: %v", i, name, err)
			}
		}
	}
}

func TestFirstReplicaImportsItsKeysAndTheOthersLoadThem(t *testing.T) {
	c := newSharedCluster(t)
	const n = 4
	var (
		wg   sync.WaitGroup
		sets [n]*passport.KeySet
		errs [n]error
	)
	for i := range n {
		st, local := c.openStore(), c.localKeys()
		wg.Go(func() { sets[i], _, errs[i] = control.SharedKeys(t.Context(), st, c.kms, local) })
	}
	wg.Wait()
	want, _ := sets[0].Current(c.clock.Now())
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		if kid, _ := sets[i].Current(c.clock.Now()); kid != want {
			t.Errorf("replica %d signs with %s, replica 0 with %s", i, kid, want)
		}
	}
}

func TestCorruptSharedKeysAreRefused(t *testing.T) {
	c := newSharedCluster(t)
	r := c.startReplica()
	before, _ := r.srv.Reload(t.Context())
	r.register("bot")
	cred := r.join("bot")

	// A running replica keeps its keys and says why.
	if _, err := r.store.Put(t.Context(), control.KeyIssuerKeys, []byte(`{"version":1,"keys":[{"kid":"x"`)); err != nil {
		t.Fatal(err)
	}
	r.waitForLog("the issuer keys in the store cannot be read; keeping the keys in force")
	if _, kid := r.issue(cred); kid != before {
		t.Fatalf("after a corrupt set the replica signs with %s, want %s", kid, before)
	}
	if _, err := r.srv.Reload(t.Context()); !errors.Is(err, passport.ErrKeyFile) {
		t.Fatalf("Reload of a corrupt set = %v, want ErrKeyFile", err)
	}
	if _, kid := r.issue(cred); kid != before {
		t.Fatalf("after a refused reload the replica signs with %s, want %s", kid, before)
	}
	if st, _ := r.call(operatorToken, http.MethodPost, control.PathKeysRotate, nil, nil); st != http.StatusInternalServerError {
		t.Errorf("rotating a corrupt set: %d, want 500", st)
	}

	// A replica starting now does not start.
	if _, _, err := control.SharedKeys(t.Context(), c.openStore(), c.kms, c.localKeys()); !errors.Is(err, passport.ErrKeyFile) {
		t.Fatalf("SharedKeys over a corrupt set = %v, want ErrKeyFile", err)
	}

	// Keys wrapped by another KMS are refused as well.
	other, err := passport.GenerateKeySet(c.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := other.Marshal(t.Context(), kmstest.Local(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Put(t.Context(), control.KeyIssuerKeys, b); err != nil {
		t.Fatal(err)
	}
	if _, _, err := control.SharedKeys(t.Context(), c.openStore(), c.kms, c.localKeys()); err == nil {
		t.Fatal("SharedKeys loaded keys wrapped by another KMS")
	}

	// The watch is still alive: a good set is served.
	good, err := passport.GenerateKeySet(c.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err = good.Marshal(t.Context(), c.kms)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Put(t.Context(), control.KeyIssuerKeys, b); err != nil {
		t.Fatal(err)
	}
	kid, _ := good.Current(c.clock.Now())
	r.waitForKid(kid)
	if _, got := r.issue(cred); got != kid {
		t.Fatalf("after a good set the replica signs with %s, want %s", got, kid)
	}
}

func TestReloadRereadsSharedKeys(t *testing.T) {
	c := newSharedCluster(t)
	st := c.openStore()
	ks, rev, err := control.SharedKeys(t.Context(), st, c.kms, c.localKeys())
	if err != nil {
		t.Fatal(err)
	}
	// No watch: only the reload can bring the change.
	f := newFixture(t, func(o *control.Options) {
		o.Store, o.Keys, o.KeyWrapper, o.KeysRev, o.Now = st, ks, c.kms, rev, c.clock.Now
	})
	stored, _, err := control.ReadSharedKeys(t.Context(), st, c.kms)
	if err != nil {
		t.Fatal(err)
	}
	newKid, err := stored.Rotate(c.clock.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := stored.Marshal(t.Context(), c.kms)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CompareAndSwap(t.Context(), control.KeyIssuerKeys, rev, b); err != nil {
		t.Fatal(err)
	}
	var out map[string]string
	f.must(operatorToken, http.MethodPost, control.PathReload, nil, &out)
	if out["current_kid"] != newKid {
		t.Fatalf("reload answered %v, want current_kid %s", out, newKid)
	}
}

func TestRotateKeysNeedsSharedKeys(t *testing.T) {
	f := newFixture(t, nil)
	if st, reason := f.call(operatorToken, http.MethodPost, control.PathKeysRotate, nil, nil); st != http.StatusNotImplemented || reason != control.ReasonUnavailable {
		t.Fatalf("rotate on a control plane with a keys file: %d %s, want 501 %s", st, reason, control.ReasonUnavailable)
	}
	f.register("bot")
	if st, _ := f.call(f.join("bot").Token, http.MethodPost, control.PathKeysRotate, nil, nil); st != http.StatusForbidden {
		t.Fatalf("a sidecar rotated the keys: %d, want 403", st)
	}
}

// countingStore counts the watches opened on a store.
type countingStore struct {
	store.Store
	watches atomic.Int64
}

func (s *countingStore) Watch(ctx context.Context, prefix string, rev int64) <-chan store.WatchResponse {
	s.watches.Add(1)
	return s.Store.Watch(ctx, prefix, rev)
}

// A key set older than the store's history (compacted since it was
// written, as etcd's auto-compaction does to a set rotated months ago) is
// watched from the store's revision after one resync, not from its own
// compacted one again and again; a rotation written later still arrives.
func TestWatchKeysAfterCompaction(t *testing.T) {
	bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "control.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	st := &countingStore{Store: bolt}
	kms, clock := kmstest.Local(t), testclock.Start()
	local, err := passport.GenerateKeySet(clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	ks, rev, err := control.SharedKeys(t.Context(), st, kms, func(context.Context) (*passport.KeySet, error) { return local, nil })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := st.Put(t.Context(), fmt.Sprintf("other/%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	now, err := st.Rev(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Compact(t.Context(), now); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *control.Options) {
		o.Store, o.Keys, o.KeyWrapper, o.KeysRev, o.Now = st, ks, kms, rev, clock.Now
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.WatchKeys(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchKeys: %v", err)
		}
	}()

	// A rotation written by another replica reaches this one.
	stored, cur, err := control.ReadSharedKeys(t.Context(), st, kms)
	if err != nil {
		t.Fatal(err)
	}
	newKid, err := stored.Rotate(clock.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := stored.Marshal(t.Context(), kms)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CompareAndSwap(t.Context(), control.KeyIssuerKeys, cur, b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rotated key served", func() bool {
		var set jose.JSONWebKeySet
		f.must("", http.MethodGet, control.PathJWKS, nil, &set)
		return slices.Contains(kids(set), newKid)
	})
	// The first watch met the compaction; the second, from the store's
	// revision, delivered the rotation and is still open.
	if n := st.watches.Load(); n > 2 {
		t.Fatalf("%d watches opened on the key set, want 2: a watch from a compacted revision is retried", n)
	}
}
