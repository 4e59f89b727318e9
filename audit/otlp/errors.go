package otlp

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Sentinel errors returned (wrapped, with the operation named) by this
// package. Check them with errors.Is.
var (
	// ErrInvalidOptions is returned by New for Options it cannot use; the
	// message lists every problem found.
	ErrInvalidOptions = errors.New("otlp: invalid options")

	// ErrPermanent is wrapped by the errors of attempts that would fail
	// the same way if repeated: a status the OTLP/HTTP specification does
	// not call transient (400, 401, 403, 404, 413, 500, a redirect, ...),
	// or a certificate that does not verify. Export does not retry them.
	// Nothing of the request was accepted, so the caller keeps its cursor
	// where it is until the configuration or the receiver is fixed.
	ErrPermanent = errors.New("otlp: permanent failure")

	// ErrClosed is returned by Export after Close.
	ErrClosed = errors.New("otlp: exporter closed")
)

// HTTPError is a receiver's answer other than success.
type HTTPError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the receiver's google.rpc.Status message, or the start of
	// its body when that is not a Status; clipped, control characters
	// replaced, so it can be logged as it is.
	Message string
	// Retryable reports whether the specification calls the status
	// transient (429, 502, 503, 504).
	Retryable bool
	// RetryAfter is the wait the receiver asked for in Retry-After, or 0.
	RetryAfter time.Duration
}

func (e *HTTPError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "receiver answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Unwrap makes an HTTPError that is not Retryable match ErrPermanent.
func (e *HTTPError) Unwrap() error {
	if e.Retryable {
		return nil
	}
	return ErrPermanent
}

// PartialError reports that the receiver took every request of an Export
// but rejected some of the records in them (OTLP partial success).
// Sending them again would be rejected again: a caller that sees a
// PartialError logs it and moves on. Export returns one only when every
// request was answered with success; any other failure takes precedence.
type PartialError struct {
	// Rejected is how many log records the receiver rejected.
	Rejected int64
	// Total is how many records the Export call sent.
	Total int
	// Messages are the receivers' explanations, one per request that had
	// any, clipped like HTTPError.Message.
	Messages []string
}

func (e *PartialError) Error() string {
	msg := fmt.Sprintf("otlp: export: the receiver rejected %d of %d log records", e.Rejected, e.Total)
	if len(e.Messages) > 0 {
		msg += ": " + strings.Join(e.Messages, "; ")
	}
	return msg
}
