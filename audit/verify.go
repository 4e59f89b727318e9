package audit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
)

// Report is what Verify checked.
type Report struct {
	// Records is how many records were present and checked.
	Records uint64
	// FirstSeq and LastSeq bound the records present (0 when none).
	FirstSeq, LastSeq uint64
	// Head is the hash of the last record (of the anchor, or GenesisHash,
	// when no record is present).
	Head Hash
	// Anchor is the prune anchor, nil when the log was never pruned.
	Anchor *Anchor
	// Checkpoints is how many checkpoints were checked.
	Checkpoints int
	// LastCheckpoint is the newest checkpoint, nil when there is none.
	LastCheckpoint *Checkpoint
	// Uncovered counts the records at the end of the log that no
	// checkpoint covers (seq LastSeq-Uncovered+1 to LastSeq). Whoever can
	// write the file can rewrite and re-chain them unnoticed. A writer
	// that stopped cleanly leaves none; one still running leaves those
	// since its last checkpoint, a killed one those it wrote since.
	Uncovered uint64
	// SignaturesChecked reports whether checkpoint and anchor signatures
	// were verified (verifiers were given).
	SignaturesChecked bool
}

// VerifyFile opens the log at path read-only (never waiting more than
// DefaultOpenTimeout for the lock) and verifies it; see (*Log).Verify.
func VerifyFile(ctx context.Context, path string, verifiers note.Verifiers) (Report, error) {
	l, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		return Report{}, err
	}
	defer l.Close()
	return l.Verify(ctx, verifiers)
}

// VerifyReader copies a log snapshot (as written by WriteSnapshot) from r
// to a temporary file, verifies it and removes the file.
func VerifyReader(ctx context.Context, r io.Reader, verifiers note.Verifiers) (Report, error) {
	dir, err := os.MkdirTemp("", "stack-audit-verify-")
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify snapshot: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "audit.db")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify snapshot: %w", err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify snapshot: %w", err)
	}
	return VerifyFile(ctx, path, verifiers)
}

// Verify checks the whole log in one read transaction (a consistent
// snapshot; on a log being written, a long verify delays the file's
// growth until it ends), streaming in constant memory: it
// recomputes every record's hash, checks that sequence numbers are
// contiguous from the anchor (or 1) and that each record links to the one
// before, and checks every checkpoint against the chain. With verifiers it
// also requires every checkpoint, and the anchor if any, to be signed by
// a trusted key; with nil verifiers signatures are not checked.
//
// The first problem found is returned as a *VerifyError along with the
// Report of what was checked up to it; other errors (I/O, a closed log)
// are returned wrapped.
func (l *Log) Verify(ctx context.Context, verifiers note.Verifiers) (Report, error) {
	if err := l.usable(ctx, "verify", false); err != nil {
		return Report{}, err
	}
	var rep Report
	err := l.db.View(func(tx *bolt.Tx) error {
		if err := checkFormat(tx); err != nil {
			return err
		}
		var err error
		rep, err = verifyTx(ctx, tx, verifiers)
		return err
	})
	var ve *VerifyError
	if err != nil && !errors.As(err, &ve) {
		err = fmt.Errorf("audit: verify: %w", err)
	}
	return rep, err
}

type verifier struct {
	verifiers note.Verifiers
	rep       Report
	ck        *bolt.Cursor
	ckKey     []byte
	ckVal     []byte
}

