package control_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/vault"
)

func TestAgentsRegistry(t *testing.T) {
	f := newFixture(t, nil)
	f.register("billing-bot")
	if st, reason := f.call(operatorToken, http.MethodPost, control.PathAgents, control.AgentRequest{Agent: control.Agent{Name: "billing-bot", Role: "reader"}}, nil); st != http.StatusConflict || reason != control.ReasonAgentExists {
		t.Fatalf("registering twice: %d %s", st, reason)
	}
	for _, tc := range []struct {
		name string
		a    control.Agent
	}{
		{"bad name", control.Agent{Name: "a/b", Role: "reader"}},
		{"unknown role", control.Agent{Name: "x", Role: "nope"}},
		{"no scope", control.Agent{Name: "x"}},
		{"bad scope", control.Agent{Name: "x", Scope: passport.Scope{{Hosts: []string{"*"}}}}},
		{"ttl over max", control.Agent{Name: "x", Role: "reader", TTL: control.Duration(2 * time.Hour)}},
	} {
		if st, reason := f.call(operatorToken, http.MethodPost, control.PathAgents, control.AgentRequest{Agent: tc.a}, nil); st != http.StatusBadRequest || reason != control.ReasonBadRequest {
			t.Errorf("%s: %d %s, want 400 bad_request", tc.name, st, reason)
		}
	}
	var got control.Agent
	f.must(operatorToken, http.MethodGet, control.PathAgents+"/billing-bot", nil, &got)
	if got.Role != "reader" || len(got.Scope) != 1 || time.Duration(got.TTL) != 5*time.Minute || got.Disabled {
		t.Fatalf("show: %+v", got)
	}
	var list []control.Agent
	f.must(operatorToken, http.MethodGet, control.PathAgents, nil, &list)
	if len(list) != 1 || list[0].Name != "billing-bot" {
		t.Fatalf("list: %+v", list)
	}
	if st, reason := f.call(operatorToken, http.MethodGet, control.PathAgents+"/ghost", nil, nil); st != http.StatusNotFound || reason != control.ReasonAgentUnknown {
		t.Fatalf("show unknown: %d %s", st, reason)
	}
	// Without the operator token nothing changes.
	for _, tok := range []string{"", "wrong-token-wrong-token-wrong-token"} {
		if st, _ := f.call(tok, http.MethodPost, control.PathAgents, control.AgentRequest{Agent: control.Agent{Name: "y", Role: "reader"}}, nil); st != http.StatusUnauthorized {
			t.Fatalf("token %q: %d", tok, st)
		}
	}
}

func TestJoinTokenIsOneTimeAndExpires(t *testing.T) {
	f := newFixture(t, nil)
	f.register("bot")
	var jt control.JoinTokenResponse
	f.must(operatorToken, http.MethodPost, control.PathTokens, control.JoinTokenRequest{Agent: "bot"}, &jt)

	// Ten sidecars race with one token: exactly one joins.
	f.joinRace(jt.Token, 10)

	f.must(operatorToken, http.MethodPost, control.PathTokens, control.JoinTokenRequest{Agent: "bot", TTL: control.Duration(time.Minute)}, &jt)
	f.clock.Advance(2 * time.Minute)
	if st, reason := f.call("", http.MethodPost, control.PathJoin, control.JoinRequest{JoinToken: jt.Token}, nil); st != http.StatusForbidden || reason != control.ReasonJoinTokenExpired {
		t.Fatalf("expired token: %d %s", st, reason)
	}
	if st, reason := f.call(operatorToken, http.MethodPost, control.PathTokens, control.JoinTokenRequest{Agent: "ghost"}, nil); st != http.StatusNotFound || reason != control.ReasonAgentUnknown {
		t.Fatalf("token for an unknown agent: %d %s", st, reason)
	}
	if st, reason := f.call("", http.MethodPost, control.PathJoin, control.JoinRequest{OIDCToken: "x.y.z"}, nil); st != http.StatusForbidden || reason != control.ReasonWorkloadDisabled {
		t.Fatalf("oidc join without issuers: %d %s", st, reason)
	}
}

