package passport

import (
	"errors"

	"github.com/stackctl/stack/reason"
)

// Errors returned by this package. Functions wrap them with the operation
// and detail (fmt.Errorf("...: %w", ErrX)), so test them with errors.Is.
var (
	// ErrTooLarge: the token is longer than MaxTokenSize. It is refused
	// before any parsing.
	ErrTooLarge = errors.New("passport too large")
	// ErrMalformed: the token is not a well-formed passport (compact JWS
	// structure, base64url, header or claims).
	ErrMalformed = errors.New("malformed passport")
	// ErrUnsupportedAlgorithm: the header names an algorithm other than
	// EdDSA (none, HS256, RS256...). Such tokens are never verified.
	ErrUnsupportedAlgorithm = errors.New("unsupported passport algorithm")
	// ErrUnknownKey: no key with the token's kid is in the verifier's key set
	// (never published, or retired after rotation).
	ErrUnknownKey = errors.New("unknown passport signing key")
	// ErrBadSignature: the signature does not verify under the named key.
	ErrBadSignature = errors.New("bad passport signature")
	// ErrExpired: exp has passed (beyond the leeway).
	ErrExpired = errors.New("passport expired")
	// ErrNotYetValid: nbf or iat lies in the future (beyond the leeway).
	ErrNotYetValid = errors.New("passport not yet valid")
	// ErrWrongAudience: aud does not name the verifier's audience.
	ErrWrongAudience = errors.New("passport audience mismatch")
	// ErrWrongIssuer: iss is not the issuer the verifier expects.
	ErrWrongIssuer = errors.New("passport issuer mismatch")
	// ErrRevoked: the passport, one of its delegation ancestors or its
	// agent has been revoked.
	ErrRevoked = errors.New("passport revoked")
	// ErrScopeNotSubset: a delegated passport asked for more than its parent
	// holds (a grant, a credential, a looser parameter or mode).
	ErrScopeNotSubset = errors.New("scope not a subset of the parent's")
	// ErrChainTooDeep: delegation would exceed MaxDelegationDepth hops.
	ErrChainTooDeep = errors.New("delegation chain too deep")
	// ErrTTLTooLong: the requested lifetime exceeds the issuer's maximum,
	// or a passport's lifetime (exp - iat) exceeds the verifier's MaxTTL.
	ErrTTLTooLong = errors.New("passport ttl exceeds maximum")
	// ErrInvalidScope: a scope failed validation; the wrapped errors name
	// every problem.
	ErrInvalidScope = errors.New("invalid scope")
	// ErrInvalidRequest: an issue request is incomplete or inconsistent
	// (no agent, negative TTL, unknown mode).
	ErrInvalidRequest = errors.New("invalid passport request")
	// ErrNoKey: a key set has no current signing key.
	ErrNoKey = errors.New("no current issuer key")
	// ErrKeyFile: the issuer key file cannot be read or is inconsistent.
	ErrKeyFile = errors.New("bad issuer key file")
	// ErrStoreLocked: the revocation store is held by another process
	// (usually a running `stack proxy`) and did not open within the timeout.
	ErrStoreLocked = errors.New("revocation store locked by another process")
	// ErrClosed: the revocation store has been closed.
	ErrClosed = errors.New("revocation store closed")
)

// Reason maps an error from this package to the reason a denial carries
// (see package reason). Errors it does not know map to
// reason.PassportInvalid: anything that went wrong while checking a
// passport makes it unusable. A nil error has no reason.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrRevoked):
		return reason.PassportRevoked
	case errors.Is(err, ErrExpired):
		return reason.PassportExpired
	case errors.Is(err, ErrScopeNotSubset), errors.Is(err, ErrInvalidScope):
		return reason.ScopeDenied
	default:
		return reason.PassportInvalid
	}
}
