package kmstest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stackctl/stack/vault/kms"
)

// Local returns a real local:// KMS under a new key file in a temporary
// directory, closed when the test ends: the KMS for tests that need one
// but are not about a KMS. Each call makes another key, with its own URI.
func Local(t testing.TB) kms.KMS {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kms.key")
	if err := kms.CreateLocalKey(path); err != nil {
		t.Fatal(err)
	}
	k, err := kms.Open(context.Background(), "local://"+path, kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// Failing is a KMS that passes every call to the one it wraps, except
// that Unwrap fails while FailUnwrap has switched a failure on: a KMS
// that wraps and then cannot give back what it wrapped, for the tests of
// what a failed unwrap must leave behind. A KMS whose server is down is
// better tested with the real backend against a stopped server
// (StartGCPServer, DeadEndpoint).
type Failing struct {
	kms.KMS

	mu        sync.Mutex
	unwrapErr error
}

// NewFailing returns k behind a failure switch that starts off.
func NewFailing(k kms.KMS) *Failing { return &Failing{KMS: k} }

// FailUnwrap makes every later Unwrap fail with a *kms.Error naming the
// key and wrapping sentinel (kms.ErrUnwrap, kms.ErrUnavailable); nil
// makes Unwrap work again.
func (f *Failing) FailUnwrap(sentinel error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unwrapErr = sentinel
}

// Unwrap fails while the switch is on, and unwraps with the KMS it wraps
// otherwise.
func (f *Failing) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	f.mu.Lock()
	err := f.unwrapErr
	f.mu.Unlock()
	if err != nil {
		return nil, &kms.Error{URI: f.URI(), Op: "unwrap", Err: err}
	}
	return f.KMS.Unwrap(ctx, wrapped, aad)
}
