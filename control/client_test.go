package control_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/collectors"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/client"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/vault"
)

// sidecar is a control client as `stack proxy` wires it: a real
// revocation store and a verifier fed the control plane's keys.
type sidecar struct {
	*client.Client
	revs     *passport.RevocationStore
	verifier *passport.Verifier
	state    string

	mu     sync.Mutex
	leases []control.Lease
	drops  int
	sets   int // calls of OnLeases
}

func (s *sidecar) setLeases(l []control.Lease) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leases = l
	s.sets++
	if l == nil {
		s.drops++
	}
}

func (s *sidecar) leaseNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.leases {
		out = append(out, l.Name)
	}
	return out
}

// startSidecar joins url with a fresh join token for agent (or with the
// state in dir when dir is given again).
func (f *fixture) startSidecar(ctx context.Context, url, agent, dir string, tune func(*client.Options)) *sidecar {
	f.t.Helper()
	if dir == "" {
		dir = f.t.TempDir()
	}
	revs, err := passport.OpenRevocationStore(filepath.Join(dir, "revocations.db"), passport.RevocationOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { revs.Close() })
	v, err := passport.NewVerifier(passport.VerifierOptions{Revocations: revs, Leeway: -1})
	if err != nil {
		f.t.Fatal(err)
	}
	s := &sidecar{revs: revs, verifier: v, state: filepath.Join(dir, "control-state.json")}
	opts := client.Options{
		URLs: []string{url}, RootCAs: f.roots, StatePath: s.state, Name: "test-" + agent,
		Revocations: revs, OnKeys: v.UpdateJWKS, OnLeases: s.setLeases,
		Heartbeat: 200 * time.Millisecond, Timeout: 2 * time.Second,
	}
	if _, err := os.Stat(s.state); err != nil {
		var jt control.JoinTokenResponse
		f.must(operatorToken, http.MethodPost, control.PathTokens, control.JoinTokenRequest{Agent: agent}, &jt)
		opts.JoinToken = jt.Token
	}
	if tune != nil {
		tune(&opts)
	}
	c, err := client.New(opts)
	if err != nil {
		f.t.Fatal(err)
	}
	// The loops end before the directory and the store they write to go
	// (cleanups run last registered, first run), even when the test has
	// not ended ctx itself.
	ctx, cancel := context.WithCancel(ctx)
	if err := c.Start(ctx); err != nil {
		cancel()
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		cancel()
		c.Wait()
	})
	s.Client = c
	return s
}

// eventually waits (at most 10s) for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *sidecar) revokedJTI(jti string) bool {
	return s.revs.Revoked(passport.RevocationQuery{JTI: jti})
}

