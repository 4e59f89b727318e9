package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/passport"
)

// Issuer keys shared through the store: replicas on one store sign with
// the same keys and serve the same JWKS.
const (
	// KeyIssuerKeys is the store key of the shared issuer key set, in
	// the key file's format (passport.KeySet.Marshal): private keys are
	// wrapped by the KMS, so the store never holds one in the clear.
	KeyIssuerKeys = "keys/issuer"
	// PathKeysRotate rotates the shared issuer key (operators).
	PathKeysRotate = "/v1/keys/rotate"
	// DefaultKeyActivationDelay is how long a rotated key is published
	// before it signs: longer than a replica takes to see the change or
	// to stop serving when it cannot (about 3 s), plus clock skew.
	DefaultKeyActivationDelay = 10 * time.Second
	// keysRetry is the pause before watching the key set again after
	// the watch failed.
	keysRetry = time.Second
	// rotateAttempts bounds the retries of a rotation that lost a
	// compare-and-swap to another writer.
	rotateAttempts = 5
)

// KeyRotation is the answer to POST /v1/keys/rotate.
type KeyRotation struct {
	// KID is the new key, published now, signing from ActiveAt.
	KID      string    `json:"kid"`
	ActiveAt time.Time `json:"active_at"`
	// PreviousKID signs until ActiveAt and is published until
	// PreviousRetireAfter, when every passport it signed has expired.
	PreviousKID         string    `json:"previous_kid"`
	PreviousRetireAfter time.Time `json:"previous_retire_after"`
}

// SharedKeys returns the issuer key set kept in st and the revision it
// was read at. When st holds none it stores the set local returns, with
// compare-and-swap at revision 0: of replicas starting at once the first
// one's set wins, and the others read that one. A stored set that cannot
// be read is an error, never replaced: a replica must not sign with keys
// its peers do not publish.
func SharedKeys(ctx context.Context, st store.Store, w passport.Wrapper, local func(context.Context) (*passport.KeySet, error)) (*passport.KeySet, int64, error) {
	ks, rev, err := ReadSharedKeys(ctx, st, w)
	if !errors.Is(err, store.ErrNotFound) {
		return ks, rev, err
	}
	ks, err = local(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("import issuer keys into the store: %w", err)
	}
	b, err := ks.Marshal(ctx, w)
	if err != nil {
		return nil, 0, fmt.Errorf("import issuer keys into the store: %w", err)
	}
	rev, err = st.CompareAndSwap(ctx, KeyIssuerKeys, 0, b)
	if errors.Is(err, store.ErrConflict) {
		// Another replica imported first: use its keys.
		return ReadSharedKeys(ctx, st, w)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("import issuer keys into the store: %w", err)
	}
	return ks, rev, nil
}

// ReadSharedKeys returns the issuer key set kept in st and its revision,
// or an error wrapping store.ErrNotFound when there is none. Unlike
// SharedKeys it imports nothing: for readers such as the audit tools.
func ReadSharedKeys(ctx context.Context, st store.Store, w passport.Wrapper) (*passport.KeySet, int64, error) {
	kv, err := st.Get(ctx, KeyIssuerKeys)
	if err != nil {
		return nil, 0, fmt.Errorf("issuer keys in the store (%s): %w", KeyIssuerKeys, err)
	}
	ks, err := passport.ParseKeySet(ctx, kv.Value, w)
	if err != nil {
		return nil, 0, fmt.Errorf("issuer keys in the store (%s, revision %d): %w", KeyIssuerKeys, kv.ModRev, err)
	}
	return ks, kv.ModRev, nil
}

// applyKeys serves ks, read at store revision rev, unless keys of a later
// revision are in force already (a rotation applies its own write, and
// the watch then delivers it again).
func (s *Server) applyKeys(ks *passport.KeySet, rev int64, why string) {
	s.keyMu.Lock()
	if rev <= s.keysRev {
		s.keyMu.Unlock()
		return
	}
	s.setKeysLocked(ks)
	s.keysRev = rev
	s.keyMu.Unlock()
	now := s.now()
	kid, _ := ks.Current(now)
	fields := []zap.Field{zap.String("why", why), zap.Int64("rev", rev), zap.String("current", kid)}
	for _, k := range ks.Keys(now) {
		if k.Pending {
			fields = append(fields, zap.String("pending", k.KID), zap.Time("active_at", k.ActiveAt))
		}
	}
	s.log.Info("serving the issuer keys from the store", fields...)
}

