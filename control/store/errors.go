package store

import "errors"

// Errors the implementations return, wrapped with the operation named.
// Check them with errors.Is.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("store: key not found")
	// ErrConflict: a compare-and-swap found another revision.
	ErrConflict = errors.New("store: revision conflict")
	// ErrCompacted: a watch asked for revisions that are no longer kept;
	// the watcher must list again and watch from the list's revision.
	ErrCompacted = errors.New("store: revision compacted")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrInvalidKey: the key is empty.
	ErrInvalidKey = errors.New("store: invalid key")
	// ErrInvalidTTL: Create was given a time to live that is not
	// positive.
	ErrInvalidTTL = errors.New("store: time to live must be positive")

	// ErrLocked: OpenBolt waited BoltOptions.Timeout for the file while
	// another process held it.
	ErrLocked = errors.New("store: file held by another process")
	// ErrNotStore: OpenBolt found a bbolt file that is not a store, or a
	// store of an unknown format version.
	ErrNotStore = errors.New("store: not a store file of a known format")
	// ErrUnavailable: OpenEtcd found no endpoint answering within
	// EtcdOptions.DialTimeout.
	ErrUnavailable = errors.New("store: no etcd endpoint answered")
)