func TestSidecarJoinsRefreshesAndRestarts(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.vault.Put(context.Background(), "example", []byte("sk_live_example_secret"), vault.PutOptions{Hosts: []string{"api.example.com"}, Render: vault.Render{Kind: vault.RenderBearer}}); err != nil {
		t.Fatal(err)
	}
	f.must(operatorToken, http.MethodPost, control.PathAgents, control.AgentRequest{Agent: control.Agent{Name: "bot", TTL: control.Duration(3 * time.Second),
		Scope: passport.Scope{{Hosts: []string{"api.example.com"}, Credentials: []string{"example"}}}}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	s := f.startSidecar(ctx, f.ts.URL, "bot", dir, nil)
	if got := s.leaseNames(); len(got) != 1 || got[0] != "example" {
		t.Fatalf("leases: %v", got)
	}
	fi, err := os.Stat(s.state)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}

	// Over three lifetimes the passport handed out is never expired (the
	// verifier has no leeway) and is refreshed each time.
	jtis := map[string]bool{}
	end := time.Now().Add(9 * time.Second)
	for time.Now().Before(end) {
		tok, err := s.Passport()
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.verifier.Verify(tok)
		if err != nil {
			t.Fatalf("passport handed out after %d refreshes: %v", len(jtis), err)
		}
		jtis[c.ID] = true
		time.Sleep(50 * time.Millisecond)
	}
	if len(jtis) < 3 {
		t.Fatalf("%d passports over 3 lifetimes", len(jtis))
	}
	cancel()

	// A restart reuses the credential it earned: the join token is spent.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	s.revs.Close()
	s2 := f.startSidecar(ctx2, f.ts.URL, "bot", dir, nil)
	if h := s2.Health(); h.SidecarID != s.Health().SidecarID {
		t.Fatalf("restart joined again as %s, was %s", h.SidecarID, s.Health().SidecarID)
	}
}

func TestFeedAppliesRevocationsAndForwardsLocalOnes(t *testing.T) {
	f := newFixture(t, nil)
	f.register("bot")
	f.register("peer")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := f.startSidecar(ctx, f.ts.URL, "bot", "", nil)
	b := f.startSidecar(ctx, f.ts.URL, "peer", "", nil)
	eventually(t, "both watching", func() bool { return a.Health().Connected && b.Health().Connected })

	f.must(operatorToken, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: "stolen", Reason: "test"}, nil)
	eventually(t, "operator revocation applied on both", func() bool { return a.revokedJTI("stolen") && b.revokedJTI("stolen") })

	// A detector in a revokes at once locally, and b hears of it.
	if _, err := a.RevokeJTI("seen-by-a", time.Now().Add(time.Minute), "credential_burst"); err != nil {
		t.Fatal(err)
	}
	if !a.revokedJTI("seen-by-a") {
		t.Fatal("local revocation not applied at once")
	}
	eventually(t, "forwarded revocation reaches b", func() bool { return b.revokedJTI("seen-by-a") })

	// Revoking a's own agent drops its credentials.
	f.must(operatorToken, http.MethodPost, control.PathRevoke, control.RevokeRequest{Agent: "bot", Reason: "incident"}, nil)
	eventually(t, "a's agent revoked", func() bool { return a.Health().Revoked != "" })
	tok, _ := a.Passport()
	if _, err := a.verifier.Verify(tok); err == nil || passport.Reason(err) != "passport_revoked" {
		t.Fatalf("a's passport after its agent was revoked: %v", err)
	}
	a.mu.Lock()
	drops := a.drops
	a.mu.Unlock()
	if drops == 0 {
		t.Fatal("leases kept after the agent was revoked")
	}
	if b.Health().Revoked != "" {
		t.Fatal("b affected by a's revocation")
	}

	// Enabled again, the running sidecar gets a new passport and its
	// credentials back without a restart.
	f.must(operatorToken, http.MethodPost, control.PathAgents+"/bot/enable", control.DisableRequest{}, nil)
	eventually(t, "a serves again", func() bool {
		tok, err := a.Passport()
		if err != nil {
			return false
		}
		_, err = a.verifier.Verify(tok)
		return err == nil && a.Health().Revoked == ""
	})
}

// faultProxy is a toxiproxy between sidecars and the control plane.
func faultProxy(t *testing.T, upstream string) *toxiproxy.Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	srv.Metrics.ProxyMetrics = collectors.NewProxyMetricCollectors()
	p := toxiproxy.NewProxy(srv, "control", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func addToxic(t *testing.T, p *toxiproxy.Proxy, spec string) {
	t.Helper()
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
		t.Fatal(err)
	}
}

