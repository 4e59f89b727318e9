// Package store keeps the control plane's state behind one narrow
// interface: get, put, compare-and-swap, delete, list by prefix, watch
// from a revision, and create keys that expire. Every change gets the
// next revision of one counter, as in etcd, so a watcher that saw
// revision N can resume with exactly the changes after it. Bolt (one bbolt file, the embedded default) and Etcd
// (an etcd cluster under a key prefix, whose revisions are etcd's own)
// implement it.
package store

import (
	"context"
	"time"
)

// KV is a key's value as of a revision.
type KV struct {
	Key   string
	Value []byte
	// CreateRev is the revision that created the key; ModRev the one
	// that last changed it.
	CreateRev int64
	ModRev    int64
}

// EventType says what happened to a key.
type EventType uint8

// Event types.
const (
	EventPut EventType = iota + 1
	EventDelete
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return "unknown"
}

// Event is one change. For a delete, KV.Value is nil and KV.ModRev is
// the revision of the delete.
type Event struct {
	Type EventType
	KV   KV
}

// WatchResponse carries events in revision order. A response with Err set
// is the last one on its channel.
type WatchResponse struct {
	Events []Event
	Err    error
}

// Store is the control plane's state. Implementations are safe for
// concurrent use; every write is durable when it returns.
//
// A key made by Create expires: the store deletes it by itself once its
// time to live has passed, whether or not anyone calls the store then.
// That delete is a change like any other, with its own revision and a
// delete event for watchers. A key's expiry belongs to its life: Put and
// CompareAndSwap on it keep it, and only a delete (by hand or by expiry)
// ends it, so a secret never outlives its deadline because someone
// changed its value. Expiry is not to the instant: a key can be read
// for a short while after its deadline (on etcd, until the cluster's
// leader revokes its lease), so callers that need an exact deadline keep
// it in the value and check it too.
//
// Keys are non-empty (ErrInvalidKey otherwise). Values may be empty: an
// empty value reads back as a non-nil empty slice, so handing it on to
// CompareAndSwap never deletes by accident. Every successful write bumps
// the store's revision by exactly one; a failed one changes nothing.
// (Expiry, above, is a change of its own: when a key's expiry falls due
// just before a write to it, both get a revision.) Values returned are
// the caller's to keep and change.
type Store interface {
	// Get returns key's current value, or ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// Put sets key and returns the revision of the change.
	Put(ctx context.Context, key string, value []byte) (int64, error)
	// CompareAndSwap sets key to value only if its ModRev is rev (rev 0:
	// only if the key does not exist); a nil value deletes it. It returns
	// the revision of the change, or ErrConflict. Deleting with rev 0
	// finds nothing to delete: ErrNotFound.
	CompareAndSwap(ctx context.Context, key string, rev int64, value []byte) (int64, error)
	// Create sets key only if it does not exist (ErrConflict otherwise)
	// and has the store delete it once ttl has passed; ttl must be
	// positive (ErrInvalidTTL). It returns the revision of the change.
	// Backends with a coarser clock round ttl up: etcd to whole seconds
	// and to at least its minimum lease time (a couple of seconds).
	Create(ctx context.Context, key string, value []byte, ttl time.Duration) (int64, error)
	// Delete removes key and returns the revision of the change, or
	// ErrNotFound.
	Delete(ctx context.Context, key string) (int64, error)
	// List returns the keys under prefix in key order, and the store's
	// revision they are consistent with.
	List(ctx context.Context, prefix string) ([]KV, int64, error)
	// Watch sends the changes to keys under prefix with revisions after
	// rev, in order, starting with those already made, until ctx ends.
	// When rev is older than the oldest change kept, the one response is
	// ErrCompacted; a watcher that falls that far behind gets it too.
	// When ctx ends the channel closes without an error response; when
	// the store closes, the last response is ErrClosed. The reader must
	// drain the channel or end ctx.
	Watch(ctx context.Context, prefix string, rev int64) <-chan WatchResponse
	// Rev returns the store's current revision: 0 for an empty store,
	// otherwise that of the last change.
	Rev(ctx context.Context) (int64, error)
	// Compact forgets the history of changes up to and including rev;
	// watches from before it get ErrCompacted. A rev beyond the current
	// revision is an error; one already compacted does nothing.
	Compact(ctx context.Context, rev int64) error
	// Close ends every watch with ErrClosed and releases the store. The
	// other methods return ErrClosed after it; Close again returns what
	// the first call did.
	Close() error
}
