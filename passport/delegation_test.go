package passport

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/testclock"
)

func TestDelegation(t *testing.T) {
	store, err := OpenRevocationStore(filepath.Join(t.TempDir(), "revocations.db"), RevocationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	f := newFixture(t, store)
	ctx := context.Background()

	root, rootClaims := f.issue(t, IssueRequest{Agent: "planner", TTL: 30 * time.Minute})
	narrow := Scope{{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/charges/**"}, Credentials: []string{"stripe"}}}

	t.Run("subset ok", func(t *testing.T) {
		tok, c := f.issue(t, IssueRequest{Agent: "worker", Scope: narrow, Parent: root, TTL: time.Hour - time.Minute})
		if !slices.Equal(c.Delegation, []string{rootClaims.ID}) {
			t.Errorf("del = %v, want [%s]", c.Delegation, rootClaims.ID)
		}
		if !c.Expiry.Equal(rootClaims.Expiry) {
			t.Errorf("child exp %s outlives parent exp %s", c.Expiry, rootClaims.Expiry)
		}
		got, err := f.verify.Verify(tok)
		if err != nil {
			t.Fatal(err)
		}
		if got.Subject != "worker" || got.Mode != ModeEnforce {
			t.Errorf("child claims = %+v", got)
		}
	})

	t.Run("widening refused", func(t *testing.T) {
		wide := Scope{{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET", "DELETE"}, Paths: []string{"/v1/charges/**"}}}
		_, _, err := f.issuer.Issue(ctx, IssueRequest{Agent: "worker", Scope: wide, Parent: root})
		if !errors.Is(err, ErrScopeNotSubset) {
			t.Fatalf("err = %v, want ErrScopeNotSubset", err)
		}
		_, _, err = f.issuer.Issue(ctx, IssueRequest{Agent: "worker", Scope: narrow, Parent: root, Mode: ModeShadow})
		if !errors.Is(err, ErrScopeNotSubset) {
			t.Fatalf("looser mode: err = %v, want ErrScopeNotSubset", err)
		}
		_, _, err = f.issuer.Issue(ctx, IssueRequest{Agent: "worker", Scope: narrow, Parent: root, Audience: "elsewhere"})
		if !errors.Is(err, ErrScopeNotSubset) {
			t.Fatalf("other audience: err = %v, want ErrScopeNotSubset", err)
		}
	})

	t.Run("mode only tightens", func(t *testing.T) {
		shadowTok, _ := f.issue(t, IssueRequest{Agent: "observer", Mode: ModeShadow})
		_, c := f.issue(t, IssueRequest{Agent: "w", Scope: narrow, Parent: shadowTok})
		if c.Mode != ModeShadow {
			t.Errorf("inherited mode = %s, want shadow", c.Mode)
		}
		_, c = f.issue(t, IssueRequest{Agent: "w", Scope: narrow, Parent: shadowTok, Mode: ModeEnforce})
		if c.Mode != ModeEnforce {
			t.Errorf("tightened mode = %s, want enforce", c.Mode)
		}
	})

	t.Run("fifth hop refused", func(t *testing.T) {
		tok := root
		var chain []string
		chain = append(chain, rootClaims.ID)
		for hop := 1; hop <= MaxDelegationDepth; hop++ {
			next, c := f.issue(t, IssueRequest{Agent: "hop", Scope: narrow, Parent: tok})
			if !slices.Equal(c.Delegation, chain) {
				t.Fatalf("hop %d: del = %v, want %v", hop, c.Delegation, chain)
			}
			if _, err := f.verify.Verify(next); err != nil {
				t.Fatalf("hop %d: %v", hop, err)
			}
			chain = append(chain, c.ID)
			tok = next
		}
		_, _, err := f.issuer.Issue(ctx, IssueRequest{Agent: "hop", Scope: narrow, Parent: tok})
		if !errors.Is(err, ErrChainTooDeep) {
			t.Fatalf("5th hop: err = %v, want ErrChainTooDeep", err)
		}
	})

	t.Run("revoking an ancestor revokes the child", func(t *testing.T) {
		mid, midClaims := f.issue(t, IssueRequest{Agent: "mid", Scope: narrow, Parent: root})
		leaf, _ := f.issue(t, IssueRequest{Agent: "leaf", Scope: narrow, Parent: mid})
		sibling, _ := f.issue(t, IssueRequest{Agent: "sibling", Scope: narrow, Parent: root})
		if _, err := f.verify.Verify(leaf); err != nil {
			t.Fatal(err)
		}
		if _, err := store.RevokeJTI(midClaims.ID, midClaims.Expiry, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.verify.Verify(leaf); !errors.Is(err, ErrRevoked) {
			t.Fatalf("leaf after revoking its parent: err = %v, want ErrRevoked", err)
		}
		if _, err := f.verify.Verify(sibling); err != nil {
			t.Fatalf("sibling is not a descendant: %v", err)
		}
		if _, _, err := f.issuer.Issue(ctx, IssueRequest{Agent: "x", Scope: narrow, Parent: mid}); !errors.Is(err, ErrRevoked) {
			t.Fatalf("delegating from a revoked parent: err = %v, want ErrRevoked", err)
		}
	})

	t.Run("revoking an agent revokes what its passports delegated", func(t *testing.T) {
		boss, bossClaims := f.issue(t, IssueRequest{Agent: "boss"})
		helper, helperClaims := f.issue(t, IssueRequest{Agent: "helper", Scope: narrow, Parent: boss})
		sub, _ := f.issue(t, IssueRequest{Agent: "sub", Scope: narrow, Parent: helper})
		unrelated, _ := f.issue(t, IssueRequest{Agent: "helper", Scope: narrow, Parent: root})
		want := []Ancestor{{Agent: "boss", IssuedAt: bossClaims.IssuedAt}}
		if !slices.Equal(helperClaims.Ancestors, want) {
			t.Fatalf("ancestors = %+v, want %+v", helperClaims.Ancestors, want)
		}
		f.clock.Advance(time.Second)
		// On the fixture's clock (RevokeAgent would stamp the store's).
		now := f.clock.Now()
		if err := store.Add(Revocation{Kind: RevokeAgent, ID: "boss", RevokedAt: now, ExpiresAt: now.Add(2 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		for name, tok := range map[string]string{"boss's own": boss, "delegated to helper": helper, "delegated on to sub": sub} {
			if _, err := f.verify.Verify(tok); !errors.Is(err, ErrRevoked) {
				t.Errorf("%s passport after revoking agent boss: err = %v, want ErrRevoked", name, err)
			}
		}
		if _, err := f.verify.Verify(unrelated); err != nil {
			t.Errorf("helper's passport from another parent: %v", err)
		}
		// A passport issued to boss after the revocation, and what it
		// delegates, are valid.
		f.clock.Advance(time.Second)
		boss2, _ := f.issue(t, IssueRequest{Agent: "boss"})
		helper2, _ := f.issue(t, IssueRequest{Agent: "helper", Scope: narrow, Parent: boss2})
		if _, err := f.verify.Verify(helper2); err != nil {
			t.Errorf("delegated from boss's new passport: %v", err)
		}
	})

	t.Run("expired parent", func(t *testing.T) {
		short, _ := f.issue(t, IssueRequest{Agent: "short", TTL: time.Minute})
		f.clock.Advance(2 * time.Minute)
		_, _, err := f.issuer.Issue(ctx, IssueRequest{Agent: "x", Scope: narrow, Parent: short})
		if !errors.Is(err, ErrExpired) {
			t.Fatalf("err = %v, want ErrExpired", err)
		}
	})
}

func TestDelegationWithoutParentsVerifier(t *testing.T) {
	f := newFixture(t, nil)
	f.issuer.Parents = nil
	root, rc := f.issue(t, IssueRequest{Agent: "planner"})
	_, c := f.issue(t, IssueRequest{Agent: "worker", Scope: stripeScope()[:1], Parent: root})
	if !slices.Equal(c.Delegation, []string{rc.ID}) {
		t.Fatalf("del = %v", c.Delegation)
	}
	other := newFixture(t, nil)
	foreign, _ := other.issue(t, IssueRequest{})
	if _, _, err := f.issuer.Issue(context.Background(), IssueRequest{Agent: "w", Scope: stripeScope(), Parent: foreign}); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("foreign parent: err = %v, want ErrUnknownKey", err)
	}
}

// Without a Parents verifier, an issuer checks a parent against its own
// MaxTTL, so it can delegate from any passport it may issue.
func TestDelegationFromLongestParent(t *testing.T) {
	clk := testclock.Start()
	keys, err := GenerateKeySet(clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	is := &Issuer{Keys: keys, Now: clk.Now, MaxTTL: 2 * time.Hour}
	ctx := context.Background()
	parent, _, err := is.Issue(ctx, IssueRequest{Agent: "planner", Scope: stripeScope(), TTL: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := is.Issue(ctx, IssueRequest{Agent: "worker", Scope: stripeScope(), Parent: parent}); err != nil {
		t.Fatalf("delegating from a parent at the issuer's max ttl: %v", err)
	}
}
