package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// newKey returns a signer and the matching verifiers for key name
// "stack-audit", as the issuer's key provides them.
func newKey(t testing.TB) (note.Signer, note.Verifiers) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "stack-audit")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, note.VerifierList(v)
}

// openTest opens a log in a fresh temporary directory and closes it when
// the test ends.
func openTest(t testing.TB, opts Options) (*Log, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, path
}

// appendN appends n records for agent, failing the test on any error.
func appendN(t testing.TB, l *Log, n int, agent string) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := l.Append(context.Background(), Record{
			AgentID: agent, Action: ActionCredentialAccess, CredentialID: "stripe",
			Host: "api.stripe.com", Method: "POST", Path: "/v1/charges", Status: 200,
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// mustVerifyError asserts that err is a *VerifyError of kind at seq.
func mustVerifyError(t *testing.T, err error, kind string, seq uint64) *VerifyError {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("want *VerifyError %s at %d, got %v", kind, seq, err)
	}
	if ve.Kind != kind || ve.Seq != seq {
		t.Fatalf("want %s at seq %d, got %s at seq %d (%s)", kind, seq, ve.Kind, ve.Seq, ve.Msg)
	}
	return ve
}

// ed25519Signer is a note.Signer over an ed25519 private key, as the lead
// builds one from the issuer's key.
type ed25519Signer struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func (s ed25519Signer) Name() string                    { return s.name }
func (s ed25519Signer) KeyHash() uint32                 { return s.hash }
func (s ed25519Signer) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// fixedKey derives a signer and its verifiers from a one-byte seed, so
// that processes agree on a key without passing it around.
func fixedKey(seed byte) (note.Signer, note.Verifiers, error) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	vkey, err := note.NewEd25519VerifierKey("stack-audit", priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, err
	}
	return ed25519Signer{name: v.Name(), hash: v.KeyHash(), key: priv}, note.VerifierList(v), nil
}
