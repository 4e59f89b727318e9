package passport

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stackctl/stack/internal/testclock"
)

// gcmWrapper is a small real Wrapper: AES-256-GCM under a random key.
type gcmWrapper struct {
	aead cipher.AEAD
	uri  string
}

func newGCMWrapper(t testing.TB) *gcmWrapper {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return &gcmWrapper{aead: aead, uri: "test://gcm"}
}

func (w *gcmWrapper) URI() string { return w.uri }

func (w *gcmWrapper) Wrap(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, w.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return w.aead.Seal(nonce, nonce, plaintext, aad), nil
}

func (w *gcmWrapper) Unwrap(_ context.Context, wrapped, aad []byte) ([]byte, error) {
	n := w.aead.NonceSize()
	if len(wrapped) < n {
		return nil, errors.New("short ciphertext")
	}
	return w.aead.Open(nil, wrapped[:n], wrapped[n:], aad)
}

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
