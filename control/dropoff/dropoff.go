// Package dropoff is the control plane's store of sealed handoffs waiting
// for their recipient: each wrapped again by the KMS, kept until it
// expires, and handed out once.
//
// # Basics
//
// A handoff arrives sealed (package handoff): the control plane cannot
// read it and does not try. Deposit wraps the sealed token under the KMS
// (bound to the handoff's id and recipient) and stores it with a time to
// live; Take hands it to its recipient and replaces it with a tombstone
// in the same compare-and-swap, so of two fetches exactly one gets it and
// the other ErrGone; Withdraw removes a sender's undelivered handoffs (its agent was
// revoked).
//
// # Caveats
//
// Nothing here checks who may hand off to whom or the payload's schema:
// the sidecars do, with the passports.
package dropoff

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/handoff"
	"github.com/stackctl/stack/vault/kms"
)

// Errors of Take.
var (
	// ErrNotFound: no such handoff for this recipient, or it expired.
	ErrNotFound = errors.New("dropoff: no such handoff")
	// ErrGone: it was handed out already (a second fetch).
	ErrGone = errors.New("dropoff: handoff already fetched")
	// ErrExpired: it expired before it was fetched.
	ErrExpired = errors.New("dropoff: handoff expired")
	// ErrInvalid: a deposit without a sender, recipient, schema or token,
	// or with a life not in (0, handoff.MaxTTL].
	ErrInvalid = errors.New("dropoff: invalid deposit")
)

// prefix is where handoffs live in the store: prefix/<recipient>/<id>.
// A handed-out handoff's value becomes a tombstone (its metadata, taken,
// no token) in the same compare-and-swap that hands it out, and stays
// until the key expires: a second fetch is told ErrGone, and its id
// cannot be deposited again.
//
// The store keeps a key for expiryGrace past the handoff's expiry, so
// that Expire, not the store's own clean-up, removes an unfetched one and
// says so; the store's expiry remains the backstop when nothing calls
// Expire.
const (
	prefix      = "handoffs/"
	expiryGrace = time.Hour
	// legacyTaken ends the separate tombstone keys of earlier versions,
	// which expire by themselves within a day.
	legacyTaken = ".taken"
)

// Meta is what the control plane knows of a handoff: never its content.
type Meta struct {
	ID     string `json:"id"`
	From   string `json:"from"`
	To     string `json:"to"`
	Schema string `json:"schema"`
	// PayloadHash is the sender sidecar's SHA-256 of the payload (hex),
	// for audit records; Size the sealed token's length.
	PayloadHash string    `json:"payload_hash,omitempty"`
	Size        int       `json:"size"`
	Deposited   time.Time `json:"deposited"`
	Expires     time.Time `json:"expires"`
}

// stored is the store's value: the metadata and the KMS-wrapped token,
// or, once handed out, the metadata of a tombstone.
type stored struct {
	Meta
	Wrapped []byte `json:"wrapped,omitempty"`
	Taken   bool   `json:"taken,omitempty"`
}

// Box is the drop-off store.
type Box struct {
	Store store.Store
	KMS   kms.KMS
	Now   func() time.Time
}

func (b *Box) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func key(recipient, id string) string { return prefix + recipient + "/" + id }

// aad binds a wrapped token to its handoff: it unwraps only as itself.
func aad(m Meta) []byte { return []byte("stack-handoff\x00" + m.ID + "\x00" + m.To) }

// Deposit stores a sealed handoff for m.To until ttl passes and returns
// its metadata with the id, deposit time and expiry set.
func (b *Box) Deposit(ctx context.Context, m Meta, sealed string, ttl time.Duration) (Meta, error) {
	if m.From == "" || m.To == "" || m.Schema == "" || sealed == "" || strings.Contains(m.To, "/") {
		return Meta{}, fmt.Errorf("%w: sender, recipient, schema and the sealed handoff are required", ErrInvalid)
	}
	if ttl <= 0 || ttl > handoff.MaxTTL {
		return Meta{}, fmt.Errorf("%w: ttl %s, want more than 0 and at most %s", ErrInvalid, ttl, handoff.MaxTTL)
	}
	if m.ID == "" {
		raw := make([]byte, 16)
		if _, err := rand.Read(raw); err != nil {
			return Meta{}, err
		}
		m.ID = hex.EncodeToString(raw)
	} else if !validID(m.ID) {
		return Meta{}, fmt.Errorf("%w: id %q, want 32 lowercase hex digits", ErrInvalid, m.ID)
	}
	now := b.now().UTC()
	m.Deposited, m.Expires, m.Size = now, now.Add(ttl), len(sealed)
	wrapped, err := b.KMS.Wrap(ctx, []byte(sealed), aad(m))
	if err != nil {
		return Meta{}, fmt.Errorf("dropoff: wrapping the handoff: %w", err)
	}
	v, err := json.Marshal(stored{Meta: m, Wrapped: wrapped})
	if err != nil {
		return Meta{}, err
	}
	if _, err := b.Store.Create(ctx, key(m.To, m.ID), v, ttl+expiryGrace); err != nil {
		if errors.Is(err, store.ErrConflict) {
			// An id is used once: its handoff waits, or its tombstone
			// does.
			return Meta{}, fmt.Errorf("%w: handoff %s exists or was delivered", ErrInvalid, m.ID)
		}
		return Meta{}, err
	}
	return m, nil
}

