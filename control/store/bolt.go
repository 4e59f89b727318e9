package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Defaults of BoltOptions.
const (
	DefaultBoltTimeout = time.Second
	DefaultKeepEvents  = 100000
)

const (
	// watchBatch bounds the changes a watcher reads in one transaction:
	// what it holds in memory, and how long it keeps old pages pinned.
	watchBatch = 512
	// maxCompactSlack bounds how many changes beyond KeepEvents pile up
	// before a write deletes them, so that writes share the cost of
	// compaction without any one of them paying much.
	maxCompactSlack = 1024
)

// BoltOptions configure OpenBolt.
type BoltOptions struct {
	// Timeout bounds the wait for the file lock another process holds
	// (DefaultBoltTimeout when zero); OpenBolt then returns ErrLocked.
	Timeout time.Duration
	// KeepEvents is how many past changes are kept for Watch
	// (DefaultKeepEvents when zero). Writes delete older ones in batches,
	// so up to an eighth more (at most 1024 more) may be kept.
	KeepEvents int
}

// File layout: keys maps a key to its entry (create and mod revision,
// value); events maps a big-endian revision to its change; meta holds the
// format, the current revision and the compacted one (all history at or
// below it is gone). Keys that expire are also in the buckets of
// bolt_ttl.go.
var (
	bucketMeta    = []byte("meta")
	bucketKeys    = []byte("keys")
	bucketEvents  = []byte("events")
	metaFormat    = []byte("format")
	metaRev       = []byte("rev")
	metaCompacted = []byte("compacted")
	formatV1      = []byte("stack-control-store-v1")
)

// Bolt is the Store in one bbolt file, for a control plane without
// replicas. Every write is one transaction, synced before it returns,
// that stores the key and the change under the next revision; watchers
// read changes back from the file, so a slow watcher costs no memory,
// only the risk of its history being compacted.
type Bolt struct {
	db    *bolt.DB
	keep  int64 // changes kept for Watch
	slack int64 // extra changes tolerated before a write compacts

	closing
	// commit, guarded by mu, is closed and replaced after every write,
	// waking the watchers that have caught up.
	commit chan struct{}

	watchers  sync.WaitGroup // watchers that may still read the file
	closeOnce func() error

	// wake tells the sweeper that a key with a deadline was created; the
	// sweeper, until Close, deletes expired keys.
	wake     chan struct{}
	sweeping sync.WaitGroup
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens the store at path, creating it (mode 0600) when missing.
// It refuses a bbolt file that is not a store.
func OpenBolt(path string, opts BoltOptions) (*Bolt, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultBoltTimeout
	}
	if opts.KeepEvents <= 0 {
		opts.KeepEvents = DefaultKeepEvents
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      opts.Timeout,
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("store: open %s: %w (waited %s)", path, ErrLocked, opts.Timeout)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := db.Update(initFile); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	keep := int64(opts.KeepEvents)
	s := &Bolt{
		db:      db,
		keep:    keep,
		slack:   min(max(keep/8, 1), maxCompactSlack),
		commit:  make(chan struct{}),
		closing: closing{done: make(chan struct{})},
		wake:    make(chan struct{}, 1),
	}
	s.closeOnce = sync.OnceValue(s.close)
	s.sweeping.Add(1)
	go s.sweep()
	return s, nil
}

// initFile creates the buckets of a new file and checks those of an
// existing one.
func initFile(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		// A new file has no buckets at all; anything else without our
		// meta bucket belongs to someone else.
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if !empty {
			return ErrNotStore
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(metaFormat, formatV1); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketKeys); err != nil {
			return err
		}
		if _, err = tx.CreateBucket(bucketEvents); err != nil {
			return err
		}
		return initExpiry(tx)
	}
	if !bytes.Equal(meta.Get(metaFormat), formatV1) || tx.Bucket(bucketKeys) == nil || tx.Bucket(bucketEvents) == nil {
		return ErrNotStore
	}
	// A file written before keys could expire has none that do.
	return initExpiry(tx)
}

