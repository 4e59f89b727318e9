package passport

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// RevocationKind says what a Revocation names.
type RevocationKind string

// Kinds of revocation.
const (
	// RevokeJTI revokes one passport and every passport delegated from it.
	RevokeJTI RevocationKind = "jti"
	// RevokeAgent revokes every passport of an agent issued at or before
	// the revocation.
	RevokeAgent RevocationKind = "agent"
)

// Revocation is one entry of the revocation set.
type Revocation struct {
	Kind RevocationKind `json:"kind"`
	// ID is the jti or the agent id.
	ID string `json:"id"`
	// RevokedAt is when it was revoked; for an agent, passports issued at
	// or before this second are revoked.
	RevokedAt time.Time `json:"revoked_at"`
	// ExpiresAt is when no passport the entry covers can still be valid;
	// the entry is pruned after it.
	ExpiresAt time.Time `json:"expires_at"`
	// Reason is free text for people and the audit log.
	Reason string `json:"reason,omitempty"`
}

// RevocationOptions configure OpenRevocationStore. Zero values take the
// defaults.
type RevocationOptions struct {
	// Timeout bounds the wait for the file lock (default 1s), so a CLI never
	// hangs behind a running proxy.
	Timeout time.Duration
	// MaxTTL and Leeway size the life of entries whose covered passports'
	// expiry is unknown: now + MaxTTL + Leeway (defaults DefaultMaxTTL and
	// DefaultLeeway).
	MaxTTL time.Duration
	Leeway time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

var (
	bucketJTI   = []byte("jti")
	bucketAgent = []byte("agent")
)

// RevocationStore is the revocation set: revoked jtis and agents, kept in
// memory for O(1) checks and persisted in its own bbolt file. Entries
// expire when no passport they cover can still be valid; Prune (called on
// open and by the owner, e.g. on a ticker) removes them. It is safe for
// concurrent use.
type RevocationStore struct {
	db     *bolt.DB
	now    func() time.Time
	keep   time.Duration // MaxTTL + Leeway
	leeway time.Duration
	mu     sync.RWMutex
	jtis   map[string]Revocation
	agents map[string]Revocation
	closed bool
	notify []func(Revocation)
}

// OpenRevocationStore opens (creating if needed) the store at path, loads
// it into memory and prunes expired entries.
func OpenRevocationStore(path string, opts RevocationOptions) (*RevocationStore, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	maxTTL, leeway := opts.MaxTTL, opts.Leeway
	if maxTTL <= 0 {
		maxTTL = DefaultMaxTTL
	}
	if leeway <= 0 {
		leeway = DefaultLeeway
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open revocation store %s: %w", path, ErrStoreLocked)
		}
		return nil, fmt.Errorf("open revocation store %s: %w", path, err)
	}
	s := &RevocationStore{
		db: db, now: now, keep: maxTTL + leeway, leeway: leeway,
		jtis: make(map[string]Revocation), agents: make(map[string]Revocation),
	}
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open revocation store %s: %w", path, err)
	}
	if _, err := s.Prune(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *RevocationStore) load() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range []struct {
			name []byte
			m    map[string]Revocation
		}{{bucketJTI, s.jtis}, {bucketAgent, s.agents}} {
			bk, err := tx.CreateBucketIfNotExists(b.name)
			if err != nil {
				return err
			}
			if err := bk.ForEach(func(k, v []byte) error {
				var r Revocation
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("entry %q: %w", k, err)
				}
				b.m[string(k)] = r
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

// RevokeJTI revokes one passport (and its delegated descendants). Pass the
// passport's exp when known; zero means now + MaxTTL + Leeway.
func (s *RevocationStore) RevokeJTI(jti string, exp time.Time, reason string) (Revocation, error) {
	now := s.now().UTC()
	r := Revocation{Kind: RevokeJTI, ID: jti, RevokedAt: now, ExpiresAt: now.Add(s.keep), Reason: reason}
	if !exp.IsZero() {
		r.ExpiresAt = exp.Add(s.leeway).UTC()
		if !r.ExpiresAt.After(now) {
			r.ExpiresAt = now.Add(s.keep)
		}
	}
	return r, s.Add(r)
}

// RevokeAgent revokes every passport of agent issued up to now.
func (s *RevocationStore) RevokeAgent(agent, reason string) (Revocation, error) {
	now := s.now().UTC()
	r := Revocation{Kind: RevokeAgent, ID: agent, RevokedAt: now, ExpiresAt: now.Add(s.keep), Reason: reason}
	return r, s.Add(r)
}

// Notify calls f after each revocation Add records (from this process or
// a control plane's feed), outside the store's lock, for what else must
// forget a revoked agent (credentials minted for it). Call it before the
// store is shared.
func (s *RevocationStore) Notify(f func(Revocation)) {
	s.mu.Lock()
	s.notify = append(s.notify, f)
	s.mu.Unlock()
}

// Add records a revocation, from this process or from outside (a control
// plane's feed). It is durable when Add returns. An entry merges with an
// existing one for the same name: the later RevokedAt and ExpiresAt win.
func (s *RevocationStore) Add(r Revocation) error {
	if err := s.add(r); err != nil {
		return err
	}
	s.mu.RLock()
	notify := s.notify
	s.mu.RUnlock()
	for _, f := range notify {
		f(r)
	}
	return nil
}

func (s *RevocationStore) add(r Revocation) error {
	if r.ID == "" {
		return fmt.Errorf("add revocation: empty id: %w", ErrInvalidRequest)
	}
	var bucket []byte
	switch r.Kind {
	case RevokeJTI:
		bucket = bucketJTI
	case RevokeAgent:
		bucket = bucketAgent
	default:
		return fmt.Errorf("add revocation: kind %q: %w", r.Kind, ErrInvalidRequest)
	}
	if r.RevokedAt.IsZero() {
		r.RevokedAt = s.now().UTC()
	}
	if r.ExpiresAt.IsZero() {
		r.ExpiresAt = r.RevokedAt.Add(s.keep)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("add revocation: %w", ErrClosed)
	}
	m := s.mapOf(r.Kind)
	if old, ok := m[r.ID]; ok {
		if old.RevokedAt.After(r.RevokedAt) {
			r.RevokedAt = old.RevokedAt
		}
		if old.ExpiresAt.After(r.ExpiresAt) {
			r.ExpiresAt = old.ExpiresAt
		}
		if r.Reason == "" {
			r.Reason = old.Reason
		}
	}
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("add revocation: %w", err)
	}
	// Write first, then publish in memory: a failed write revokes nothing
	// it cannot remember.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(r.ID), v)
	}); err != nil {
		return fmt.Errorf("add revocation %s %s: %w", r.Kind, r.ID, err)
	}
	m[r.ID] = r
	return nil
}

