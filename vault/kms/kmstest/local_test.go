package kmstest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stackctl/stack/vault/kms"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

// Local makes a new key each call: what one wraps, another cannot unwrap.
func TestLocal(t *testing.T) {
	ctx := context.Background()
	a, b := kmstest.Local(t), kmstest.Local(t)
	if !strings.HasPrefix(a.URI(), "local://") || a.URI() == b.URI() {
		t.Fatalf("URIs %q and %q: want two local keys", a.URI(), b.URI())
	}
	w, err := a.Wrap(ctx, []byte("data key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Unwrap(ctx, w, nil); err != nil || string(got) != "data key" {
		t.Fatalf("unwrap = %q, %v", got, err)
	}
	if _, err := b.Unwrap(ctx, w, nil); !errors.Is(err, kms.ErrUnwrap) {
		t.Fatalf("unwrap under another key = %v, want ErrUnwrap", err)
	}
}

func TestFailingSwitch(t *testing.T) {
	ctx := context.Background()
	k := kmstest.NewFailing(kmstest.Local(t))
	roundTrip := func() error {
		w, err := k.Wrap(ctx, []byte("data key"), []byte("aad"))
		if err != nil {
			t.Fatalf("wrap: %v", err)
		}
		got, err := k.Unwrap(ctx, w, []byte("aad"))
		if err == nil && string(got) != "data key" {
			t.Fatalf("unwrap gave %q", got)
		}
		return err
	}
	if err := roundTrip(); err != nil {
		t.Fatalf("switch off: %v", err)
	}

	k.FailUnwrap(kms.ErrUnavailable)
	err := roundTrip()
	var kerr *kms.Error
	if !errors.Is(err, kms.ErrUnavailable) || !errors.As(err, &kerr) || kerr.URI != k.URI() || kerr.Op != "unwrap" {
		t.Fatalf("switch on: %v, want a *kms.Error for %s wrapping ErrUnavailable", err, k.URI())
	}

	k.FailUnwrap(nil)
	if err := roundTrip(); err != nil {
		t.Fatalf("switched off again: %v", err)
	}
}
