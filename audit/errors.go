package audit

import (
	"errors"
	"fmt"
)

// Sentinel errors returned (wrapped, with the operation named) by this
// package. Check them with errors.Is.
var (
	// ErrClosed is returned by every method of a Log after Close.
	ErrClosed = errors.New("audit: log closed")
	// ErrReadOnly is returned by Append and Prune on a log opened with
	// Options.ReadOnly.
	ErrReadOnly = errors.New("audit: log opened read-only")
	// ErrLocked is returned by Open when another process holds the file
	// and the lock was not released within Options.OpenTimeout.
	ErrLocked = errors.New("audit: log file is locked by another process")
	// ErrNotAuditLog is returned by Open for a bbolt file that is not an
	// audit log, or an audit log of an unknown format version.
	ErrNotAuditLog = errors.New("audit: not an audit log of a known format")
	// ErrInvalidRecord is returned by Append for a record that cannot be
	// stored (no action, a field that is not UTF-8 or is too long).
	ErrInvalidRecord = errors.New("audit: invalid record")
	// ErrMalformed is returned when stored bytes do not decode as a record,
	// checkpoint or anchor.
	ErrMalformed = errors.New("audit: malformed stored data")
	// ErrStop may be returned by the callback of Iterate, Scan or Follow to
	// stop early; the method then returns nil.
	ErrStop = errors.New("audit: stop iteration")

	// ErrJournalMismatch: the log's journal (PATH-wal) holds acknowledged
	// records that do not continue the log file, as when the file was
	// restored from a backup; Open refuses rather than drop them.
	ErrJournalMismatch = errors.New("audit: journal does not continue the log")
)

// Kinds of VerifyError, naming what is wrong at VerifyError.Seq.
const (
	// KindModified: the record's bytes do not hash to its stored hash.
	KindModified = "modified"
	// KindMalformed: the record hashes correctly but does not decode; only a
	// writer that recomputed the hash can produce it.
	KindMalformed = "malformed"
	// KindMissing: no record is stored under this sequence number although
	// later ones are.
	KindMissing = "missing"
	// KindOutOfOrder: the record stored under this key carries another
	// sequence number (records were swapped or moved).
	KindOutOfOrder = "out_of_order"
	// KindBrokenLink: the record's prev_hash is not the hash of the record
	// before it (one of the two was rewritten and re-hashed).
	KindBrokenLink = "broken_link"
	// KindCheckpointMismatch: a checkpoint of this size names another head
	// hash (the chain was rewritten).
	KindCheckpointMismatch = "checkpoint_mismatch"
	// KindCutAfterCheckpoint: a checkpoint covers records that are no
	// longer present (the tail was cut). Seq is the first missing record.
	KindCutAfterCheckpoint = "cut_after_checkpoint"
	// KindBadCheckpoint: a checkpoint does not parse or is stored under the
	// wrong key.
	KindBadCheckpoint = "bad_checkpoint"
	// KindBadCheckpointSignature: a checkpoint is not signed by any of the
	// trusted keys.
	KindBadCheckpointSignature = "bad_checkpoint_signature"
	// KindBadAnchor: the prune anchor does not parse.
	KindBadAnchor = "bad_anchor"
	// KindBadAnchorSignature: the prune anchor is not signed by a trusted
	// key although verifiers were given.
	KindBadAnchorSignature = "bad_anchor_signature"
)

// VerifyError names the first place where a log fails verification.
type VerifyError struct {
	// Seq is the sequence number (or checkpoint size) where the problem was
	// found.
	Seq uint64
	// Kind is one of the Kind* constants.
	Kind string
	// Msg says what was found, for people.
	Msg string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit: verify: seq %d: %s: %s", e.Seq, e.Kind, e.Msg)
}
