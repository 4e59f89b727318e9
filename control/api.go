package control

import (
	"encoding/json"
	"net/url"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/stackctl/stack/control/fleet"
	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/vault"
)

// API paths. Operators authenticate with the control token
// (Authorization: Bearer), sidecars with their sidecar credential; join,
// the JWKS and the health endpoints need neither.
const (
	PathJWKS    = "/.well-known/jwks.json"
	PathJoin    = "/v1/join"
	PathRenew   = "/v1/sidecar/renew"
	PathIssue   = "/v1/sidecar/passport"
	PathLeases  = "/v1/sidecar/leases"
	PathWatch   = "/v1/watch"
	PathRevokes = "/v1/revocations"
	PathRevoke  = "/v1/passport/revoke"
	PathAgents  = "/v1/agents"
	PathTokens  = "/v1/join-tokens"
	PathStatus  = "/v1/status"
	PathReload  = "/v1/reload"
	// PathAgentDetectors follows PathAgents/NAME: the agent's detector
	// modes, read by operators and the agent's own sidecars (GET), set
	// by operators (POST DetectorModeRequest). DetectorsPath builds it.
	PathAgentDetectors = "/detectors"

	// Vault paths and bodies are the sidecar admin API's, so the CLI speaks
	// to either the same way.
	PathVaultPut      = "/v1/vault/put"
	PathVaultRotate   = "/v1/vault/rotate"
	PathVaultReplace  = "/v1/vault/replace"
	PathVaultRemove   = "/v1/vault/rm"
	PathVaultSnapshot = "/v1/vault/snapshot"
	PathVaultList     = "/v1/vault/list"
	PathAuditSnapshot = "/v1/audit/snapshot"

	// The fleet audit log: sidecars ship their chains (sidecar
	// credential); operators and anyone with the control plane's public
	// key read proofs (control token).
	PathAuditShip        = "/v1/sidecar/audit"
	PathFleetCheckpoint  = "/v1/audit/fleet/checkpoint"
	PathFleetProve       = "/v1/audit/fleet/prove"
	PathFleetConsistency = "/v1/audit/fleet/consistency"
	PathFleetExport      = "/v1/audit/fleet/export"
	PathFleetStreams     = "/v1/audit/fleet/streams"
	PathFleetKey         = "/v1/audit/fleet/key"
)

