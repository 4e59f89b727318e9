package audit

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// What a log that ships its records to a control plane needs of it: an
// identity that survives restarts, its records and checkpoints as stored,
// and a mark of what the control plane holds, which Prune respects.
var (
	metaLogID   = []byte("log_id")
	metaShipped = []byte("shipped")
)

// newLogID is 16 random bytes in hex: the identity a log keeps for its
// whole life, so a control plane tells a new log from a cut one.
func newLogID() ([]byte, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return []byte(hex.EncodeToString(b)), nil
}

// ensureLogID gives a writable log without an identity one (logs made
// before identities existed get theirs at their next writable open).
func ensureLogID(meta *bolt.Bucket) error {
	if meta.Get(metaLogID) != nil {
		return nil
	}
	id, err := newLogID()
	if err != nil {
		return err
	}
	return meta.Put(metaLogID, id)
}

// ID returns the log's identity: 32 hex digits made when the log was
// created (or first opened writable), never changed. It is empty for a
// read-only log that never had a writer since identities were added.
func (l *Log) ID() string { return l.id }

// ScanStored calls fn with every record with seq >= from exactly as
// stored (a copy fn may keep), in order, without decoding or checking
// it: a shipper hands the bytes on and the receiver checks them. It
// returns the seq to resume from. fn returning ErrStop ends it with a nil
// error.
func (l *Log) ScanStored(ctx context.Context, from uint64, fn func(seq uint64, stored []byte) error) (next uint64, err error) {
	if err := l.usable(ctx, "scan", false); err != nil {
		return from, err
	}
	next = from
	for {
		n := 0
		err := l.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketRecords).Cursor()
			for k, v := c.Seek(seqKey(next)); k != nil && n < scanChunk; k, v = c.Next() {
				if err := ctx.Err(); err != nil {
					return err
				}
				n++
				seq := binary.BigEndian.Uint64(k)
				next = seq + 1
				if err := fn(seq, append([]byte(nil), v...)); err != nil {
					return err
				}
			}
			return nil
		})
		if errors.Is(err, ErrStop) {
			return next, nil
		}
		if err != nil {
			return next, fmt.Errorf("audit: scan: %w", err)
		}
		if n < scanChunk {
			return next, nil
		}
	}
}

// ScanCheckpoints calls fn with every stored checkpoint whose size is at
// least from and at most to (0: no bound), oldest first, as the signed
// note stored (a copy).
func (l *Log) ScanCheckpoints(ctx context.Context, from, to uint64, fn func(size uint64, note []byte) error) error {
	if err := l.usable(ctx, "checkpoints", false); err != nil {
		return err
	}
	err := l.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketCheckpoints).Cursor()
		for k, v := c.Seek(seqKey(from)); k != nil; k, v = c.Next() {
			size := binary.BigEndian.Uint64(k)
			if to != 0 && size > to {
				return nil
			}
			if err := fn(size, append([]byte(nil), v...)); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, ErrStop) {
		return nil
	}
	return err
}

// Anchor returns the stored anchor note of a pruned log; ok is false when
// the log was never pruned.
func (l *Log) Anchor() (note []byte, ok bool, err error) {
	if err := l.usable(context.Background(), "anchor", false); err != nil {
		return nil, false, err
	}
	err = l.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(metaAnchor); v != nil {
			note, ok = append([]byte(nil), v...), true
		}
		return nil
	})
	return note, ok, err
}

// MarkShipped records that a control plane holds every record up to seq.
// From the first mark on the log ships, and Prune removes no record past
// the mark. A mark never moves back.
func (l *Log) MarkShipped(seq uint64) error {
	if err := l.usable(context.Background(), "mark shipped", true); err != nil {
		return err
	}
	return l.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(metaShipped); len(v) == 8 && binary.BigEndian.Uint64(v) >= seq {
			return nil
		}
		return meta.Put(metaShipped, seqKey(seq))
	})
}

// Shipped returns the last mark; ok is false for a log that never shipped.
func (l *Log) Shipped() (seq uint64, ok bool, err error) {
	if err := l.usable(context.Background(), "shipped", false); err != nil {
		return 0, false, err
	}
	err = l.db.View(func(tx *bolt.Tx) error {
		seq, ok = shippedMark(tx.Bucket(bucketMeta))
		return nil
	})
	return seq, ok, err
}

func shippedMark(meta *bolt.Bucket) (uint64, bool) {
	v := meta.Get(metaShipped)
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}
