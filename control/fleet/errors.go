package fleet

import (
	"errors"
	"fmt"
)

var (
	// ErrBadBatch wraps a batch that is malformed rather than
	// contradictory: no log identity, too many records, a key that does
	// not parse. Nothing is recorded for it.
	ErrBadBatch = errors.New("fleet: bad batch")
	// ErrOtherAgent is a sidecar shipping a log bound to another agent.
	ErrOtherAgent = errors.New("fleet: the log belongs to another agent")
	// ErrNotFound is an event, stream or index the fleet log does not hold.
	ErrNotFound = errors.New("fleet: not found")
	// ErrClosed is any call after Close.
	ErrClosed = errors.New("fleet: closed")
)

// IntegrityError is a batch refused for a finding (audit_integrity).
type IntegrityError struct {
	Log     string
	Finding Finding
}

func (e *IntegrityError) Error() string {
	return fmt.Sprintf("audit_integrity: log %s: %s at seq %d: %s", e.Log, e.Finding.Kind, e.Finding.Seq, e.Finding.Detail)
}