// Agent is a registered agent: its name, the scope its passports carry,
// their lifetime and mode, and whether it may have passports now.
type Agent struct {
	Name   string            `json:"name"`
	Role   string            `json:"role,omitempty"`
	Scope  passport.Scope    `json:"scope"`
	TTL    Duration          `json:"ttl,omitzero"`
	Mode   passport.Mode     `json:"mode,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Disabled agents get no passport, join or lease; their passports are
	// revoked when they are disabled.
	Disabled       bool      `json:"disabled,omitempty"`
	DisabledReason string    `json:"disabled_reason,omitempty"`
	Created        time.Time `json:"created"`
	Updated        time.Time `json:"updated,omitzero"`
	// Rev is the store revision of this version of the agent.
	Rev int64 `json:"rev,omitempty"`
}

// Duration is a time.Duration written as "15m0s" in JSON.
type Duration time.Duration

// MarshalText writes the duration in Go's syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads Go's duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// AgentRequest registers an agent or changes one.
type AgentRequest struct {
	Agent
	// Update allows replacing an existing agent's definition.
	Update bool `json:"update,omitempty"`
}

// DisableRequest disables or enables an agent.
type DisableRequest struct {
	Reason string `json:"reason,omitempty"`
}

// JoinTokenRequest asks for a one-time join token.
type JoinTokenRequest struct {
	Agent string   `json:"agent"`
	TTL   Duration `json:"ttl,omitzero"`
}

// JoinTokenResponse carries the token: shown once, stored only hashed.
type JoinTokenResponse struct {
	Token     string    `json:"token"`
	Agent     string    `json:"agent"`
	ExpiresAt time.Time `json:"expires_at"`
}

// JoinRequest is a sidecar's first call: exactly one of JoinToken and
// OIDCToken.
type JoinRequest struct {
	JoinToken string `json:"join_token,omitempty"`
	OIDCToken string `json:"oidc_token,omitempty"`
	// Name says which sidecar this is (a host or pod name), for status.
	Name string `json:"name,omitempty"`
}

// Credential is a joined sidecar's short-lived credential. It renews it
// before ExpiresAt; it never sees the issuer key.
type Credential struct {
	SidecarID string    `json:"sidecar_id"`
	Agent     string    `json:"agent"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// PassportResponse is an agent's passport for its sidecar, with the keys
// that verify it.
type PassportResponse struct {
	Passport  string             `json:"passport"`
	JTI       string             `json:"jti"`
	IssuedAt  time.Time          `json:"issued_at"`
	ExpiresAt time.Time          `json:"expires_at"`
	JWKS      jose.JSONWebKeySet `json:"jwks"`
	// HandoffKeys are the agent's private handoff keys (handoff.AgentKeys
	// as JSON), which the passport confirms (cnf.jkt): the sidecar holds
	// them, never the agent. Absent when the control plane keeps no
	// handoffs.
	HandoffKeys json.RawMessage `json:"handoff_keys,omitempty"`
}

// Lease is one credential handed to a sidecar for its agent: kept in
// memory only, renewed before ExpiresAt, dropped on revocation.
type Lease struct {
	Name        string       `json:"name"`
	Hosts       []string     `json:"hosts"`
	Render      vault.Render `json:"render"`
	Fingerprint string       `json:"fingerprint"`
	// Secret is a static credential's secret, or the token minted for
	// the agent (a minting kind other than aws-sts).
	Secret []byte `json:"secret,omitempty"`
	// Kind is the credential's kind; empty means static.
	Kind string `json:"kind,omitempty"`
	// Narrow is the key (passport.Narrowing.Key) of the narrowing a
	// minted credential was minted under; a credential two grants narrow
	// differently has one lease per narrowing.
	Narrow string `json:"narrow,omitempty"`
	// AWS holds the session credentials of an aws-sts credential.
	AWS *mint.AWSSession `json:"aws,omitempty"`
	// Refused, when set, says why this narrowing of a minted credential
	// is never minted (it asks for more than the vault entry allows): no
	// secret is leased, and a request under it is refused as out of
	// scope rather than as unavailable.
	Refused string `json:"refused,omitempty"`
	// ExpiresAt is when the lease ends: a minted credential's own expiry.
	ExpiresAt time.Time `json:"expires_at"`
}

// KindName is the lease's kind, static when it names none.
func (l *Lease) KindName() string {
	if l.Kind == "" {
		return mint.KindStatic
	}
	return l.Kind
}

// LeasesResponse lists the leases of every credential the agent's
// passport grants that the vault holds; Missing names granted
// credentials the vault does not hold.
type LeasesResponse struct {
	Leases  []Lease  `json:"leases"`
	Missing []string `json:"missing,omitempty"`
	// Unavailable names minted credentials, with the narrowing, that
	// could not be minted now (the issuer refused or is unreachable): a
	// sidecar keeps the leases of them it holds until they expire.
	Unavailable []LeaseKey `json:"unavailable,omitempty"`
}

// LeasesRequest is the body of a lease request.
type LeasesRequest struct {
	// Minted says the sidecar tells leases of one credential apart by
	// their narrowing and kind; a sidecar that does not is leased no
	// minted credential (they are listed as Missing).
	Minted bool `json:"minted,omitempty"`
}

// LeaseKey names one lease: a credential, and the narrowing key of a
// minted one.
type LeaseKey struct {
	Name   string `json:"name"`
	Narrow string `json:"narrow,omitempty"`
}

// RevokeRequest revokes a passport (JTI, with its delegated descendants)
// or an agent: exactly one of JTI and Agent. The body is the sidecar
// admin API's.
type RevokeRequest struct {
	JTI    string    `json:"jti,omitempty"`
	Agent  string    `json:"agent,omitempty"`
	Expiry time.Time `json:"expiry,omitzero"`
	Reason string    `json:"reason,omitempty"`
}

// RevocationList is the whole revocation set at a revision: what a
// sidecar loads before it watches from Rev.
type RevocationList struct {
	Rev         int64                 `json:"rev"`
	Revocations []passport.Revocation `json:"revocations"`
}

// Event types of the watch feed.
const (
	// EventRevoked carries a revocation to apply.
	EventRevoked = "revoked"
	// EventBookmark says the feed is alive and caught up to Rev.
	EventBookmark = "bookmark"
	// EventCredentials says a credential changed in the vault: renew its
	// lease now.
	EventCredentials = "credentials_changed"
	// EventResync says the revision asked for is gone: list, then watch
	// again from the list's revision.
	EventResync = "resync"
	// EventDetectors carries an agent's detector modes, whole: Detectors
	// holds its overrides (detector → mode), and none means the
	// sidecar's configured modes apply. A sidecar gets those of the
	// agent it joined as only.
	EventDetectors = "detectors"
)

// WatchEvent is one line of the watch feed (newline-delimited JSON).
type WatchEvent struct {
	Type       string               `json:"type"`
	Rev        int64                `json:"rev"`
	Revocation *passport.Revocation `json:"revocation,omitempty"`
	Credential string               `json:"credential,omitempty"`
	// Agent and Detectors are an EventDetectors' agent and overrides.
	Agent     string            `json:"agent,omitempty"`
	Detectors map[string]string `json:"detectors,omitempty"`
}

// DetectorsPath is the path of agent's detector modes.
func DetectorsPath(agent string) string {
	return PathAgents + "/" + url.PathEscape(agent) + PathAgentDetectors
}

// ModeDefault is the detector mode that is no override: the sidecar's
// configured mode (detect.<detector>.mode) applies.
const ModeDefault = "default"

// AgentDetectors are an agent's detector modes as the control plane sets
// them, one entry per built-in detector in config.Detectors' order, with
// the rollout gate: how long a detector in alert must have been clean
// (no signal) before it is moved to block.
type AgentDetectors struct {
	Agent     string          `json:"agent"`
	Gate      Duration        `json:"gate"`
	Detectors []DetectorState `json:"detectors"`
}

// DetectorState is one detector's mode for an agent.
type DetectorState struct {
	Detector string `json:"detector"`
	// Mode is the agent's override (off, shadow, alert, block, revoke),
	// or ModeDefault when it has none.
	Mode     string `json:"mode"`
	Override bool   `json:"override"`
	// Since is when the mode was set (or the override removed), or the
	// agent's registration when it never was; By and Reason say who set
	// it and why.
	Since  time.Time `json:"since"`
	By     string    `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
	// LastSignal is the newest detector_fired record of this detector
	// for the agent that its sidecars shipped.
	LastSignal time.Time `json:"last_signal,omitzero"`
	// CleanFor is the time since the later of Since and LastSignal.
	CleanFor Duration `json:"clean_for"`
	// GateMet: the mode is an alert override, clean for at least the
	// gate.
	GateMet bool `json:"gate_met"`
}

// DetectorModeRequest sets one detector's mode for an agent; Mode
// ModeDefault (or empty) removes the override.
type DetectorModeRequest struct {
	Detector string `json:"detector"`
	Mode     string `json:"mode"`
	Reason   string `json:"reason,omitempty"`
}

// SidecarStatus is one joined sidecar as the control plane sees it.
type SidecarStatus struct {
	ID          string    `json:"id"`
	Name        string    `json:"name,omitempty"`
	Agent       string    `json:"agent"`
	Method      string    `json:"method"`
	Joined      time.Time `json:"joined"`
	LastContact time.Time `json:"last_contact,omitzero"`
	Watching    bool      `json:"watching"`
	// Rev is the last revision the sidecar's feed delivered; Lag how many
	// revisions it is behind the store.
	Rev int64 `json:"rev"`
	Lag int64 `json:"lag"`
}

// Status is the control plane's state for `stack control status`.
type Status struct {
	Rev      int64           `json:"rev"`
	Agents   int             `json:"agents"`
	Sidecars []SidecarStatus `json:"sidecars"`
}

// Error is the body of every answer other than 2xx.
type Error struct {
	Error  string `json:"error"`
	Reason string `json:"reason,omitempty"`
}

// The fleet audit log's bodies are package fleet's; the names here keep
// the API's vocabulary in one place.
type (
	AuditBatch         = fleet.Batch
	AuditBatchResponse = fleet.BatchResponse
	AuditStream        = fleet.Stream
	AuditIntegrity     = fleet.Finding
)