// Get returns key's current value, or ErrNotFound.
func (s *Bolt) Get(ctx context.Context, key string) (KV, error) {
	if err := s.checkKey(ctx, key); err != nil {
		return KV{}, fmt.Errorf("store: get %q: %w", key, err)
	}
	var kv KV
	err := s.db.View(func(tx *bolt.Tx) error {
		var ok bool
		var err error
		kv, ok, err = getKV(tx.Bucket(bucketKeys), key)
		if err == nil && (!ok || expired(tx, key, time.Now())) {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return KV{}, fmt.Errorf("store: get %q: %w", key, boltErr(err))
	}
	return kv, nil
}

// Put sets key and returns the revision of the change.
func (s *Bolt) Put(ctx context.Context, key string, value []byte) (int64, error) {
	if value == nil {
		// nil means delete only to CompareAndSwap.
		value = []byte{}
	}
	rev, err := s.change(ctx, key, time.Time{}, func(KV, bool) ([]byte, error) { return value, nil })
	if err != nil {
		return 0, fmt.Errorf("store: put %q: %w", key, err)
	}
	return rev, nil
}

// CompareAndSwap sets key to value only if its ModRev is rev (rev 0: only
// if it does not exist); a nil value deletes it.
func (s *Bolt) CompareAndSwap(ctx context.Context, key string, rev int64, value []byte) (int64, error) {
	n, err := s.change(ctx, key, time.Time{}, func(cur KV, ok bool) ([]byte, error) {
		if cur.ModRev != rev {
			return nil, fmt.Errorf("%w: key is at revision %d, not %d", ErrConflict, cur.ModRev, rev)
		}
		if !ok && value == nil {
			return nil, ErrNotFound
		}
		return value, nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: compare-and-swap %q: %w", key, err)
	}
	return n, nil
}

// Delete removes key and returns the revision of the change, or
// ErrNotFound.
func (s *Bolt) Delete(ctx context.Context, key string) (int64, error) {
	rev, err := s.change(ctx, key, time.Time{}, func(_ KV, ok bool) ([]byte, error) {
		if !ok {
			return nil, ErrNotFound
		}
		return nil, nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: delete %q: %w", key, err)
	}
	return rev, nil
}

// change makes one write to key in its own transaction under the next
// revision. decide sees the key's current entry (ok false and a zero KV
// when it is missing) and returns the new value, nil to delete the key, or
// an error to change nothing. A non-zero expires makes a key that decide
// creates expire then.
func (s *Bolt) change(ctx context.Context, key string, expires time.Time, decide func(cur KV, ok bool) ([]byte, error)) (int64, error) {
	if err := s.checkKey(ctx, key); err != nil {
		return 0, err
	}
	var rev int64
	err := s.db.Update(func(tx *bolt.Tx) error {
		cur, ok, err := getKV(tx.Bucket(bucketKeys), key)
		if err != nil {
			return err
		}
		cur.Key = key
		if ok && expired(tx, key, time.Now()) {
			// Gone already for readers, only not swept yet: its delete
			// comes first, so that watchers see the key end before
			// anything else happens to it.
			if _, err := apply(tx, cur, true, nil); err != nil {
				return err
			}
			cur, ok = KV{Key: key}, false
		}
		value, err := decide(cur, ok)
		if err != nil {
			return err
		}
		if rev, err = apply(tx, cur, ok, value); err != nil {
			return err
		}
		if !ok && value != nil && !expires.IsZero() {
			if err := setExpiry(tx, key, expires); err != nil {
				return err
			}
		}
		return s.autoCompact(tx.Bucket(bucketMeta), tx.Bucket(bucketEvents), rev)
	})
	if err != nil {
		return 0, boltErr(err)
	}
	s.notify()
	return rev, nil
}

// apply writes one change to cur.Key (ok: it exists) under the next
// revision and returns that revision: value, or a delete when value is
// nil. A delete ends the key's expiry too.
func apply(tx *bolt.Tx, cur KV, ok bool, value []byte) (int64, error) {
	meta, keys, events := tx.Bucket(bucketMeta), tx.Bucket(bucketKeys), tx.Bucket(bucketEvents)
	last, err := metaInt(meta, metaRev)
	if err != nil {
		return 0, err
	}
	rev := last + 1
	ev := Event{Type: EventPut, KV: KV{Key: cur.Key, Value: value, CreateRev: rev, ModRev: rev}}
	if ok {
		ev.KV.CreateRev = cur.CreateRev
	}
	if value == nil {
		ev.Type = EventDelete
		err = keys.Delete([]byte(cur.Key))
		if err == nil {
			err = clearExpiry(tx, cur.Key)
		}
	} else {
		err = keys.Put([]byte(cur.Key), encodeEntry(ev.KV))
		if err == nil && !ok {
			// A new key starts without an expiry, even if a binary
			// that knew none deleted the key's former life.
			err = clearExpiry(tx, cur.Key)
		}
	}
	if err != nil {
		return 0, err
	}
	if err := events.Put(revBytes(rev), encodeEvent(ev)); err != nil {
		return 0, err
	}
	return rev, meta.Put(metaRev, revBytes(rev))
}

// autoCompact keeps the history to about s.keep changes.
func (s *Bolt) autoCompact(meta, events *bolt.Bucket, rev int64) error {
	compacted, err := metaInt(meta, metaCompacted)
	if err != nil {
		return err
	}
	if rev-compacted <= s.keep+s.slack {
		return nil
	}
	return compactTo(meta, events, compacted, rev-s.keep)
}

// compactTo deletes the changes after from up to and including to.
func compactTo(meta, events *bolt.Bucket, from, to int64) error {
	for r := from + 1; r <= to; r++ {
		if err := events.Delete(revBytes(r)); err != nil {
			return err
		}
	}
	return meta.Put(metaCompacted, revBytes(to))
}

// notify wakes the watchers waiting for the next write.
func (s *Bolt) notify() {
	s.mu.Lock()
	close(s.commit)
	s.commit = make(chan struct{})
	s.mu.Unlock()
}

// List returns the keys under prefix in key order, and the revision they
// are consistent with. Keys past their expiry are left out even before
// the sweeper deletes them, so a watcher from that revision may later see
// the delete of a key the list did not have.
func (s *Bolt) List(ctx context.Context, prefix string) ([]KV, int64, error) {
	if err := s.check(ctx); err != nil {
		return nil, 0, fmt.Errorf("store: list %q: %w", prefix, err)
	}
	var kvs []KV
	var rev int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if rev, err = metaInt(tx.Bucket(bucketMeta), metaRev); err != nil {
			return err
		}
		p := []byte(prefix)
		now := time.Now()
		c := tx.Bucket(bucketKeys).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if expired(tx, string(k), now) {
				continue
			}
			kv, err := decodeEntry(k, v)
			if err != nil {
				return err
			}
			kvs = append(kvs, kv)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("store: list %q: %w", prefix, boltErr(err))
	}
	return kvs, rev, nil
}

// Rev returns the store's current revision.
func (s *Bolt) Rev(ctx context.Context) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, fmt.Errorf("store: rev: %w", err)
	}
	var rev int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rev, err = metaInt(tx.Bucket(bucketMeta), metaRev)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: rev: %w", boltErr(err))
	}
	return rev, nil
}

