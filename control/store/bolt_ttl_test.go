package store_test

import (
	"errors"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stackctl/stack/control/store"
)

// A key that expires while no process holds the file is gone when the file
// is opened again: not readable at once, and deleted as a change of its own
// before anything else happens to it.
func TestBoltExpiryOutlivesClose(t *testing.T) {
	ctx := t.Context()
	s, path := openBolt(t, store.BoltOptions{})
	const ttl = 500 * time.Millisecond
	if _, err := s.Create(ctx, "short", []byte("v"), ttl); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "long", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(ttl)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(deadline) + 50*time.Millisecond)

	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(ctx, "short"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a key that expired while closed = %v, want ErrNotFound", err)
	}
	if kvs, _, err := s.List(ctx, ""); err != nil || len(kvs) != 1 || kvs[0].Key != "long" {
		t.Fatalf("List after reopening = %v, %v; want only long", kvs, err)
	}
	// Made again at once, racing the sweeper: either way the expiry's
	// delete comes first and the new key starts a life of its own.
	r, err := s.CompareAndSwap(ctx, "short", 0, []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	evs, err := watchN(s.Watch(ctx, "short", 2), 2)
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].Type != store.EventDelete || evs[0].KV.ModRev != 3 || evs[1].Type != store.EventPut || evs[1].KV.ModRev != r || r != 4 {
		t.Fatalf("after reopening: %+v, put at %d; want the expiry at 3 and the new put at 4", evs, r)
	}
	kv, err := s.Get(ctx, "short")
	if err != nil || string(kv.Value) != "new" || kv.CreateRev != 4 {
		t.Fatalf("Get of the new key = %+v, %v", kv, err)
	}
}

// A file written before keys could expire opens, and its keys can then
// expire.
func TestBoltOpensFileWithoutExpiry(t *testing.T) {
	ctx := t.Context()
	s, path := openBolt(t, store.BoltOptions{})
	if _, err := s.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return errors.Join(tx.DeleteBucket([]byte("expiry")), tx.DeleteBucket([]byte("expiring")))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	s, err = store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatalf("open a file without the expiry buckets: %v", err)
	}
	defer s.Close()
	if kv, err := s.Get(ctx, "k"); err != nil || string(kv.Value) != "v" {
		t.Fatalf("Get = %+v, %v", kv, err)
	}
	r, err := s.Create(ctx, "t", []byte("v"), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := watchN(s.Watch(ctx, "t", r), 1)
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].Type != store.EventDelete {
		t.Fatalf("event after Create: %+v, want its expiry", evs[0])
	}
}

// A key deleted by a binary that knew no expiry leaves its deadline
// behind; made again, the key must not inherit it.
func TestBoltNewKeyIgnoresLeftoverDeadline(t *testing.T) {
	ctx := t.Context()
	s, path := openBolt(t, store.BoltOptions{})
	const ttl = 2 * time.Second
	if _, err := s.Create(ctx, "k", []byte("old"), ttl); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(ttl)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("keys")).Delete([]byte("k")) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	s, err = store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Put(ctx, "k", []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	if time.Now().After(deadline) {
		t.Skip("the old deadline passed before the key was made again")
	}
	time.Sleep(time.Until(deadline) + 100*time.Millisecond)
	if kv, err := s.Get(ctx, "k"); err != nil || string(kv.Value) != "new" || kv.ModRev != r {
		t.Fatalf("Get of the key made again after its old deadline = %+v, %v", kv, err)
	}
}