func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// List returns the metadata of the handoffs waiting for recipient ("" for
// every recipient), oldest first.
func (b *Box) List(ctx context.Context, recipient string) ([]Meta, error) {
	p := prefix
	if recipient != "" {
		p += recipient + "/"
	}
	now := b.now()
	var out []Meta
	err := b.each(ctx, p, func(_ store.KV, s stored) error {
		if !now.After(s.Expires) { // Expire removes the others
			out = append(out, s.Meta)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Deposited.Before(out[j].Deposited) })
	return out, nil
}

// each calls fn for every handoff stored under p, tombstones left out.
func (b *Box) each(ctx context.Context, p string, fn func(kv store.KV, s stored) error) error {
	kvs, _, err := b.Store.List(ctx, p)
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		if strings.HasSuffix(kv.Key, legacyTaken) {
			continue
		}
		var s stored
		if err := json.Unmarshal(kv.Value, &s); err != nil {
			return fmt.Errorf("dropoff: %s: %w", kv.Key, err)
		}
		if s.Taken {
			continue
		}
		if err := fn(kv, s); err != nil {
			return err
		}
	}
	return nil
}

// Take hands recipient its handoff id once: it returns the sealed token
// only if its compare-and-swap to a tombstone won, so of concurrent
// fetches one gets it and the others ErrGone.
func (b *Box) Take(ctx context.Context, recipient, id string) (Meta, string, error) {
	if strings.Contains(id, "/") || strings.HasSuffix(id, legacyTaken) || id == "" {
		return Meta{}, "", ErrNotFound
	}
	k := key(recipient, id)
	kv, err := b.Store.Get(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		return Meta{}, "", ErrNotFound
	}
	if err != nil {
		return Meta{}, "", err
	}
	var s stored
	if err := json.Unmarshal(kv.Value, &s); err != nil {
		return Meta{}, "", fmt.Errorf("dropoff: %s: %w", k, err)
	}
	if s.Taken {
		return Meta{}, "", ErrGone
	}
	if b.now().After(s.Expires) {
		return s.Meta, "", ErrExpired
	}
	// Unwrap before deleting: a KMS that is down loses nothing. The aad
	// is the handoff's place, not what its record says: a record copied
	// into another inbox does not unwrap there.
	sealed, err := b.KMS.Unwrap(ctx, s.Wrapped, aad(Meta{ID: id, To: recipient}))
	if err != nil {
		return Meta{}, "", fmt.Errorf("dropoff: unwrapping handoff %s: %w", id, err)
	}
	tomb, err := json.Marshal(stored{Meta: s.Meta, Taken: true})
	if err != nil {
		return Meta{}, "", err
	}
	if _, err := b.Store.CompareAndSwap(ctx, k, kv.ModRev, tomb); err != nil {
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			return Meta{}, "", ErrGone
		}
		return Meta{}, "", err
	}
	return s.Meta, string(sealed), nil
}

// Expire removes every handoff past its expiry and returns their
// metadata. Of several callers at once (replicas), each handoff is
// returned to one.
func (b *Box) Expire(ctx context.Context) ([]Meta, error) {
	now := b.now()
	var out []Meta
	err := b.each(ctx, prefix, func(kv store.KV, s stored) error {
		if !now.After(s.Expires) {
			return nil
		}
		if _, err := b.Store.CompareAndSwap(ctx, kv.Key, kv.ModRev, nil); err != nil {
			if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
				return nil // taken or expired by another
			}
			return err
		}
		out = append(out, s.Meta)
		return nil
	})
	return out, err
}

// Withdraw removes every undelivered handoff from sender and returns
// their metadata.
func (b *Box) Withdraw(ctx context.Context, sender string) ([]Meta, error) {
	all, err := b.List(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []Meta
	for _, m := range all {
		if m.From != sender {
			continue
		}
		if _, err := b.Store.Delete(ctx, key(m.To, m.ID)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return out, err
		}
		out = append(out, m)
	}
	return out, nil
}