// Compact deletes the changes up to and including rev.
func (s *Bolt) Compact(ctx context.Context, rev int64) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("store: compact %d: %w", rev, err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		cur, err := metaInt(meta, metaRev)
		if err != nil {
			return err
		}
		if rev > cur {
			return fmt.Errorf("beyond the current revision %d", cur)
		}
		compacted, err := metaInt(meta, metaCompacted)
		if err != nil || rev <= compacted {
			return err
		}
		return compactTo(meta, tx.Bucket(bucketEvents), compacted, rev)
	})
	if err != nil {
		return fmt.Errorf("store: compact %d: %w", rev, boltErr(err))
	}
	return nil
}

// Watch sends the changes to keys under prefix after rev. A negative rev
// is taken as 0.
func (s *Bolt) Watch(ctx context.Context, prefix string, rev int64) <-chan WatchResponse {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ch := make(chan WatchResponse, 1)
		ch <- WatchResponse{Err: fmt.Errorf("store: watch %q: %w", prefix, ErrClosed)}
		close(ch)
		return ch
	}
	// Added under mu so that Close, once it has set closed, waits for
	// every watcher there will ever be.
	s.watchers.Add(1)
	s.mu.Unlock()
	ch := make(chan WatchResponse)
	go s.watch(ctx, ch, prefix, max(rev, 0))
	return ch
}

