package passport

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stackctl/stack/internal/testclock"
)

// fixture is an issuer and a verifier over the same fresh keys and clock.
type fixture struct {
	clock  *testclock.Clock
	keys   *KeySet
	issuer *Issuer
	verify *Verifier
}

func newFixture(t testing.TB, rev RevocationChecker) *fixture {
	t.Helper()
	clk := testclock.Start()
	keys, err := GenerateKeySet(clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifierOptions{Keys: keys.JWKS(clk.Now()), Now: clk.Now, Revocations: rev, Issuer: DefaultIssuer})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{
		clock:  clk,
		keys:   keys,
		issuer: &Issuer{Keys: keys, Now: clk.Now, Parents: v},
		verify: v,
	}
}

// newStoreFixture is a fixture whose verifier consults a real revocation
// store, returned too.
func newStoreFixture(t testing.TB) (*fixture, *RevocationStore) {
	t.Helper()
	store, err := OpenRevocationStore(filepath.Join(t.TempDir(), "r.db"), RevocationOptions{Now: testclock.Start().Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return newFixture(t, store), store
}

func (f *fixture) issue(t testing.TB, req IssueRequest) (string, *Claims) {
	t.Helper()
	if req.Agent == "" {
		req.Agent = "agent-1"
	}
	if req.Scope == nil {
		req.Scope = stripeScope()
	}
	tok, c, err := f.issuer.Issue(context.Background(), req)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tok, c
}

func stripeScope() Scope {
	return Scope{{
		Hosts:       []string{"api.stripe.com"},
		Methods:     []string{"GET", "POST"},
		Paths:       []string{"/v1/charges/**", "/v1/balance"},
		Credentials: []string{"stripe"},
	}}
}

// memRevocations is a RevocationChecker over plain maps, for tests that are
// not about the store.
type memRevocations struct {
	mu   sync.Mutex
	jtis map[string]bool
}

func (m *memRevocations) revoke(jti string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.jtis == nil {
		m.jtis = map[string]bool{}
	}
	m.jtis[jti] = true
}

func (m *memRevocations) Revoked(q RevocationQuery) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.jtis[q.JTI] {
		return true
	}
	for _, j := range q.Chain {
		if m.jtis[j] {
			return true
		}
	}
	return false
}
