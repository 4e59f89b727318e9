package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/stackctl/stack/control/store"
)

// StorePrefix is where a vault opened with OpenStore keeps its keys in the
// store: StorePrefix+"records/NAME" holds credential NAME's record (the
// JSON of the file's credentials bucket), StorePrefix+"meta/format" and
// StorePrefix+"meta/fingerprint_salt" the meta values. The control plane
// streams none of it to sidecars.
const StorePrefix = "vaultdata/"

const (
	keyRecords = StorePrefix + "records/"
	keyMeta    = StorePrefix + "meta/"
)

// storeRecords keeps the records in a control store, where every replica
// of the control plane reads and writes the same ones. Revisions are the
// store's ModRev.
type storeRecords struct {
	s store.Store
}

// openStoreRecords checks the format marker of the vault in s, writing it
// if there is none (and readOnly is false).
func openStoreRecords(ctx context.Context, s store.Store, readOnly bool) (*storeRecords, error) {
	r := &storeRecords{s: s}
	for {
		kv, err := s.Get(ctx, keyMeta+metaFormat)
		if err == nil {
			if string(kv.Value) != vaultFormat {
				return nil, corrupt("vault format %q, want %q", kv.Value, vaultFormat)
			}
			return r, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if readOnly {
			return r, nil
		}
		_, err = s.CompareAndSwap(ctx, keyMeta+metaFormat, 0, []byte(vaultFormat))
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, err
		}
		// Another replica wrote it meanwhile: check what it wrote.
	}
}

// storeErr maps the store's errors to the vault's.
func storeErr(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound
	case errors.Is(err, store.ErrConflict):
		return ErrConflict
	}
	return err
}

func (r *storeRecords) get(ctx context.Context, name string) ([]byte, int64, error) {
	kv, err := r.s.Get(ctx, keyRecords+name)
	if err != nil {
		return nil, 0, storeErr(err)
	}
	return kv.Value, kv.ModRev, nil
}

func (r *storeRecords) list(ctx context.Context) ([]stored, map[string]stored, error) {
	// One List of both, so that they are of one revision.
	kvs, _, err := r.s.List(ctx, StorePrefix)
	if err != nil {
		return nil, nil, err
	}
	var recs []stored
	meta := map[string]stored{}
	for _, kv := range kvs {
		if name, ok := strings.CutPrefix(kv.Key, keyRecords); ok {
			recs = append(recs, stored{name: name, data: kv.Value, rev: kv.ModRev})
		} else if key, ok := strings.CutPrefix(kv.Key, keyMeta); ok {
			meta[key] = stored{name: key, data: kv.Value, rev: kv.ModRev}
		}
	}
	return recs, meta, nil
}

func (r *storeRecords) meta(ctx context.Context, key string) ([]byte, int64, error) {
	kv, err := r.s.Get(ctx, keyMeta+key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return kv.Value, kv.ModRev, nil
}

// apply makes the changes in turn: the store has no transaction over
// several keys. Each is a compare-and-swap, so none overwrites a change it
// did not see.
func (r *storeRecords) apply(ctx context.Context, changes []change) error {
	for _, c := range changes {
		key := keyRecords + c.name
		if c.meta {
			key = keyMeta + c.name
		}
		_, err := r.s.CompareAndSwap(ctx, key, c.rev, c.data)
		if errors.Is(err, store.ErrNotFound) {
			// A delete of what is already gone.
			err = store.ErrConflict
		}
		if err != nil {
			return storeErr(err)
		}
	}
	return nil
}

func (r *storeRecords) delete(ctx context.Context, name string) error {
	_, err := r.s.Delete(ctx, keyRecords+name)
	return storeErr(err)
}

// writeSnapshot writes a vault file with what the store holds, as of one
// revision: a file Open reads, and stack vault list and check too.
func (r *storeRecords) writeSnapshot(ctx context.Context, w io.Writer) error {
	recs, meta, err := r.list(ctx)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp("", "stack-vault-snapshot-*.db")
	if err != nil {
		return err
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: DefaultOpenTimeout})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		if err := createBuckets(tx); err != nil {
			return err
		}
		m, creds := tx.Bucket(bucketMeta), tx.Bucket(bucketCreds)
		for key, s := range meta {
			if key == metaFormat {
				continue // checked on open; the file has its own
			}
			if err := m.Put([]byte(key), s.data); err != nil {
				return err
			}
		}
		for _, s := range recs {
			if err := creds.Put([]byte(s.name), s.data); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(w)
		return err
	})
}

func (r *storeRecords) path() string { return "" }

func (r *storeRecords) where() string { return "control store " + StorePrefix }

// close leaves the store open: it is the caller's.
func (r *storeRecords) close() error { return nil }