func TestPassportIssuedWithTheAgentsScope(t *testing.T) {
	f := newFixture(t, nil)
	f.register("bot")
	cred := f.join("bot")
	var pr control.PassportResponse
	f.must(cred.Token, http.MethodPost, control.PathIssue, nil, &pr)
	v := f.verifier()
	claims, err := v.Verify(pr.Passport)
	if err != nil {
		t.Fatal(err)
	}
	if claims.Subject != "bot" || claims.ID != pr.JTI || claims.Expiry.Sub(claims.IssuedAt) != 5*time.Minute {
		t.Fatalf("claims: sub %s jti %s life %s", claims.Subject, claims.ID, claims.Expiry.Sub(claims.IssuedAt))
	}
	if d := claims.Scope.Allows(passport.Request{Host: "api.example.com", Method: "GET", Path: "/"}); !d.Allowed {
		t.Fatalf("scope: %+v", d)
	}
	if len(pr.JWKS.Keys) == 0 {
		t.Fatal("no JWKS with the passport")
	}
	// A sidecar credential is not an operator's.
	if st, _ := f.call(cred.Token, http.MethodPost, control.PathAgents, control.AgentRequest{Agent: control.Agent{Name: "evil", Role: "reader"}}, nil); st != http.StatusForbidden {
		t.Fatalf("sidecar registering an agent: %d", st)
	}
	if st, _ := f.call(operatorToken, http.MethodPost, control.PathIssue, nil, nil); st != http.StatusForbidden {
		t.Fatalf("operator asking for a sidecar passport: %d", st)
	}
	if st, reason := f.call("stks_forged", http.MethodPost, control.PathIssue, nil, nil); st != http.StatusUnauthorized || reason != control.ReasonCredentialInvalid {
		t.Fatalf("forged credential: %d %s", st, reason)
	}
	// Renewal: a new credential works, the old one still does until it
	// expires.
	var renewed control.Credential
	f.must(cred.Token, http.MethodPost, control.PathRenew, nil, &renewed)
	f.must(renewed.Token, http.MethodPost, control.PathIssue, nil, nil)
	f.must(cred.Token, http.MethodPost, control.PathIssue, nil, nil)
	f.clock.Advance(control.DefaultSidecarTTL + time.Second)
	if st, reason := f.call(cred.Token, http.MethodPost, control.PathIssue, nil, nil); st != http.StatusUnauthorized || reason != control.ReasonCredentialExpired {
		t.Fatalf("expired credential: %d %s", st, reason)
	}
}

func TestDisabledAgentGetsNothing(t *testing.T) {
	f := newFixture(t, nil)
	f.register("bot")
	cred := f.join("bot")
	f.must(operatorToken, http.MethodPost, control.PathAgents+"/bot/disable", control.DisableRequest{Reason: "incident 7"}, nil)
	for _, p := range []string{control.PathIssue, control.PathLeases, control.PathRenew} {
		if st, reason := f.call(cred.Token, http.MethodPost, p, nil, nil); st != http.StatusForbidden || reason != control.ReasonAgentDisabled {
			t.Errorf("%s for a disabled agent: %d %s", p, st, reason)
		}
	}
	var list control.RevocationList
	f.must(operatorToken, http.MethodGet, control.PathRevokes, nil, &list)
	if len(list.Revocations) != 1 || list.Revocations[0].Kind != passport.RevokeAgent || list.Revocations[0].ID != "bot" {
		t.Fatalf("disabling revokes the agent's passports: %+v", list)
	}
	f.must(operatorToken, http.MethodPost, control.PathAgents+"/bot/enable", control.DisableRequest{}, nil)
	f.must(cred.Token, http.MethodPost, control.PathIssue, nil, nil)
}

func TestRevokedPassportCannotBeRefreshed(t *testing.T) {
	f := newFixture(t, nil)
	f.register("bot")
	a, b := f.join("bot"), f.join("bot")
	var pa control.PassportResponse
	f.must(a.Token, http.MethodPost, control.PathIssue, nil, &pa)
	// A sidecar revokes a passport it saw (a detector's revoke action).
	f.must(b.Token, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: pa.JTI, Reason: "credential_burst"}, nil)
	if st, reason := f.call(a.Token, http.MethodPost, control.PathIssue, nil, nil); st != http.StatusForbidden || reason != control.ReasonSidecarRevoked {
		t.Fatalf("refresh after revocation: %d %s", st, reason)
	}
	if st, reason := f.call(a.Token, http.MethodPost, control.PathRenew, nil, nil); st != http.StatusForbidden || reason != control.ReasonSidecarRevoked {
		t.Fatalf("renew after revocation: %d %s", st, reason)
	}
	// The other sidecar of the agent is not concerned.
	f.must(b.Token, http.MethodPost, control.PathIssue, nil, nil)
	// A sidecar may not revoke another agent.
	f.register("other")
	if st, _ := f.call(b.Token, http.MethodPost, control.PathRevoke, control.RevokeRequest{Agent: "other"}, nil); st != http.StatusForbidden {
		t.Fatalf("sidecar revoking another agent: %d", st)
	}
	if n := len(f.audit.actions("passport_revoked")); n != 1 {
		t.Fatalf("%d revocation audit records, want 1", n)
	}
}

