package fleetlog

import "errors"

// Errors returned by this package, wrapped with the operation and the detail;
// test for them with errors.Is.
var (
	// ErrClosed is returned by every method of a Log after Close.
	ErrClosed = errors.New("fleetlog: log is closed")

	// ErrNotFound means an index, size or range that the log does not hold:
	// beyond its integrated size, or an inverted range.
	ErrNotFound = errors.New("fleetlog: not in the log")

	// ErrLeafTooLarge means a leaf is longer than MaxLeafSize, the limit of
	// the tlog-tiles entry bundle format. Append adds none of the leaves of
	// a call that has one.
	ErrLeafTooLarge = errors.New("fleetlog: leaf too large")

	// ErrOrder means the leaves of one Append call were given indices out of
	// the order they were passed in. They are in the log all the same; Append
	// returns their indices with this error.
	ErrOrder = errors.New("fleetlog: leaves sequenced out of order")

	// ErrKey means a verifier key is not a valid note verifier key
	// (name+hash+key, Ed25519).
	ErrKey = errors.New("fleetlog: invalid verifier key")

	// ErrSignature means a checkpoint does not carry a valid signature by the
	// verifier key.
	ErrSignature = errors.New("fleetlog: checkpoint not signed by the log's key")

	// ErrCheckpoint means a checkpoint is malformed, or names another origin
	// than the verifier key's.
	ErrCheckpoint = errors.New("fleetlog: invalid checkpoint")

	// ErrProof means a Merkle proof does not prove what it was checked for.
	ErrProof = errors.New("fleetlog: proof does not verify")
)
