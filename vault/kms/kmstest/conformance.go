package kmstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stackctl/stack/vault/kms"
)

// Backend is one KMS backend under test by Conformance.
type Backend struct {
	// KMS is the key under test.
	KMS kms.KMS
	// Other is another key of the same backend: what KMS wraps, Other must
	// refuse to unwrap. Nil skips that test.
	Other kms.KMS
	// Down, when set, returns a KMS of the same backend whose server has
	// stopped answering. Backends without a server leave it nil.
	Down func(t *testing.T) kms.KMS
}

// Conformance runs the behaviour every KMS backend must show against the
// backend newBackend returns (called once per subtest; it registers its
// own cleanup).
func Conformance(t *testing.T, newBackend func(t *testing.T) Backend) {
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return c
	}
	t.Run("RoundTrip", func(t *testing.T) {
		b := newBackend(t)
		pt := randomBytes(t, 32)
		aad := []byte("stack-test/round-trip")
		w, err := b.KMS.Wrap(ctx(t), pt, aad)
		if err != nil {
			t.Fatalf("wrap: %v", err)
		}
		if bytes.Contains(w, pt) {
			t.Fatal("wrapped value contains the plaintext")
		}
		got, err := b.KMS.Unwrap(ctx(t), w, aad)
		if err != nil {
			t.Fatalf("unwrap: %v", err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatal("unwrap returned other bytes than were wrapped")
		}
		w2, err := b.KMS.Wrap(ctx(t), pt, aad)
		if err != nil {
			t.Fatalf("second wrap: %v", err)
		}
		if bytes.Equal(w, w2) {
			t.Fatal("wrapping twice gave the same bytes: wrapping is not randomized")
		}
	})
	t.Run("NoAAD", func(t *testing.T) {
		b := newBackend(t)
		pt := randomBytes(t, 16)
		w, err := b.KMS.Wrap(ctx(t), pt, nil)
		if err != nil {
			t.Fatalf("wrap: %v", err)
		}
		got, err := b.KMS.Unwrap(ctx(t), w, nil)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("unwrap = %x, %v", got, err)
		}
		if _, err := b.KMS.Unwrap(ctx(t), w, []byte("x")); err == nil {
			t.Fatal("unwrap with additional data of a value wrapped without any succeeded")
		}
	})
	t.Run("EmptyPlaintext", func(t *testing.T) {
		b := newBackend(t)
		w, err := b.KMS.Wrap(ctx(t), nil, []byte("aad"))
		if err != nil {
			t.Fatalf("wrap empty: %v", err)
		}
		got, err := b.KMS.Unwrap(ctx(t), w, []byte("aad"))
		if err != nil {
			t.Fatalf("unwrap empty: %v", err)
		}
		if len(got) != 0 {
			t.Fatalf("unwrap empty = %d bytes", len(got))
		}
	})
	t.Run("WrongAAD", func(t *testing.T) {
		b := newBackend(t)
		w, err := b.KMS.Wrap(ctx(t), randomBytes(t, 32), []byte("stack/a/1"))
		if err != nil {
			t.Fatalf("wrap: %v", err)
		}
		_, err = b.KMS.Unwrap(ctx(t), w, []byte("stack/b/1"))
		wantRefused(t, b.KMS, err)
	})
	t.Run("Tampered", func(t *testing.T) {
		b := newBackend(t)
		aad := []byte("aad")
		w, err := b.KMS.Wrap(ctx(t), randomBytes(t, 32), aad)
		if err != nil {
			t.Fatalf("wrap: %v", err)
		}
		for name, bad := range map[string][]byte{
			"last byte flipped": flip(w, len(w)-1),
			"middle flipped":    flip(w, len(w)/2),
			"truncated":         bytes.Clone(w[:len(w)-4]),
			"empty":             {},
		} {
			_, err := b.KMS.Unwrap(ctx(t), bad, aad)
			if err == nil {
				t.Errorf("%s: unwrap succeeded", name)
				continue
			}
			wantRefused(t, b.KMS, err)
		}
	})
	t.Run("WrongKey", func(t *testing.T) {
		b := newBackend(t)
		if b.Other == nil {
			t.Skip("no other key of this backend")
		}
		aad := []byte("aad")
		w, err := b.KMS.Wrap(ctx(t), randomBytes(t, 32), aad)
		if err != nil {
			t.Fatalf("wrap: %v", err)
		}
		_, err = b.Other.Unwrap(ctx(t), w, aad)
		wantRefused(t, b.Other, err)
	})
	t.Run("Concurrent", func(t *testing.T) {
		b := newBackend(t)
		c := ctx(t)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range 4 {
					pt := []byte(fmt.Sprintf("secret-%d-%d", i, j))
					aad := []byte(fmt.Sprintf("aad-%d-%d", i, j))
					w, err := b.KMS.Wrap(c, pt, aad)
					if err != nil {
						errs <- err
						return
					}
					got, err := b.KMS.Unwrap(c, w, aad)
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, pt) {
						errs <- fmt.Errorf("goroutine %d: got other plaintext", i)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
	t.Run("Closed", func(t *testing.T) {
		b := newBackend(t)
		if err := b.KMS.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if err := b.KMS.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
		_, err := b.KMS.Wrap(ctx(t), []byte("x"), nil)
		if !errors.Is(err, kms.ErrClosed) {
			t.Fatalf("wrap after close = %v, want ErrClosed", err)
		}
	})
	t.Run("Down", func(t *testing.T) {
		b := newBackend(t)
		if b.Down == nil {
			t.Skip("backend has no server that can be down")
		}
		down := b.Down(t)
		// A short deadline keeps the client's retries from dragging on.
		c, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		_, err := down.Unwrap(c, randomBytes(t, 64), []byte("aad"))
		if !errors.Is(err, kms.ErrUnavailable) {
			t.Fatalf("unwrap with the KMS down = %v, want ErrUnavailable", err)
		}
		wantNamesURI(t, down, err)
		_, err = down.Wrap(c, []byte("x"), nil)
		if !errors.Is(err, kms.ErrUnavailable) {
			t.Fatalf("wrap with the KMS down = %v, want ErrUnavailable", err)
		}
	})
}

// wantRefused checks err is a refusal (not an outage) naming the key.
func wantRefused(t *testing.T, k kms.KMS, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("unwrap succeeded")
	}
	if !errors.Is(err, kms.ErrUnwrap) && !errors.Is(err, kms.ErrIntegrity) {
		t.Fatalf("unwrap error = %v, want ErrUnwrap or ErrIntegrity", err)
	}
	if errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("unwrap refusal reported as an outage: %v", err)
	}
	wantNamesURI(t, k, err)
}

func wantNamesURI(t *testing.T, k kms.KMS, err error) {
	t.Helper()
	var ke *kms.Error
	if !errors.As(err, &ke) || ke.URI != k.URI() {
		t.Fatalf("error %v is not a *kms.Error for %s", err, k.URI())
	}
	if !strings.Contains(err.Error(), k.URI()) {
		t.Fatalf("error %q does not name %s", err, k.URI())
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x40
	return c
}
