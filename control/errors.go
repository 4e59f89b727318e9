package control

import (
	"errors"
	"net/http"
)

// Reasons the control plane refuses a request, in Error.Reason.
const (
	ReasonUnauthorized      = "unauthorized"
	ReasonBadRequest        = "bad_request"
	ReasonAgentUnknown      = "agent_unknown"
	ReasonAgentExists       = "agent_exists"
	ReasonAgentDisabled     = "agent_disabled"
	ReasonJoinTokenInvalid  = "join_token_invalid"
	ReasonJoinTokenExpired  = "join_token_expired"
	ReasonWorkloadDisabled  = "workload_identity_disabled"
	ReasonCredentialInvalid = "sidecar_credential_invalid"
	ReasonCredentialExpired = "sidecar_credential_expired"
	ReasonSidecarRevoked    = "sidecar_revoked"
	ReasonNotFound          = "not_found"
	ReasonConflict          = "conflict"
	ReasonUnavailable       = "unavailable"
	ReasonRateLimited       = "rate_limited"
	ReasonInternal          = "internal"
)

// apiError is a refusal with its status and reason.
type apiError struct {
	status int
	reason string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func fail(status int, reason, msg string) error {
	return &apiError{status: status, reason: reason, msg: msg}
}

func badRequest(msg string) error { return fail(http.StatusBadRequest, ReasonBadRequest, msg) }

// asAPIError maps any error to a status, reason and message.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return &apiError{status: http.StatusInternalServerError, reason: ReasonInternal, msg: err.Error()}
}
