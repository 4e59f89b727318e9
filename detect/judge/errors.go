package judge

import (
	"errors"
	"fmt"
)

// Sentinel errors returned (wrapped, with the operation named) by this
// package. Check them with errors.Is.
var (
	// ErrInvalidOptions is returned by New for options it cannot use: an
	// unknown kind, a URL that is not https (or http to a loopback
	// address) or that carries credentials, a chat judge without a model,
	// a negative timeout or cache size, a CA file without certificates.
	ErrInvalidOptions = errors.New("judge: invalid options")
	// ErrTimeout is returned when the call did not finish within
	// Options.Timeout or the caller's deadline.
	ErrTimeout = errors.New("judge: timed out")
	// ErrUnavailable is returned when the endpoint could not be reached
	// or answered with a status other than 200 (a *StatusError says
	// which).
	ErrUnavailable = errors.New("judge: endpoint unavailable")
	// ErrMalformed is returned for an answer that is not a verdict: not
	// JSON, JSON of another shape, no choices, a refusal, a score outside
	// [0, 1].
	ErrMalformed = errors.New("judge: malformed answer")
	// ErrSuspended is returned without a call while the judge rests after
	// Options.BreakAfter failures in a row (its circuit is open).
	ErrSuspended = errors.New("judge: suspended after failures in a row")
)

// StatusError is an answer with a status other than 200. It wraps
// ErrUnavailable.
type StatusError struct {
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("judge: endpoint answered HTTP %d", e.Status)
}

// Unwrap returns ErrUnavailable.
func (e *StatusError) Unwrap() error { return ErrUnavailable }
