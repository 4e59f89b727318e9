// Package reason is STACK's vocabulary of refusals: the machine-readable
// reason a refused request carries in its X-Stack-Reason header, in its
// JSON body, in its request_denied audit record and as the reason label
// of stack_requests_total.
//
// Each constant says when it is sent and with which HTTP status. The
// names are a contract with agents, scripts and dashboards: add freely,
// rename only with a deprecation path. README.md lists every one; a test
// keeps that list and All equal.
package reason

// Header is the response header that names the reason of every refusal.
const Header = "X-Stack-Reason"

// The passport: identify and verify.
const (
	// PassportMissing (407): the request carries no passport in
	// Proxy-Authorization, and the sidecar has none of its own to use.
	PassportMissing = "passport_missing"
	// PassportInvalid (407): Proxy-Authorization is malformed, or the
	// passport does not verify (signature, key, audience, issuer, dates
	// not yet valid, lifetime), or names another agent than the one the
	// request claims.
	PassportInvalid = "passport_invalid"
	// PassportExpired (407): the passport's exp has passed.
	PassportExpired = "passport_expired"
	// PassportRevoked (403): the passport, an ancestor in its delegation
	// chain, or its agent is revoked.
	PassportRevoked = "passport_revoked"
)

// Authorize: the passport's scope and the egress policy.
const (
	// ScopeDenied (403): no grant of the passport allows the host, method,
	// path or parameters, or the credential the request would carry.
	ScopeDenied = "scope_denied"
	// EgressDenied (403): the destination is an address the egress guard
	// refuses (loopback, private, link-local, the sidecar's own
	// listeners...), as a literal or as the name resolved.
	EgressDenied = "egress_denied"
)

// Inject: placeholders and credentials.
const (
	// PlaceholderUnknown (403): the request carries a placeholder for a
	// credential the vault does not hold.
	PlaceholderUnknown = "placeholder_unknown"
	// PlaceholderUnbound (403): a placeholder is headed to a host its
	// credential is not bound to (an exfiltration attempt).
	PlaceholderUnbound = "placeholder_unbound"
	// AgentCredentialRefused (403): the agent put a value of its own
	// where a managed credential goes, instead of the placeholder.
	AgentCredentialRefused = "agent_credential_refused"
	// CleartextCredential (403): a credential would be injected into a
	// request that is not https.
	CleartextCredential = "cleartext_credential"
	// CredentialUnavailable (503): the credential exists but cannot be
	// had now (the KMS cannot decrypt it, its lease cannot be renewed):
	// fail closed.
	CredentialUnavailable = "credential_unavailable"
	// SigV4Unsupported (403): an AWS request signed with a placeholder
	// key uses a signing form the sidecar cannot re-sign (a presigned
	// URL, signed aws-chunked streaming, a body too large to hash):
	// refused rather than forwarded with a broken signature.
	SigV4Unsupported = "sigv4_unsupported"
)

// Detect: the detectors' policy.
const (
	// DetectorBlocked (403): a detector's policy blocked the request or
	// its small, complete response, or revoked the passport.
	DetectorBlocked = "detector_blocked"
)

// The sidecar itself.
const (
	// AuditUnavailable (503): the audit log cannot record a credential
	// access, so the credential is not sent.
	AuditUnavailable = "audit_unavailable"
	// ControlUnreachable (503): a sidecar joined to a control plane has
	// had no contact with it for longer than control.max_staleness.
	ControlUnreachable = "control_unreachable"
	// Overloaded (503, with Retry-After): the sidecar sheds load beyond
	// proxy.max_connections or proxy.max_requests.
	Overloaded = "overloaded"
	// HeaderTooLarge (431): the request line and headers exceed 64 KiB,
	// also inside an intercepted tunnel.
	HeaderTooLarge = "header_too_large"
	// BadRequest (400): reading the request body failed.
	BadRequest = "bad_request"
	// NotAProxyRequest (400): the request was addressed to the proxy
	// itself rather than sent through it.
	NotAProxyRequest = "not_a_proxy_request"
)