func (s *RevocationStore) mapOf(k RevocationKind) map[string]Revocation {
	if k == RevokeAgent {
		return s.agents
	}
	return s.jtis
}

// Revoked reports whether q's passport, any ancestor in its chain, or its
// agent (for passports issued at or before the agent's revocation, to the
// second) is revoked. Map lookups only; no I/O.
func (s *RevocationStore) Revoked(q RevocationQuery) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.jtis[q.JTI]; ok {
		return true
	}
	for _, j := range q.Chain {
		if _, ok := s.jtis[j]; ok {
			return true
		}
	}
	if r, ok := s.agents[q.Agent]; ok && q.IssuedAt.Unix() <= r.RevokedAt.Unix() {
		return true
	}
	// A passport delegated from one the agent revocation covers.
	for _, a := range q.Ancestors {
		if r, ok := s.agents[a.Agent]; ok && a.IssuedAt.Unix() <= r.RevokedAt.Unix() {
			return true
		}
	}
	return false
}

// Prune removes entries expired at the store's clock and reports how many.
func (s *RevocationStore) Prune() (int, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, fmt.Errorf("prune revocations: %w", ErrClosed)
	}
	type victim struct {
		bucket []byte
		id     string
	}
	var gone []victim
	for id, r := range s.jtis {
		if !now.Before(r.ExpiresAt) {
			gone = append(gone, victim{bucketJTI, id})
		}
	}
	for id, r := range s.agents {
		if !now.Before(r.ExpiresAt) {
			gone = append(gone, victim{bucketAgent, id})
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for _, v := range gone {
			if err := tx.Bucket(v.bucket).Delete([]byte(v.id)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("prune revocations: %w", err)
	}
	for _, v := range gone {
		if string(v.bucket) == string(bucketJTI) {
			delete(s.jtis, v.id)
		} else {
			delete(s.agents, v.id)
		}
	}
	return len(gone), nil
}

// List returns every entry, agents first, then by id.
func (s *RevocationStore) List() []Revocation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Revocation, 0, len(s.jtis)+len(s.agents))
	for _, r := range s.agents {
		out = append(out, r)
	}
	for _, r := range s.jtis {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind == RevokeAgent
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Close closes the file. It is idempotent; the in-memory set keeps
// answering Revoked.
func (s *RevocationStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.db.Close()
}

// WriteSnapshot writes a consistent copy of the store's file to w, for a
// CLI that cannot open the file while a running sidecar holds it.
func (s *RevocationStore) WriteSnapshot(w io.Writer) error {
	return s.db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(w)
		return err
	})
}