// watch runs one watcher; it is owned by ctx and, until it stops reading
// the file, by Close.
func (s *Bolt) watch(ctx context.Context, ch chan<- WatchResponse, prefix string, rev int64) {
	defer close(ch)
	err := s.follow(ctx, ch, []byte(prefix), rev)
	// Off the file from here on: Close need not wait for a reader that
	// never takes the last response.
	s.watchers.Done()
	if err == nil {
		return
	}
	select {
	case ch <- WatchResponse{Err: fmt.Errorf("store: watch %q: %w", prefix, err)}:
	case <-ctx.Done():
	}
}

// follow sends the changes under prefix after rev until ctx ends (nil),
// the store closes (ErrClosed) or the history it needs is gone
// (ErrCompacted).
func (s *Bolt) follow(ctx context.Context, ch chan<- WatchResponse, prefix []byte, rev int64) error {
	for {
		if ctx.Err() != nil {
			return nil
		}
		// Taken before reading, so that a write committed after the read
		// has closed this very channel.
		s.mu.Lock()
		next := s.commit
		s.mu.Unlock()
		select {
		case <-s.done:
			return ErrClosed
		default:
		}

		evs, last, more, err := s.readEvents(prefix, rev)
		if err != nil {
			return boltErr(err)
		}
		rev = last
		if len(evs) > 0 {
			if stop, err := s.send(ctx, ch, evs); stop {
				return err
			}
		}
		if more {
			continue
		}
		select {
		case <-next:
		case <-ctx.Done():
			return nil
		case <-s.done:
			return ErrClosed
		}
	}
}

// readEvents reads up to watchBatch changes after rev in one transaction.
// It returns those under prefix, the revision of the last change read (rev
// when none) and whether more follow.
func (s *Bolt) readEvents(prefix []byte, rev int64) (evs []Event, last int64, more bool, err error) {
	last = rev
	err = s.db.View(func(tx *bolt.Tx) error {
		compacted, err := metaInt(tx.Bucket(bucketMeta), metaCompacted)
		if err != nil {
			return err
		}
		if rev < compacted {
			return fmt.Errorf("%w: changes after %d wanted, only those after %d kept", ErrCompacted, rev, compacted)
		}
		c := tx.Bucket(bucketEvents).Cursor()
		k, v := c.Seek(revBytes(rev + 1))
		for n := 0; k != nil && n < watchBatch; k, v = c.Next() {
			n++
			if len(k) != 8 {
				return fmt.Errorf("%w: event key of %d bytes", ErrNotStore, len(k))
			}
			last = int64(binary.BigEndian.Uint64(k))
			ev, match, err := decodeEvent(last, v, prefix)
			if err != nil {
				return err
			}
			if match {
				evs = append(evs, ev)
			}
		}
		more = k != nil
		return nil
	})
	return evs, last, more, err
}

