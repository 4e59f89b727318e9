package vault

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	bucketMeta  = []byte("meta")
	bucketCreds = []byte("credentials")
)

// Meta keys, in the meta bucket of a file and under StorePrefix+"meta/"
// in a store.
const (
	metaFormat = "format"
	metaSalt   = "fingerprint_salt"
	// metaImported marks a store into which a vault file was imported to
	// the end: later imports copy nothing, so a credential deleted since
	// does not come back from the file.
	metaImported = "imported"
)

// boltRecords keeps the records in one bbolt file, which one process
// holds for writing. bbolt has no per-key revision: a record's revision is
// a hash of its bytes, so a compare-and-swap fails when they changed.
type boltRecords struct {
	db *bolt.DB
}

// openBolt opens (creating unless readOnly) the vault file at path.
func openBolt(path string, timeout time.Duration, readOnly bool) (*boltRecords, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: readOnly})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			err = fmt.Errorf("%w (waited %s for %s)", ErrLocked, timeout, path)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b := &boltRecords{db: db}
	if err := b.init(readOnly); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// init creates the buckets of a new vault and checks the format of an
// existing one.
func (b *boltRecords) init(readOnly bool) error {
	check := func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			if f := m.Get([]byte(metaFormat)); f != nil && string(f) != vaultFormat {
				return corrupt("vault format %q, want %q", f, vaultFormat)
			}
		}
		return nil
	}
	ready := false
	err := b.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		ready = m != nil && m.Get([]byte(metaFormat)) != nil && tx.Bucket(bucketCreds) != nil
		return check(tx)
	})
	if err != nil || ready || readOnly {
		// An existing vault is not written to on open.
		return err
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		if err := check(tx); err != nil {
			return err
		}
		return createBuckets(tx)
	})
}

func createBuckets(tx *bolt.Tx) error {
	m, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	if m.Get([]byte(metaFormat)) == nil {
		if err := m.Put([]byte(metaFormat), []byte(vaultFormat)); err != nil {
			return err
		}
	}
	_, err = tx.CreateBucketIfNotExists(bucketCreds)
	return err
}

// contentRev is the revision of a value in a file: 0 for none, else a
// non-zero hash of its bytes.
func contentRev(data []byte) int64 {
	if data == nil {
		return 0
	}
	sum := sha256.Sum256(data)
	return int64(binary.BigEndian.Uint64(sum[:8])>>1) | 1
}

func (b *boltRecords) get(_ context.Context, name string) ([]byte, int64, error) {
	var data []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketCreds)
		if bk == nil {
			return ErrNotFound
		}
		d := bk.Get([]byte(name))
		if d == nil {
			return ErrNotFound
		}
		data = bytes.Clone(d)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return data, contentRev(data), nil
}

func (b *boltRecords) list(context.Context) ([]stored, map[string]stored, error) {
	var recs []stored
	meta := map[string]stored{}
	err := b.db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			if err := m.ForEach(func(k, d []byte) error {
				if d != nil {
					data := bytes.Clone(d)
					meta[string(k)] = stored{name: string(k), data: data, rev: contentRev(data)}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		bk := tx.Bucket(bucketCreds)
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(k, d []byte) error {
			data := bytes.Clone(d)
			recs = append(recs, stored{name: string(k), data: data, rev: contentRev(data)})
			return nil
		})
	})
	if err != nil {
		return nil, nil, err
	}
	return recs, meta, nil
}

func (b *boltRecords) meta(_ context.Context, key string) ([]byte, int64, error) {
	var data []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			data = bytes.Clone(m.Get([]byte(key)))
		}
		return nil
	})
	return data, contentRev(data), err
}

func (b *boltRecords) apply(_ context.Context, changes []change) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		for _, c := range changes {
			bk := tx.Bucket(bucketCreds)
			if c.meta {
				bk = tx.Bucket(bucketMeta)
			}
			if contentRev(bk.Get([]byte(c.name))) != c.rev {
				return ErrConflict
			}
			var err error
			if c.data == nil {
				err = bk.Delete([]byte(c.name))
			} else {
				err = bk.Put([]byte(c.name), c.data)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *boltRecords) delete(_ context.Context, name string) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketCreds)
		if bk.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		return bk.Delete([]byte(name))
	})
}

func (b *boltRecords) writeSnapshot(_ context.Context, w io.Writer) error {
	return b.db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(w)
		return err
	})
}

func (b *boltRecords) path() string  { return b.db.Path() }
func (b *boltRecords) where() string { return b.db.Path() }
func (b *boltRecords) close() error  { return b.db.Close() }
