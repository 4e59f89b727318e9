package vault

import (
	"errors"
	"fmt"

	"github.com/stackctl/stack/vault/kms"
)

// Sentinel errors. Operations return an *Error naming the operation and
// credential that wraps one of these; check with errors.Is.
var (
	// ErrNotFound means no credential has that name.
	ErrNotFound = errors.New("credential not found")
	// ErrExists means Put was given a name already in the vault; use Rotate.
	ErrExists = errors.New("credential already exists")
	// ErrInvalid means a name, host, render form or secret was refused.
	ErrInvalid = errors.New("invalid credential")
	// ErrCorrupt means a stored record cannot be decoded or its secret does
	// not authenticate: it was truncated, altered, or swapped with another
	// record's. Nothing is changed when it is reported.
	ErrCorrupt = errors.New("corrupt record")
	// ErrUnwrap means the KMS refused to unwrap a record's data key: the
	// record was wrapped under another KMS key, or its wrapped key or
	// identity was altered or swapped. It is kms.ErrUnwrap.
	ErrUnwrap = kms.ErrUnwrap
	// ErrKMSUnavailable means the KMS could not be reached in time; the
	// vault fails closed for every secret not already cached. It is
	// kms.ErrUnavailable.
	ErrKMSUnavailable = kms.ErrUnavailable
	// ErrLocked means another process holds the vault file open for
	// writing (a running sidecar, or another command).
	ErrLocked = errors.New("vault file is locked by another process")
	// ErrReadOnly means a change was asked of a vault opened read-only.
	ErrReadOnly = errors.New("vault is open read-only")
	// ErrConflict means the credential changed between reading and
	// writing it (a concurrent Rotate or Delete); retry.
	ErrConflict = errors.New("credential changed concurrently")
	// ErrClosed means the vault was used after Close.
	ErrClosed = errors.New("vault closed")
)

// Error is the error of one vault operation. It never contains a secret.
type Error struct {
	// Op is the operation: open, put, rotate, replace, get, list, delete,
	// rewrap, check.
	Op string
	// Name is the credential concerned, empty when none is.
	Name string
	// Err is the cause.
	Err error
}

func (e *Error) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("vault: %s: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("vault: %s %s: %v", e.Op, e.Name, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

func vaultErr(op, name string, err error) error {
	var ve *Error
	if errors.As(err, &ve) && ve.Op == op && (ve.Name == name || name == "") {
		return err
	}
	return &Error{Op: op, Name: name, Err: err}
}

// corrupt wraps ErrCorrupt with detail.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// invalid wraps ErrInvalid with detail.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