func TestLeasesAreWhatTheScopeGrants(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if _, err := f.vault.Put(ctx, "example", []byte("sk_live_example_secret"), vault.PutOptions{Hosts: []string{"api.example.com"}, Render: vault.Render{Kind: vault.RenderBearer}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.Put(ctx, "unrelated", []byte("sk_live_unrelated_secret"), vault.PutOptions{Hosts: []string{"api.other.com"}, Render: vault.Render{Kind: vault.RenderBearer}}); err != nil {
		t.Fatal(err)
	}
	f.must(operatorToken, http.MethodPost, control.PathAgents, control.AgentRequest{Agent: control.Agent{Name: "bot",
		Scope: passport.Scope{{Hosts: []string{"api.example.com"}, Credentials: []string{"example", "missing"}}}}}, nil)
	cred := f.join("bot")
	var lr control.LeasesResponse
	f.must(cred.Token, http.MethodPost, control.PathLeases, nil, &lr)
	if len(lr.Leases) != 1 || lr.Leases[0].Name != "example" || string(lr.Leases[0].Secret) != "sk_live_example_secret" {
		t.Fatalf("leases: %+v", lr.Leases)
	}
	if len(lr.Missing) != 1 || lr.Missing[0] != "missing" {
		t.Fatalf("missing: %v", lr.Missing)
	}
	if d := time.Until(lr.Leases[0].ExpiresAt); d <= 0 || d > control.DefaultLeaseTTL {
		t.Fatalf("lease expiry in %s", d)
	}
	recs := f.audit.actions("credential_leased")
	if len(recs) != 1 || recs[0].AgentID != "bot" || recs[0].CredentialID != "example" || recs[0].CredentialFingerprint == "" {
		t.Fatalf("lease audit: %+v", recs)
	}
}

// watch opens the feed from rev and returns its events as they come.
func (f *fixture) watch(ctx context.Context, token string, rev int64) <-chan control.WatchEvent {
	f.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.ts.URL+control.PathWatch+"?rev="+strconv.FormatInt(rev, 10), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	c := *f.client
	c.Timeout = 0
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("watch: %d", resp.StatusCode)
	}
	ch := make(chan control.WatchEvent, 64)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev control.WatchEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				return
			}
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// next returns the next event that is not a bookmark.
func next(t *testing.T, ch <-chan control.WatchEvent) control.WatchEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("feed ended")
			}
			if ev.Type != control.EventBookmark {
				return ev
			}
		case <-timeout:
			t.Fatal("no event within 10s")
		}
	}
}

func TestFeedResumesAndResyncs(t *testing.T) {
	f := newFixture(t, nil)
	f.register("bot")
	cred := f.join("bot")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var list control.RevocationList
	f.must(cred.Token, http.MethodGet, control.PathRevokes, nil, &list)
	feed := f.watch(ctx, cred.Token, list.Rev)
	f.must(operatorToken, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: "jti-one", Reason: "first"}, nil)
	ev := next(t, feed)
	if ev.Type != control.EventRevoked || ev.Revocation.ID != "jti-one" || ev.Rev <= list.Rev {
		t.Fatalf("first event: %+v", ev)
	}
	cancel()

	// Missed while away: resuming from the last revision gets exactly
	// what came after it, in order.
	for _, j := range []string{"jti-two", "jti-three"} {
		f.must(operatorToken, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: j}, nil)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	feed = f.watch(ctx2, cred.Token, ev.Rev)
	for _, want := range []string{"jti-two", "jti-three"} {
		if got := next(t, feed); got.Type != control.EventRevoked || got.Revocation.ID != want {
			t.Fatalf("resumed feed: %+v, want %s", got, want)
		}
	}
	cancel2()

	// History compacted past our revision: the feed says resync.
	rev, err := f.store.Rev(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.Compact(context.Background(), rev); err != nil {
		t.Fatal(err)
	}
	ctx3, cancel3 := context.WithCancel(context.Background())
	defer cancel3()
	if got := next(t, f.watch(ctx3, cred.Token, ev.Rev)); got.Type != control.EventResync {
		t.Fatalf("watch from a compacted revision: %+v", got)
	}
	// A revision the store has not reached (a store restored from a
	// backup): resync too, to the store's revision, never a silent wait.
	ctx4, cancel4 := context.WithCancel(context.Background())
	defer cancel4()
	if got := next(t, f.watch(ctx4, cred.Token, rev+1000)); got.Type != control.EventResync || got.Rev != rev {
		t.Fatalf("watch from ahead of the store (at %d): %+v, want a resync at %d", rev, got, rev)
	}
	if st, reason := f.call(cred.Token, http.MethodGet, control.PathWatch+"?rev=x", nil, nil); st != http.StatusBadRequest {
		t.Fatalf("bad rev: %d %s", st, reason)
	}
}

func TestCollectRemovesExpiredState(t *testing.T) {
	f := newFixture(t, nil)
	f.register("bot")
	f.join("bot")
	f.must(operatorToken, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: "old"}, nil)
	f.clock.Advance(48 * time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Run(ctx, time.Hour) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		for _, p := range []string{"sessions/", "sidecars/", "feed/revocations/", "issued/"} {
			kvs, _, err := f.store.List(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			n += len(kvs)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d expired entries left", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	// Agents never expire.
	f.must(operatorToken, http.MethodGet, control.PathAgents+"/bot", nil, nil)
}
