package control_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/client"
	"github.com/stackctl/stack/passport"
)

// replicatedFixture is a fixture whose control plane can have more
// replicas: servers with the same options (one store, one issuer key
// set, one vault) on their own TLS listeners.
func replicatedFixture(t *testing.T) (*fixture, func() *httptest.Server) {
	t.Helper()
	var opts control.Options
	f := newFixture(t, func(o *control.Options) { opts = *o })
	return f, func() *httptest.Server {
		t.Helper()
		srv, err := control.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewUnstartedServer(srv.Handler())
		ts.EnableHTTP2 = true
		ts.StartTLS() // httptest's certificate, which f.roots trusts
		t.Cleanup(ts.Close)
		return ts
	}
}

// mustAt is f.must against the replica at base.
func (f *fixture) mustAt(base, method, path string, in any) {
	f.t.Helper()
	saved := f.ts.URL
	f.ts.URL = base
	defer func() { f.ts.URL = saved }()
	f.must(operatorToken, method, path, in, nil)
}

// stopHard stops a replica as a crash would: its connections drop.
func stopHard(ts *httptest.Server) {
	ts.CloseClientConnections()
	ts.Close()
}

// appliedRevs records, in order, the revocations the feed applies.
type appliedRevs struct {
	client.Revocations
	mu  sync.Mutex
	ids []string
}

func (r *appliedRevs) Add(rv passport.Revocation) error {
	r.mu.Lock()
	r.ids = append(r.ids, rv.ID)
	r.mu.Unlock()
	return r.Revocations.Add(rv)
}

func (r *appliedRevs) applied() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids)
}

func TestSidecarMovesToAnotherReplica(t *testing.T) {
	f, replica := replicatedFixture(t)
	a, b := f.ts, replica()
	aURL, bURL := a.URL, b.URL
	// A short passport life, so that a refresh falls due after the move.
	f.must(operatorToken, http.MethodPost, control.PathAgents, control.AgentRequest{Agent: control.Agent{Name: "bot", Role: "reader", TTL: control.Duration(3 * time.Second)}}, nil)
	core, logs := observer.New(zapcore.InfoLevel)
	var revs *appliedRevs
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := f.startSidecar(ctx, aURL, "bot", "", func(o *client.Options) {
		o.URLs = []string{aURL, bURL}
		o.StartTimeout = 30 * time.Second
		o.Log = zap.New(core)
		revs = &appliedRevs{Revocations: o.Revocations}
		o.Revocations = revs
	})
	eventually(t, "watching", func() bool { return s.Health().Connected })
	if h := s.Health(); h.URL != aURL || h.Moves != 0 {
		t.Fatalf("before any failure: on %s after %d moves, want %s", h.URL, h.Moves, aURL)
	}
	f.mustAt(aURL, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: "r1"})
	eventually(t, "r1 applied through a", func() bool { return s.revokedJTI("r1") })
	stopHard(a)
	// Written while the sidecar may not have noticed yet: the feed on b
	// must resume from the revision it applied on a.
	f.mustAt(bURL, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: "r2"})
	f.mustAt(bURL, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: "r3"})
	eventually(t, "r2 and r3 applied through b", func() bool { return s.revokedJTI("r2") && s.revokedJTI("r3") })
	eventually(t, "watching b", func() bool { h := s.Health(); return h.Connected && h.URL == bURL })
	before, err := s.Passport()
	if err != nil {
		t.Fatal(err)
	}
	f.mustAt(bURL, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: "r4"})
	eventually(t, "r4 applied through b's live feed", func() bool { return s.revokedJTI("r4") })

	if got, want := revs.applied(), []string{"r1", "r2", "r3", "r4"}; !slices.Equal(got, want) {
		t.Fatalf("revocations applied %q, want each once, in order: %q", got, want)
	}
	if h := s.Health(); h.URL != bURL || h.Moves != 1 {
		t.Fatalf("after a stopped: on %s after %d moves, want %s after 1", h.URL, h.Moves, bURL)
	}
	moved := logs.FilterMessage(client.LogMoved).All()
	if len(moved) != 1 || moved[0].ContextMap()["from"] != aURL || moved[0].ContextMap()["to"] != bURL {
		t.Fatalf("move logged %d times: %v", len(moved), moved)
	}

	// The passport keeps being refreshed, by b, with the credential a
	// handed out.
	eventually(t, "a new passport from b", func() bool {
		tok, err := s.Passport()
		if err != nil || tok == before {
			return false
		}
		_, err = s.verifier.Verify(tok)
		return err == nil
	})
	if logs.FilterMessage("joined the control plane").Len() != 1 {
		t.Fatal("the sidecar joined again instead of keeping its credential")
	}
}