// Close ends the watchers with ErrClosed and stops the sweeper, waits
// until none of them reads the file any more and closes it.
func (s *Bolt) Close() error {
	return s.closeOnce()
}

func (s *Bolt) close() error {
	s.shut()
	s.watchers.Wait()
	s.sweeping.Wait()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// boltErr turns bbolt's error for a closed file, met by a call that raced
// with Close, into ours.
func boltErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

func revBytes(rev int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(rev))
	return b
}

// metaInt reads a revision from the meta bucket; a missing one is 0.
func metaInt(meta *bolt.Bucket, name []byte) (int64, error) {
	v := meta.Get(name)
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return int64(binary.BigEndian.Uint64(v)), nil
	}
	return 0, fmt.Errorf("%w: meta %s of %d bytes", ErrNotStore, name, len(v))
}

// An entry is create_rev (8 bytes), mod_rev (8 bytes), value.
const entryHeader = 16

func encodeEntry(kv KV) []byte {
	b := make([]byte, entryHeader+len(kv.Value))
	binary.BigEndian.PutUint64(b, uint64(kv.CreateRev))
	binary.BigEndian.PutUint64(b[8:], uint64(kv.ModRev))
	copy(b[entryHeader:], kv.Value)
	return b
}

// decodeEntry copies the entry out, since bbolt's memory is only valid
// inside the transaction.
func decodeEntry(k, v []byte) (KV, error) {
	if len(v) < entryHeader {
		return KV{}, fmt.Errorf("%w: entry of %q is %d bytes", ErrNotStore, k, len(v))
	}
	return KV{
		Key:       string(k),
		Value:     append([]byte{}, v[entryHeader:]...),
		CreateRev: int64(binary.BigEndian.Uint64(v)),
		ModRev:    int64(binary.BigEndian.Uint64(v[8:])),
	}, nil
}

// getKV returns key's entry; ok is false when it is missing.
func getKV(keys *bolt.Bucket, key string) (kv KV, ok bool, err error) {
	v := keys.Get([]byte(key))
	if v == nil {
		return KV{}, false, nil
	}
	kv, err = decodeEntry([]byte(key), v)
	return kv, err == nil, err
}

// An event is type (1 byte), create_rev (8 bytes), the key's length
// (uvarint), key, value; its revision is its key in the bucket.
func encodeEvent(ev Event) []byte {
	b := make([]byte, 0, 1+8+binary.MaxVarintLen64+len(ev.KV.Key)+len(ev.KV.Value))
	b = append(b, byte(ev.Type))
	b = binary.BigEndian.AppendUint64(b, uint64(ev.KV.CreateRev))
	b = binary.AppendUvarint(b, uint64(len(ev.KV.Key)))
	b = append(b, ev.KV.Key...)
	return append(b, ev.KV.Value...)
}

// decodeEvent decodes the change stored under rev when its key is under
// prefix (match), copying it out of bbolt's memory.
func decodeEvent(rev int64, v, prefix []byte) (ev Event, match bool, err error) {
	if len(v) < 1+8 {
		return Event{}, false, fmt.Errorf("%w: event %d is %d bytes", ErrNotStore, rev, len(v))
	}
	typ := EventType(v[0])
	create := int64(binary.BigEndian.Uint64(v[1:]))
	n, w := binary.Uvarint(v[9:])
	if w <= 0 || n > uint64(len(v)-9-w) || (typ != EventPut && typ != EventDelete) {
		return Event{}, false, fmt.Errorf("%w: event %d does not decode", ErrNotStore, rev)
	}
	key := v[9+w : 9+w+int(n)]
	if !bytes.HasPrefix(key, prefix) {
		return Event{}, false, nil
	}
	ev = Event{Type: typ, KV: KV{Key: string(key), CreateRev: create, ModRev: rev}}
	if typ == EventPut {
		ev.KV.Value = append([]byte{}, v[9+w+int(n):]...)
	}
	return ev, true, nil
}
