package detect

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Persistent is a detector whose learned state (baselines, profiles) can
// be saved and restored, so that a restart does not start learning over.
// credential_burst and scope_drift implement it.
type Persistent interface {
	// Name is the detector's name, the key its state is stored under.
	Name() string
	// MarshalState returns a snapshot of the learned state.
	MarshalState() ([]byte, error)
	// UnmarshalState replaces the learned state with a snapshot from
	// MarshalState. On error (wrapping ErrBadState) the state is unchanged.
	UnmarshalState([]byte) error
}

// DefaultStoreTimeout bounds the wait for the state file's lock.
const DefaultStoreTimeout = time.Second

// StoreOptions configure OpenStore.
type StoreOptions struct {
	// Timeout bounds the wait for the file lock another process holds
	// (DefaultStoreTimeout when zero), so opening never hangs.
	Timeout time.Duration
	// Now stamps saved state (time.Now when nil).
	Now func() time.Time
}

// Store keeps detectors' learned state in its own bbolt file (detect.db in
// the data directory). It owns no goroutine: the caller saves periodically
// and on shutdown.
type Store struct {
	db  *bolt.DB
	now func() time.Time

	mu     sync.Mutex
	closed bool
}

var (
	bucketMeta  = []byte("meta")
	bucketState = []byte("state")
	keyFormat   = []byte("format")
	formatV1    = []byte("stack-detect-state-v1")
)

// storedState is the value stored under a detector's name.
type storedState struct {
	Version int             `json:"v"`
	SavedAt time.Time       `json:"saved_at"`
	State   json.RawMessage `json:"state"`
}

// OpenStore opens (creating when missing) the state file at path, with
// mode 0600. It refuses a bbolt file that is not a state store.
func OpenStore(path string, opts StoreOptions) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultStoreTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("detect: open store %s: %w (waited %s)", path, ErrStoreLocked, opts.Timeout)
		}
		return nil, fmt.Errorf("detect: open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			// A new file has no buckets at all; anything else without our
			// meta bucket is some other store.
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return ErrNotStore
			}
			meta, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			if err := meta.Put(keyFormat, formatV1); err != nil {
				return err
			}
			_, err = tx.CreateBucket(bucketState)
			return err
		}
		if string(meta.Get(keyFormat)) != string(formatV1) || tx.Bucket(bucketState) == nil {
			return ErrNotStore
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("detect: open store %s: %w", path, err)
	}
	return &Store{db: db, now: opts.Now}, nil
}

// Save snapshots each detector's state and writes them all in one
// transaction (durable when Save returns).
func (s *Store) Save(detectors ...Persistent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("detect: save state: %w", ErrStoreClosed)
	}
	vals := make([][]byte, len(detectors))
	for i, d := range detectors {
		st, err := d.MarshalState()
		if err != nil {
			return fmt.Errorf("detect: save state of %s: %w", d.Name(), err)
		}
		vals[i], err = json.Marshal(storedState{Version: 1, SavedAt: s.now().UTC(), State: st})
		if err != nil {
			return fmt.Errorf("detect: save state of %s: %w", d.Name(), err)
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketState)
		for i, d := range detectors {
			if err := b.Put([]byte(d.Name()), vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("detect: save state: %w", err)
	}
	return nil
}

// Load restores each detector's saved state; a detector with none saved
// is left as it is. It tries every detector and returns the errors of
// those it could not restore, joined.
func (s *Store) Load(detectors ...Persistent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("detect: load state: %w", ErrStoreClosed)
	}
	vals := make([][]byte, len(detectors))
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketState)
		for i, d := range detectors {
			if v := b.Get([]byte(d.Name())); v != nil {
				vals[i] = append([]byte(nil), v...) // valid only inside the transaction
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("detect: load state: %w", err)
	}
	var errs []error
	for i, d := range detectors {
		if vals[i] == nil {
			continue
		}
		var st storedState
		if err := json.Unmarshal(vals[i], &st); err != nil || st.Version != 1 {
			errs = append(errs, fmt.Errorf("detect: load state of %s: %w", d.Name(), ErrBadState))
			continue
		}
		if err := d.UnmarshalState(st.State); err != nil {
			errs = append(errs, fmt.Errorf("detect: load state of %s: %w", d.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Close closes the file. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("detect: close store: %w", err)
	}
	return nil
}

// lru is a map bounded to max entries that forgets the least recently
// used one when full. Not safe for concurrent use: detectors hold their
// own lock around it.
type lru[V any] struct {
	max        int
	m          map[string]*lruEntry[V]
	head, tail *lruEntry[V] // head is the most recently used
}

type lruEntry[V any] struct {
	key        string
	val        V
	prev, next *lruEntry[V]
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, m: map[string]*lruEntry[V]{}}
}

func (l *lru[V]) len() int { return len(l.m) }

// get returns the value for key and marks it used.
func (l *lru[V]) get(key string) (V, bool) {
	e, ok := l.m[key]
	if !ok {
		var zero V
		return zero, false
	}
	l.toFront(e)
	return e.val, true
}

// getBytes is get for a key held in a byte slice; the look-up does not
// copy it.
func (l *lru[V]) getBytes(key []byte) (V, bool) {
	e, ok := l.m[string(key)]
	if !ok {
		var zero V
		return zero, false
	}
	l.toFront(e)
	return e.val, true
}

// put stores val under key as the most recently used, evicting the least
// recently used entry when the map is full.
func (l *lru[V]) put(key string, val V) {
	if e, ok := l.m[key]; ok {
		e.val = val
		l.toFront(e)
		return
	}
	if l.max > 0 && len(l.m) >= l.max && l.tail != nil {
		l.remove(l.tail)
	}
	e := &lruEntry[V]{key: key, val: val}
	l.m[key] = e
	l.pushFront(e)
}

// oldest returns the least recently used entry, if any.
func (l *lru[V]) oldest() (string, V, bool) {
	if l.tail == nil {
		var zero V
		return "", zero, false
	}
	return l.tail.key, l.tail.val, true
}

func (l *lru[V]) delete(key string) {
	if e, ok := l.m[key]; ok {
		l.remove(e)
	}
}

// eachOldestFirst calls f from the least to the most recently used
// entry, the order in which put rebuilds the same recency.
func (l *lru[V]) eachOldestFirst(f func(key string, val V)) {
	for e := l.tail; e != nil; e = e.prev {
		f(e.key, e.val)
	}
}

func (l *lru[V]) remove(e *lruEntry[V]) {
	l.unlink(e)
	delete(l.m, e.key)
}

func (l *lru[V]) toFront(e *lruEntry[V]) {
	if l.head == e {
		return
	}
	l.unlink(e)
	l.pushFront(e)
}

func (l *lru[V]) pushFront(e *lruEntry[V]) {
	e.prev, e.next = nil, l.head
	if l.head != nil {
		l.head.prev = e
	}
	l.head = e
	if l.tail == nil {
		l.tail = e
	}
}

func (l *lru[V]) unlink(e *lruEntry[V]) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
}