func TestFeedSurvivesNetworkFaults(t *testing.T) {
	f := newFixture(t, nil)
	f.register("bot")
	fp := faultProxy(t, strings.TrimPrefix(f.ts.URL, "https://"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := f.startSidecar(ctx, "https://"+fp.Listen, "bot", "", nil)
	eventually(t, "watching", func() bool { return s.Health().Connected })
	revoke := func(jti string) {
		f.must(operatorToken, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: jti}, nil)
	}

	t.Run("latency", func(t *testing.T) {
		addToxic(t, fp, `{"name":"slow","type":"latency","stream":"downstream","attributes":{"latency":300,"jitter":100}}`)
		defer fp.Toxics.RemoveToxic(context.Background(), "slow")
		revoke("during-latency")
		eventually(t, "revocation through latency", func() bool { return s.revokedJTI("during-latency") })
	})

	t.Run("cut", func(t *testing.T) {
		fp.Stop() // closes the listener and every connection
		eventually(t, "disconnect noticed", func() bool { return !s.Health().Connected })
		revoke("during-cut")
		time.Sleep(300 * time.Millisecond)
		if s.revokedJTI("during-cut") {
			t.Fatal("applied while cut off: the test proves nothing")
		}
		if err := fp.Start(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "missed revocation applied on reconnect", func() bool { return s.revokedJTI("during-cut") })
	})

	t.Run("half-open", func(t *testing.T) {
		// Bytes stop flowing but the connection stays open: only the
		// heartbeat deadline can tell.
		addToxic(t, fp, `{"name":"blackhole","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`)
		eventually(t, "half-open feed detected", func() bool { return !s.Health().Connected })
		revoke("during-half-open")
		if err := fp.Toxics.RemoveToxic(context.Background(), "blackhole"); err != nil {
			t.Fatal(err)
		}
		eventually(t, "revocation after the half-open link heals", func() bool { return s.revokedJTI("during-half-open") })
	})

	t.Run("history compacted while away", func(t *testing.T) {
		fp.Stop()
		eventually(t, "disconnect noticed", func() bool { return !s.Health().Connected })
		revoke("before-compaction")
		rev, err := f.store.Rev(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := f.store.Compact(context.Background(), rev); err != nil {
			t.Fatal(err)
		}
		if err := fp.Start(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "resync applies what compaction removed", func() bool { return s.revokedJTI("before-compaction") })
	})
}

func TestStaleSidecarRefuses(t *testing.T) {
	f := newFixture(t, nil)
	f.register("bot")
	fp := faultProxy(t, strings.TrimPrefix(f.ts.URL, "https://"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := f.startSidecar(ctx, "https://"+fp.Listen, "bot", "", func(o *client.Options) { o.MaxStaleness = time.Second })
	if err := s.Gate(); err != nil {
		t.Fatalf("fresh sidecar gated: %v", err)
	}
	fp.Stop()
	eventually(t, "stale after max_staleness", func() bool { return s.Gate() != nil })
	if err := s.Gate(); !strings.Contains(err.Error(), "max_staleness") {
		t.Fatalf("gate error: %v", err)
	}
	if err := fp.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "serving again after contact", func() bool { return s.Gate() == nil })
}

// Revoking a passport on the control plane reaches every sidecar, and
// revokes the passports delegated from it with it.
// TestWaitEndsWithCtx: once Start's ctx ends, Wait returns, and only
// after every background loop has: none writes to the state file or the
// revocation store once they may be gone.
func TestWaitEndsWithCtx(t *testing.T) {
	f := newFixture(t, nil)
	f.register("bot")
	ctx, cancel := context.WithCancel(context.Background())
	s := f.startSidecar(ctx, f.ts.URL, "bot", "", nil)
	eventually(t, "watching", func() bool { return s.Health().Connected })
	cancel()
	waited := make(chan struct{})
	go func() {
		s.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return within 10s of ctx's end")
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, loop := range []string{"credentialLoop", "passportLoop", "watchLoop", "leaseLoop", "forwardLoop"} {
		if strings.Contains(stacks, "client.(*Client)."+loop) {
			t.Errorf("%s still runs after Wait", loop)
		}
	}
}

func TestRevocationCascadesToDelegates(t *testing.T) {
	f := newFixture(t, nil)
	f.register("planner")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := f.startSidecar(ctx, f.ts.URL, "planner", "", nil)
	eventually(t, "watching", func() bool { return s.Health().Connected })
	parent, err := s.Passport()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := s.verifier.Verify(parent)
	if err != nil {
		t.Fatal(err)
	}
	iss := &passport.Issuer{Keys: f.keys}
	child, _, err := iss.Issue(ctx, passport.IssueRequest{Agent: "helper", Parent: parent,
		Scope: passport.Scope{{Hosts: []string{"api.example.com"}, Methods: []string{"GET"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.verifier.Verify(child); err != nil {
		t.Fatalf("delegated passport before the revocation: %v", err)
	}
	f.must(operatorToken, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: pc.ID, Reason: "test"}, nil)
	eventually(t, "the delegate refused", func() bool {
		_, err := s.verifier.Verify(child)
		return passport.Reason(err) == "passport_revoked"
	})
}

// TestFeedFromAheadOfTheStore restarts a sidecar whose saved revision is
// ahead of the store's, as after the store was restored from a backup:
// it must resync to the store's revision and then get what is revoked
// next, not wait for a revision the store will reach much later.
func TestFeedFromAheadOfTheStore(t *testing.T) {
	f := newFixture(t, nil)
	f.register("bot")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	s := f.startSidecar(ctx, f.ts.URL, "bot", dir, nil)
	eventually(t, "watching", func() bool { return s.Health().Connected })
	cancel()
	s.revs.Close()

	b, err := os.ReadFile(s.state)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	st["rev"] = 1 << 40
	if b, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.state, b, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	s2 := f.startSidecar(ctx2, f.ts.URL, "bot", dir, nil)
	storeRev, err := f.store.Rev(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "back at the store's revision", func() bool { return s2.Health().Rev <= storeRev })
	f.must(operatorToken, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: "after-restore", Reason: "test"}, nil)
	eventually(t, "the next revocation applied", func() bool { return s2.revokedJTI("after-restore") })
}
