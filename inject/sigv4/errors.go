package sigv4

import (
	"errors"

	"github.com/stackctl/stack/reason"
)

var (
	// ErrUnsupported matches every refusal of a request the package cannot
	// read or re-sign (Error.Reason reason.SigV4Unsupported).
	ErrUnsupported = errors.New("sigv4: request not supported")
	// ErrNotGranted matches every refusal of a request the grant does not
	// allow (Error.Reason reason.ScopeDenied).
	ErrNotGranted = errors.New("sigv4: request not granted")
)

// Error is a refusal, with the reason the agent receives.
type Error struct {
	// Reason is reason.SigV4Unsupported (a signing form that cannot be
	// re-signed, a malformed signature, a body too large to hash) or
	// reason.ScopeDenied (the grant does not allow the request).
	Reason string
	// Detail says what exactly, for the agent and the log; it never holds
	// a secret.
	Detail string
}

func (e *Error) Error() string { return "sigv4: " + e.Reason + ": " + e.Detail }

// Is makes errors.Is(err, ErrUnsupported) and errors.Is(err,
// ErrNotGranted) true by reason.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrUnsupported:
		return e.Reason == reason.SigV4Unsupported
	case ErrNotGranted:
		return e.Reason == reason.ScopeDenied
	}
	return false
}

func unsupported(detail string) error {
	return &Error{Reason: reason.SigV4Unsupported, Detail: detail}
}

func notGranted(detail string) error {
	return &Error{Reason: reason.ScopeDenied, Detail: detail}
}
