package inject

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/stackctl/stack/reason"
)

// ErrDenied matches every *DeniedError with errors.Is.
var ErrDenied = errors.New("inject: request denied")

// DeniedError says why a request may not carry its credentials upstream.
type DeniedError struct {
	// Reason is the denial's reason: reason.PlaceholderUnknown,
	// PlaceholderUnbound, ScopeDenied (the credential is not granted),
	// AgentCredentialRefused or CredentialUnavailable.
	Reason     string
	Credential string // the credential concerned
	Detail     string // for the agent and the log; never holds a secret
	Err        error  // the cause, for the log only
}

func (e *DeniedError) Error() string {
	if e.Err != nil {
		return "inject: " + e.Reason + ": " + e.Detail + ": " + e.Err.Error()
	}
	return "inject: " + e.Reason + ": " + e.Detail
}

func (e *DeniedError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrDenied) true.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// Status is the HTTP status the agent receives: 403, or 503 when the
// credential exists but cannot be decrypted now (fail closed).
func (e *DeniedError) Status() int {
	if e.Reason == reason.CredentialUnavailable {
		return http.StatusServiceUnavailable
	}
	return http.StatusForbidden
}

func urlUnescapeAll(s string) (string, error) { return url.PathUnescape(s) }
