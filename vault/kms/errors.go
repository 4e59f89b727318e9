package kms

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by a KMS or by Open is an *Error
// naming the key URI and wrapping one of these (where one applies) together
// with the underlying cause.
var (
	// ErrUnavailable means the KMS could not be reached or did not answer
	// in time (network failure, server down, deadline exceeded, throttled).
	// Retrying later may succeed; nothing was wrapped or unwrapped.
	ErrUnavailable = errors.New("kms unavailable")
	// ErrUnwrap means the KMS answered but refused to unwrap: the wrapped
	// value was made under another key, with other additional data, or was
	// altered. It does not go away by retrying.
	ErrUnwrap = errors.New("unwrap failed (wrong key, wrong additional data, or altered ciphertext)")
	// ErrWrap means the KMS answered but refused to wrap (key disabled,
	// permission denied, invalid key name).
	ErrWrap = errors.New("wrap failed")
	// ErrUnknownScheme means the URI is not local://, gcpkms:// or awskms://.
	ErrUnknownScheme = errors.New("unknown KMS scheme (want local://PATH, gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K or awskms://KEY-ID-OR-ARN-OR-alias/NAME)")
	// ErrInvalidURI means the URI has a known scheme but a malformed key name.
	ErrInvalidURI = errors.New("invalid KMS URI")
	// ErrKeyFile means the local key file is missing, has the wrong size,
	// or is readable by group or others.
	ErrKeyFile = errors.New("bad local key file")
	// ErrIntegrity means a response failed its CRC32C integrity check or a
	// wrapped value has an unknown format version.
	ErrIntegrity = errors.New("integrity check failed")
	// ErrClosed means the KMS was used after Close.
	ErrClosed = errors.New("kms closed")
)

// Error is the error of one KMS operation. Errors never contain plaintext.
type Error struct {
	// URI names the key, as given to Open.
	URI string
	// Op is the operation: open, wrap or unwrap.
	Op string
	// Err is the cause; errors.Is sees the sentinels it wraps.
	Err error
}

func (e *Error) Error() string {
	return fmt.Sprintf("kms %s: %s: %v", e.URI, e.Op, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// opError builds an *Error whose cause wraps both the sentinel and the
// underlying error (either may be nil).
func opError(uri, op string, sentinel, cause error) error {
	var err error
	switch {
	case sentinel != nil && cause != nil:
		err = fmt.Errorf("%w: %w", sentinel, cause)
	case sentinel != nil:
		err = sentinel
	default:
		err = cause
	}
	return &Error{URI: uri, Op: op, Err: err}
}