func verifyTx(ctx context.Context, tx *bolt.Tx, verifiers note.Verifiers) (Report, error) {
	v := &verifier{verifiers: verifiers}
	v.rep.SignaturesChecked = verifiers != nil
	expectSeq, prev := uint64(1), GenesisHash
	if raw := tx.Bucket(bucketMeta).Get(metaAnchor); raw != nil {
		a, err := ParseAnchor(raw, verifiers)
		if err != nil {
			kind := KindBadAnchor
			if verifiers != nil && !errors.Is(err, ErrMalformed) {
				kind = KindBadAnchorSignature
			}
			return v.rep, &VerifyError{Kind: kind, Msg: err.Error()}
		}
		v.rep.Anchor = &a
		expectSeq, prev = a.Seq+1, a.Hash
	}
	v.rep.Head = prev

	v.ck = tx.Bucket(bucketCheckpoints).Cursor()
	v.ckKey, v.ckVal = v.ck.First()
	// Checkpoints at or below the anchor: only the one at the anchor
	// itself can still be compared with a hash.
	if err := v.checkpointsUpTo(expectSeq-1, prev); err != nil {
		return v.rep, err
	}

	c := tx.Bucket(bucketRecords).Cursor()
	var n uint64
	for k, val := c.First(); k != nil; k, val = c.Next() {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return v.rep, err
			}
		}
		if len(k) != 8 {
			return v.rep, &VerifyError{Seq: expectSeq, Kind: KindModified, Msg: fmt.Sprintf("record key %x is not 8 bytes", k)}
		}
		key := binary.BigEndian.Uint64(k)
		switch {
		case key > expectSeq:
			return v.rep, &VerifyError{Seq: expectSeq, Kind: KindMissing, Msg: fmt.Sprintf("record %d is missing (next present is %d)", expectSeq, key)}
		case key < expectSeq:
			return v.rep, &VerifyError{Seq: key, Kind: KindOutOfOrder, Msg: fmt.Sprintf("record %d is stored although the chain resumes at %d", key, expectSeq)}
		}
		if len(val) < minBodyLen+32 {
			return v.rep, &VerifyError{Seq: key, Kind: KindModified, Msg: fmt.Sprintf("record is %d bytes, too short", len(val))}
		}
		body, sum := val[:len(val)-32], val[len(val)-32:]
		h := sha256.Sum256(body)
		if string(h[:]) != string(sum) {
			return v.rep, &VerifyError{Seq: key, Kind: KindModified, Msg: "record bytes do not match their hash"}
		}
		if err := decodeBody(body, nil); err != nil {
			return v.rep, &VerifyError{Seq: key, Kind: KindMalformed, Msg: err.Error()}
		}
		if bodySeq := binary.BigEndian.Uint64(body[1:9]); bodySeq != key {
			return v.rep, &VerifyError{Seq: key, Kind: KindOutOfOrder, Msg: fmt.Sprintf("record %d is stored under key %d", bodySeq, key)}
		}
		if string(body[9:41]) != string(prev[:]) {
			return v.rep, &VerifyError{Seq: key, Kind: KindBrokenLink, Msg: fmt.Sprintf("prev_hash does not match the hash of record %d (one of the two was rewritten)", key-1)}
		}
		prev = h
		if v.rep.Records == 0 {
			v.rep.FirstSeq = key
		}
		v.rep.Records++
		v.rep.LastSeq = key
		v.rep.Head = h
		expectSeq++
		if err := v.checkpointsUpTo(key, h); err != nil {
			return v.rep, err
		}
	}
	// Checkpoints beyond the last record: the tail was cut. A forged one
	// is reported as such first.
	if v.ckKey != nil {
		ck, err := v.checkpoint()
		if err != nil {
			return v.rep, err
		}
		return v.rep, &VerifyError{Seq: expectSeq, Kind: KindCutAfterCheckpoint,
			Msg: fmt.Sprintf("cut after checkpoint %d: it covers %d records but the log ends at %d", ck.Size, ck.Size, expectSeq-1)}
	}
	if v.rep.Records > 0 {
		covered := v.rep.FirstSeq - 1
		if ck := v.rep.LastCheckpoint; ck != nil && ck.Size > covered {
			covered = ck.Size
		}
		v.rep.Uncovered = v.rep.LastSeq - covered
	}
	return v.rep, nil
}

// checkpointsUpTo checks every checkpoint with size <= seq; the one at
// seq must name head.
func (v *verifier) checkpointsUpTo(seq uint64, head Hash) error {
	for len(v.ckKey) == 8 && binary.BigEndian.Uint64(v.ckKey) <= seq {
		ck, err := v.checkpoint()
		if err != nil {
			return err
		}
		if ck.Size == seq && ck.Size > 0 && ck.Head != head {
			return &VerifyError{Seq: ck.Size, Kind: KindCheckpointMismatch,
				Msg: fmt.Sprintf("checkpoint %d names head %s but record %d hashes to %s (the chain was rewritten)", ck.Size, ck.Head, ck.Size, head)}
		}
		v.ckKey, v.ckVal = v.ck.Next()
	}
	if v.ckKey != nil && len(v.ckKey) != 8 {
		return &VerifyError{Seq: seq, Kind: KindBadCheckpoint, Msg: fmt.Sprintf("checkpoint key %x is not 8 bytes", v.ckKey)}
	}
	return nil
}

// checkpoint parses (and with verifiers authenticates) the checkpoint at
// the cursor and counts it.
func (v *verifier) checkpoint() (Checkpoint, error) {
	size := binary.BigEndian.Uint64(v.ckKey)
	ck, err := ParseCheckpoint(v.ckVal, v.verifiers)
	if err != nil {
		kind := KindBadCheckpoint
		if v.verifiers != nil && !errors.Is(err, ErrMalformed) {
			kind = KindBadCheckpointSignature
		}
		return ck, &VerifyError{Seq: size, Kind: kind, Msg: fmt.Sprintf("checkpoint %d: %v", size, err)}
	}
	if ck.Size != size {
		return ck, &VerifyError{Seq: size, Kind: KindBadCheckpoint, Msg: fmt.Sprintf("checkpoint of size %d is stored under key %d", ck.Size, size)}
	}
	v.rep.Checkpoints++
	v.rep.LastCheckpoint = &ck
	return ck, nil
}