// WatchKeys applies every change of the shared issuer key set
// (Options.KeyWrapper) until ctx ends. A set that cannot be read is
// logged and the keys in force stay. It returns at once when the keys are
// not shared, and with an error when the store closes.
func (s *Server) WatchKeys(ctx context.Context) error {
	if s.opts.KeyWrapper == nil {
		return nil
	}
	// The watch goes on from the store's revision, not the key's: a key
	// set unchanged for longer than etcd keeps history would otherwise be
	// watched from a compacted revision again and again.
	s.keyMu.RLock()
	from := s.keysRev
	s.keyMu.RUnlock()
	for {
		var err error
		from, err = s.watchKeysOnce(ctx, from)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case errors.Is(err, store.ErrClosed):
			return fmt.Errorf("watch issuer keys: %w", err)
		case errors.Is(err, store.ErrCompacted):
			// Changes were forgotten: the current value says it all.
			var rev int64
			if rev, err = s.resyncKeys(ctx); err == nil {
				from = rev
				continue
			}
		}
		s.log.Warn("watching the issuer keys in the store; retrying", zap.Error(err))
		t := time.NewTimer(keysRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// resyncKeys serves the key set in the store and returns the store's
// revision it was read at, to watch from.
func (s *Server) resyncKeys(ctx context.Context) (int64, error) {
	kvs, rev, err := s.store.List(ctx, KeyIssuerKeys)
	if err != nil {
		return 0, err
	}
	for _, kv := range kvs {
		if kv.Key != KeyIssuerKeys {
			continue // a key that merely starts with it
		}
		ks, err := passport.ParseKeySet(ctx, kv.Value, s.opts.KeyWrapper)
		if err != nil {
			return 0, fmt.Errorf("issuer keys in the store (%s, revision %d): %w", KeyIssuerKeys, kv.ModRev, err)
		}
		s.applyKeys(ks, kv.ModRev, "watch resync")
		return rev, nil
	}
	return 0, fmt.Errorf("issuer keys in the store (%s): %w", KeyIssuerKeys, store.ErrNotFound)
}

// watchKeysOnce watches the key set from revision from until the watch
// ends, and returns the last revision it saw and why it ended.
func (s *Server) watchKeysOnce(ctx context.Context, from int64) (int64, error) {
	for resp := range s.store.Watch(ctx, KeyIssuerKeys, from) {
		if resp.Err != nil {
			return from, resp.Err
		}
		for _, ev := range resp.Events {
			from = ev.KV.ModRev
			if ev.KV.Key != KeyIssuerKeys {
				continue // a key that merely starts with it
			}
			if ev.Type == store.EventDelete {
				s.log.Error("the issuer keys were deleted from the store; keeping the keys in force (restore the key from a backup)",
					zap.Int64("rev", ev.KV.ModRev))
				continue
			}
			ks, err := passport.ParseKeySet(ctx, ev.KV.Value, s.opts.KeyWrapper)
			if err != nil {
				s.log.Error("the issuer keys in the store cannot be read; keeping the keys in force",
					zap.String("key", KeyIssuerKeys), zap.Int64("rev", ev.KV.ModRev), zap.Error(err))
				continue
			}
			s.applyKeys(ks, ev.KV.ModRev, "watch")
		}
	}
	return from, ctx.Err()
}

// reloadShared serves the key set in the store now (Reload when the keys
// are shared) and returns its current kid.
func (s *Server) reloadShared(ctx context.Context) (string, error) {
	ks, rev, err := ReadSharedKeys(ctx, s.store, s.opts.KeyWrapper)
	if err != nil {
		s.log.Error("reload of the issuer keys failed; keeping the running ones", zap.Error(err))
		return "", err
	}
	s.applyKeys(ks, rev, "reload")
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	kid, _ := s.opts.Keys.Current(s.now())
	return kid, nil
}

// RotateKeys adds a fresh issuer key to the shared set: every replica
// publishes it at once, and it signs from Options.KeyActivationDelay on,
// so that no passport it signs meets a replica or a JWKS without it. The
// previous key signs until then and stays published for the passports'
// lifetime after.
func (s *Server) RotateKeys(ctx context.Context) (KeyRotation, error) {
	w := s.opts.KeyWrapper
	if w == nil {
		return KeyRotation{}, fail(http.StatusNotImplemented, ReasonUnavailable,
			"this control plane keeps its issuer keys in its keys file: run `stack passport rotate-key` where it runs")
	}
	for range rotateAttempts {
		ks, keysRev, err := ReadSharedKeys(ctx, s.store, w)
		if err != nil {
			return KeyRotation{}, fmt.Errorf("rotate issuer keys: %w", err)
		}
		now := s.now()
		prev, _ := ks.Current(now)
		kid, err := ks.RotateAfter(now, s.keep, s.opts.KeyActivationDelay)
		if err != nil {
			return KeyRotation{}, fmt.Errorf("rotate issuer keys: %w", err)
		}
		b, err := ks.Marshal(ctx, w)
		if err != nil {
			return KeyRotation{}, fmt.Errorf("rotate issuer keys: %w", err)
		}
		rev, err := s.store.CompareAndSwap(ctx, KeyIssuerKeys, keysRev, b)
		if errors.Is(err, store.ErrConflict) {
			continue // rotated or restored meanwhile: rotate that one
		}
		if err != nil {
			return KeyRotation{}, fmt.Errorf("rotate issuer keys: %w", err)
		}
		out := KeyRotation{KID: kid, PreviousKID: prev}
		for _, k := range ks.Keys(now) {
			switch k.KID {
			case kid:
				out.ActiveAt = k.ActiveAt
			case prev:
				out.PreviousRetireAfter = k.RetireAfter
			}
		}
		s.log.Info("rotated the issuer key in the store", zap.String("kid", kid), zap.String("previous", prev),
			zap.Time("active_at", out.ActiveAt), zap.Int64("rev", rev))
		s.applyKeys(ks, rev, "rotation")
		return out, nil
	}
	return KeyRotation{}, fail(http.StatusConflict, ReasonConflict, "the issuer keys kept changing during the rotation: try again")
}

func (s *Server) rotateKeys(r *http.Request) (any, error) {
	return s.RotateKeys(r.Context())
}
