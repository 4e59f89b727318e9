package workload

import "errors"

// Errors returned by this package. Verify wraps them with the issuer, the
// subject and the detail (fmt.Errorf("...: %w: ...", ErrX)), so test them
// with errors.Is, or map them to a reason with Reason.
var (
	// ErrTokenMalformed: the token is over MaxTokenSize, is not a compact
	// JWS, or its header or claims are not JSON objects with a string iss.
	ErrTokenMalformed = errors.New("workload token malformed")
	// ErrIssuerUnknown: the token's iss is not a configured issuer.
	ErrIssuerUnknown = errors.New("workload token issuer not configured")
	// ErrIssuerUnavailable: the issuer's discovery document or key set
	// could not be fetched. A later Verify tries again.
	ErrIssuerUnavailable = errors.New("workload token issuer unavailable")
	// ErrTokenInvalid: the signature does not verify under the issuer's
	// keys, the algorithm is not accepted (none, HS256...), or the token
	// is not yet valid or lacks a subject.
	ErrTokenInvalid = errors.New("workload token invalid")
	// ErrTokenExpired: exp has passed (beyond the leeway).
	ErrTokenExpired = errors.New("workload token expired")
	// ErrAudience: aud does not name the issuer's configured audience.
	ErrAudience = errors.New("workload token audience mismatch")
	// ErrNoRule: the token verified, but none of the issuer's rules maps it
	// to an agent.
	ErrNoRule = errors.New("no rule maps the workload to an agent")
	// ErrConfig: New was given an invalid configuration; the wrapped
	// errors name every problem.
	ErrConfig = errors.New("invalid workload identity config")
)

// Machine-readable reasons for a refused token.
const (
	ReasonMalformed         = "workload_token_malformed"
	ReasonIssuerUnknown     = "workload_issuer_unknown"
	ReasonIssuerUnavailable = "workload_issuer_unavailable"
	ReasonInvalid           = "workload_token_invalid"
	ReasonExpired           = "workload_token_expired"
	ReasonAudience          = "workload_audience"
	ReasonNoRule            = "workload_no_rule"
)

// Reason maps an error from Verify to the short reason a refusal carries.
// Errors it does not know map to ReasonInvalid: a token that could not be
// checked is not accepted. A nil error has no reason.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTokenMalformed):
		return ReasonMalformed
	case errors.Is(err, ErrIssuerUnknown):
		return ReasonIssuerUnknown
	case errors.Is(err, ErrIssuerUnavailable):
		return ReasonIssuerUnavailable
	case errors.Is(err, ErrTokenExpired):
		return ReasonExpired
	case errors.Is(err, ErrAudience):
		return ReasonAudience
	case errors.Is(err, ErrNoRule):
		return ReasonNoRule
	default:
		return ReasonInvalid
	}
}
