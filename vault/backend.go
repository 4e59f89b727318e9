package vault

import (
	"context"
	"errors"
	"io"
)

// records is where a Vault keeps what it stores: each credential's record
// and a few meta values (the format marker, the wrapped fingerprint salt).
// It only ever sees what is stored, wrapped keys and ciphertexts; the
// Vault does all the crypto. boltRecords (the vault file) and
// storeRecords (a control store, shared by replicas) implement it.
//
// Revisions make concurrent writers safe without a lock they share: a
// write names the revision it read and fails with ErrConflict when another
// change came in between. Revision 0 means "absent".
type records interface {
	// get returns name's record and its revision, or ErrNotFound.
	get(ctx context.Context, name string) ([]byte, int64, error)
	// list returns every record, in name order, and the meta values, as
	// of one moment.
	list(ctx context.Context) (recs []stored, meta map[string]stored, err error)
	// meta returns the meta value key and its revision; nil and 0 when
	// there is none.
	meta(ctx context.Context, key string) ([]byte, int64, error)
	// apply makes every change if each record or meta value it names is
	// still at the change's revision, else ErrConflict. The vault file
	// makes them in one transaction; a store makes them in turn, so a
	// failure can leave the changes before it made.
	apply(ctx context.Context, changes []change) error
	// delete removes name's record, or returns ErrNotFound.
	delete(ctx context.Context, name string) error
	// writeSnapshot writes a vault file holding the records and meta
	// values as of one moment.
	writeSnapshot(ctx context.Context, w io.Writer) error
	// path is the vault file, or "" when the records are not in one.
	path() string
	// where names the records' home in errors.
	where() string
	close() error
}

// stored is a record or meta value as read.
type stored struct {
	name string
	data []byte
	rev  int64
}

// change is one write of apply: data under name (a meta key when meta is
// set) if it is still at rev.
type change struct {
	meta bool
	name string
	rev  int64
	data []byte
}

// errShared refuses to change the KMS key of a vault in a control store:
// every replica would have to switch to the new key at the same instant.
var errShared = errors.New("the vault is shared by the control plane's replicas in its store: its KMS key cannot be changed")