// Handoffs: the sidecar's handoff endpoint at handoff.stack.internal.
const (
	// HandoffNotGranted (403): the passport grants no handoff to that
	// recipient with that schema, or does not confirm the handoff key the
	// sidecar holds for its agent.
	HandoffNotGranted = "handoff_not_granted"
	// HandoffInvalid (400): not a handoff request: a field missing, a
	// payload that is not JSON, a bad ttl or schema name.
	HandoffInvalid = "handoff_invalid"
	// HandoffUnknown (404): no such recipient agent (or it is disabled),
	// schema, handoff waiting, or endpoint.
	HandoffUnknown = "handoff_unknown"
	// HandoffTooLarge (413): a payload whose sealed handoff would exceed
	// 256 KiB.
	HandoffTooLarge = "handoff_too_large"
	// HandoffSchemaViolation (422): the payload does not match its
	// schema, when sent or when received.
	HandoffSchemaViolation = "handoff_schema_violation"
	// HandoffRejected (422): a fetched handoff failed its checks: it does
	// not decrypt (changed, or sealed to another key), was sealed for
	// another agent, or its sender is not proven (passport not valid when
	// it was sent, not confirming the signing key, not granting the
	// handoff; a bad signature).
	HandoffRejected = "handoff_rejected"
	// HandoffGone (410): the handoff was fetched already; one fetch
	// gets it.
	HandoffGone = "handoff_gone"
	// HandoffExpired (410): the handoff expired before it was fetched.
	HandoffExpired = "handoff_expired"
	// HandoffUnavailable (503): the sidecar has no control plane, cannot
	// reach it, or was given no handoff keys.
	HandoffUnavailable = "handoff_unavailable"
)

// Forward and respond: the upstream.
const (
	// UpstreamTLS (502): TLS to the upstream failed (a certificate the
	// sidecar does not trust, a name it is not valid for, a handshake
	// error).
	UpstreamTLS = "upstream_tls"
	// UpstreamUnreachable (502): the upstream could not be reached or
	// broke off.
	UpstreamUnreachable = "upstream_unreachable"
	// UpstreamTimeout (504): the upstream did not answer in time
	// (proxy.upstream_response_timeout for its response headers).
	UpstreamTimeout = "upstream_timeout"
	// UpgradeRefused (502): the upstream switched protocols on a request
	// a credential was injected into, and the traffic cannot be scrubbed
	// of it (anything but a WebSocket without extensions).
	UpgradeRefused = "upgrade_refused"
	// ResponseEncodingUnsupported (502): the upstream answered in a
	// content coding the sidecar cannot decode, on a response it must
	// scrub or scan.
	ResponseEncodingUnsupported = "response_encoding_unsupported"
	// ClientClosed (499) is recorded, never sent: the agent went away
	// before its answer came.
	ClientClosed = "client_closed"
)

// All returns every reason a refusal can carry, grouped as README.md
// lists them. Each call returns a new slice.
func All() []string {
	return []string{
		PassportMissing, PassportInvalid, PassportExpired, PassportRevoked,
		ScopeDenied, EgressDenied,
		PlaceholderUnknown, PlaceholderUnbound, AgentCredentialRefused, CleartextCredential, CredentialUnavailable, SigV4Unsupported,
		DetectorBlocked,
		AuditUnavailable, ControlUnreachable, Overloaded, HeaderTooLarge, BadRequest, NotAProxyRequest,
		HandoffNotGranted, HandoffInvalid, HandoffUnknown, HandoffTooLarge, HandoffSchemaViolation, HandoffRejected, HandoffGone, HandoffExpired, HandoffUnavailable,
		UpstreamTLS, UpstreamUnreachable, UpstreamTimeout, UpgradeRefused, ResponseEncodingUnsupported, ClientClosed,
	}
}

// Who revoked a passport, in the reason of its passport_revoked audit
// record. These are never sent to an agent.
const (
	// RevokedByAdmin: an operator, through the sidecar's admin API
	// (stack passport revoke).
	RevokedByAdmin = "admin"
	// RevokedByControl: an operator, through the control plane.
	RevokedByControl = "control"
	// RevokedByDetector: a detector's policy in revoke mode.
	RevokedByDetector = "detector"
)