// A replica that is down or unwell at start is skipped: the sidecar
// joins through the next one.
func TestSidecarStartsPastAFailedReplica(t *testing.T) {
	refused := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "https://" + addr
	}
	unavailable := func(t *testing.T) string {
		ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":"cut off from the store","reason":"unavailable"}`))
		}))
		t.Cleanup(ts.Close)
		return ts.URL
	}
	for _, tc := range []struct {
		name string
		down func(*testing.T) string
	}{
		{"connection refused", refused},
		{"answers 503", unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.register("bot")
			down := tc.down(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := f.startSidecar(ctx, down, "bot", "", func(o *client.Options) {
				o.URLs, o.StartTimeout = []string{down, f.ts.URL}, 30*time.Second
			})
			if h := s.Health(); h.URL != f.ts.URL || h.Moves != 1 {
				t.Fatalf("on %s after %d moves, want %s after 1", h.URL, h.Moves, f.ts.URL)
			}
			f.must(operatorToken, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: "r1"}, nil)
			eventually(t, "revocation through the second replica", func() bool { return s.revokedJTI("r1") })
		})
	}
}

// A refusal is the same answer from every replica: it is not a reason to
// move, and start fails at once as with one URL.
func TestSidecarRefusedDoesNotMove(t *testing.T) {
	f, replica := replicatedFixture(t)
	b := replica()
	f.register("bot")
	c, err := client.New(client.Options{
		URLs: []string{f.ts.URL, b.URL}, RootCAs: f.roots, JoinToken: "stkj_not-a-token",
		Revocations: &appliedRevs{}, OnKeys: func(jose.JSONWebKeySet) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.Start(ctx)
	if ae := (*client.APIError)(nil); !errors.As(err, &ae) || ae.Status/100 != 4 {
		t.Fatalf("start with a bad join token: %v, want the refusal", err)
	}
	if h := c.Health(); h.URL != f.ts.URL || h.Moves != 0 {
		t.Fatalf("a refusal moved the sidecar to %s (%d moves)", h.URL, h.Moves)
	}
}

// The state file keeps the credential while the URL list still names one
// of the URLs it was saved with; another list is another control plane.
func TestSidecarStateFollowsOverlappingURLs(t *testing.T) {
	f, replica := replicatedFixture(t)
	b := replica()
	f.register("bot")
	dir := t.TempDir()
	run := func(urls []string, tune func(*client.Options)) client.Health {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s := f.startSidecar(ctx, urls[0], "bot", dir, func(o *client.Options) {
			o.URLs, o.StartTimeout = urls, 30*time.Second
			if tune != nil {
				tune(o)
			}
		})
		defer s.revs.Close()
		return s.Health()
	}
	first := run([]string{f.ts.URL}, nil)

	// b alone shares no URL with the state: it is discarded, and the
	// sidecar needs a join token again.
	var jt control.JoinTokenResponse
	f.must(operatorToken, http.MethodPost, control.PathTokens, control.JoinTokenRequest{Agent: "bot"}, &jt)
	second := run([]string{b.URL}, func(o *client.Options) { o.JoinToken = jt.Token })
	if second.SidecarID == first.SidecarID {
		t.Fatal("a state from another control plane's URL was kept")
	}

	// A list that adds replicas (in any order, with a trailing slash)
	// keeps the credential: no join token needed.
	third := run([]string{f.ts.URL, b.URL + "/"}, nil)
	if third.SidecarID != second.SidecarID {
		t.Fatalf("overlapping URLs joined again as %s, was %s", third.SidecarID, second.SidecarID)
	}
	if third.URL != f.ts.URL {
		t.Fatalf("health says %q, want the first URL %q", third.URL, f.ts.URL)
	}
}

// A replica whose feed goes silent (the connection stays open, nothing
// flows) is left after three heartbeats, as one that hangs up is.
func TestSidecarLeavesASilentReplica(t *testing.T) {
	f, replica := replicatedFixture(t)
	b := replica()
	f.register("bot")
	fp := faultProxy(t, strings.TrimPrefix(f.ts.URL, "https://"))
	silent := "https://" + fp.Listen
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := f.startSidecar(ctx, silent, "bot", "", func(o *client.Options) {
		o.URLs, o.StartTimeout = []string{silent, b.URL}, 30*time.Second
	})
	eventually(t, "watching through the proxy", func() bool { h := s.Health(); return h.Connected && h.URL == silent })
	addToxic(t, fp, `{"name":"blackhole","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`)
	// Written through the replica itself, which is fine: only the path
	// from the sidecar to it is silent.
	f.must(operatorToken, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: "during-silence"}, nil)
	eventually(t, "revocation through the other replica", func() bool { return s.revokedJTI("during-silence") })
	eventually(t, "watching the other replica", func() bool { h := s.Health(); return h.Connected && h.URL == b.URL })
	if h := s.Health(); h.Moves != 1 {
		t.Fatalf("%d moves, want 1", h.Moves)
	}
}
