package audit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// pruneChunk bounds the records removed per transaction; each transaction
// moves the anchor with the records it removes, so a prune interrupted
// between two leaves a log that verifies.
const pruneChunk = 50000

// Prune removes the oldest records: the longest run from the start of the
// log whose timestamps are all before before (it stops at the first newer
// record, so the remaining records stay one contiguous chain). In the same
// transactions it stores the anchor, the seq and hash of the last removed
// record, signed when Options.Signer is set, and drops checkpoints whose
// size is below the anchor (they no longer name a record that exists).
// A log that ships (MarkShipped) keeps every record past its mark: only
// what a control plane holds may go.
//
// Prune re-checks the hash and link of every record it removes and stops
// with a *VerifyError at the first bad one: it never launders a tampered
// record into a trusted anchor.
func (l *Log) Prune(ctx context.Context, before time.Time) (removed int, err error) {
	if err := l.usable(ctx, "prune", true); err != nil {
		return 0, err
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.applyLocked(); err != nil {
		return 0, fmt.Errorf("audit: prune: %w", err)
	}
	limit := before.UnixMilli()
	for {
		n, done, err := l.pruneChunk(ctx, limit)
		removed += n
		if err != nil || done {
			return removed, err
		}
	}
}

func (l *Log) pruneChunk(ctx context.Context, limit int64) (n int, done bool, err error) {
	err = l.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		expectSeq, prev := uint64(1), GenesisHash
		if raw := meta.Get(metaAnchor); raw != nil {
			a, err := ParseAnchor(raw, nil)
			if err != nil {
				return err
			}
			expectSeq, prev = a.Seq+1, a.Hash
		}
		shipped, ships := shippedMark(meta)
		c := tx.Bucket(bucketRecords).Cursor()
		for n < pruneChunk {
			if n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			k, v := c.First()
			if k == nil {
				done = true
				break
			}
			if err := checkStored(k, v, expectSeq, prev); err != nil {
				return err
			}
			if int64(binary.BigEndian.Uint64(v[41:49])) >= limit || ships && expectSeq > shipped {
				done = true
				break
			}
			copy(prev[:], v[len(v)-32:]) // before Delete, which may reuse v's memory
			if err := c.Delete(); err != nil {
				return err
			}
			expectSeq++
			n++
		}
		if n == 0 {
			return nil
		}
		anchorSeq := expectSeq - 1
		text := statementText(AnchorOrigin, anchorSeq, prev, l.now())
		raw := []byte(text)
		if l.opts.Signer != nil {
			var err error
			if raw, err = signStatement(text, l.opts.Signer); err != nil {
				return err
			}
		}
		if err := meta.Put(metaAnchor, raw); err != nil {
			return err
		}
		cks := tx.Bucket(bucketCheckpoints).Cursor()
		for k, _ := cks.First(); k != nil && binary.BigEndian.Uint64(k) < anchorSeq; k, _ = cks.First() {
			if err := cks.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if _, ok := err.(*VerifyError); ok {
			return 0, true, err
		}
		return 0, true, fmt.Errorf("audit: prune: %w", err)
	}
	return n, done, nil
}

// checkStored checks one stored record against the expected seq and
// previous hash, as Verify does.
func checkStored(k, v []byte, expectSeq uint64, prev Hash) error {
	if len(k) != 8 || binary.BigEndian.Uint64(k) != expectSeq {
		return &VerifyError{Seq: expectSeq, Kind: KindMissing, Msg: fmt.Sprintf("record %d is not where the chain expects it", expectSeq)}
	}
	if len(v) < minBodyLen+32 {
		return &VerifyError{Seq: expectSeq, Kind: KindModified, Msg: "record too short"}
	}
	body := v[:len(v)-32]
	if h := sha256.Sum256(body); string(h[:]) != string(v[len(v)-32:]) {
		return &VerifyError{Seq: expectSeq, Kind: KindModified, Msg: "record bytes do not match their hash"}
	}
	if err := decodeBody(body, nil); err != nil {
		return &VerifyError{Seq: expectSeq, Kind: KindMalformed, Msg: err.Error()}
	}
	if binary.BigEndian.Uint64(body[1:9]) != expectSeq {
		return &VerifyError{Seq: expectSeq, Kind: KindOutOfOrder, Msg: "record carries another sequence number"}
	}
	if string(body[9:41]) != string(prev[:]) {
		return &VerifyError{Seq: expectSeq, Kind: KindBrokenLink, Msg: "prev_hash does not match the record before"}
	}
	return nil
}
