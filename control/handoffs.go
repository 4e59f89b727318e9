package control

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control/dropoff"
	"github.com/stackctl/stack/handoff"
)

// The API of handoffs between agents: a sidecar deposits what its agent
// sealed for another, and fetches what was sealed for its own, once.
const (
	PathHandoffs = "/v1/sidecar/handoffs"
	// PathHandoffFetch is PathHandoffs + "/{id}/fetch".
	PathHandoffFetch = PathHandoffs + "/{id}/fetch"
	// PathHandoffsAll lists every waiting handoff's metadata (operators).
	PathHandoffsAll = "/v1/handoffs"
)

// Audit actions of handoffs; their records hold the payload's hash, never
// its content.
const (
	ActionHandoffDeposited = "handoff_deposited"
	ActionHandoffDelivered = "handoff_delivered"
	ActionHandoffRefused   = "handoff_refused"
	ActionHandoffWithdrawn = "handoff_withdrawn"
	ActionHandoffExpired   = "handoff_expired"
)

// Reasons a fetch is refused with HTTP 410: ReasonHandoffGone for a
// second fetch, ReasonHandoffExpired for a handoff past its expiry.
const (
	ReasonHandoffGone    = "handoff_gone"
	ReasonHandoffExpired = "handoff_expired"
)

// HandoffDeposit is a sealed handoff a sidecar deposits for its agent.
type HandoffDeposit struct {
	// ID, when set, is the handoff's id: the sealed handoff's jti, so
	// that its recipient can tell it was handed the handoff it asked
	// for. It is 32 hex digits, used once.
	ID     string `json:"id,omitempty"`
	To     string `json:"to"`
	Schema string `json:"schema"`
	// Token is the sealed handoff (compact JWE).
	Token       string   `json:"token"`
	TTL         Duration `json:"ttl"`
	PayloadHash string   `json:"payload_hash,omitempty"`
}

// HandoffMeta is what the control plane knows of a handoff: never its
// content.
type HandoffMeta = dropoff.Meta

// HandoffFetched is a fetched handoff: its metadata and the sealed token,
// which only the recipient's sidecar can open.
type HandoffFetched struct {
	HandoffMeta
	Token string `json:"token"`
}

func (s *Server) handoffsServed() error {
	if s.opts.Handoffs == nil {
		return fail(http.StatusServiceUnavailable, ReasonUnavailable, "this control plane keeps no handoffs")
	}
	return nil
}

// depositHandoff stores a handoff from the calling sidecar's agent.
func (s *Server) depositHandoff(r *http.Request) (any, error) {
	if err := s.handoffsServed(); err != nil {
		return nil, err
	}
	var d HandoffDeposit
	if err := decode(r, &d); err != nil {
		return nil, err
	}
	ctx := r.Context()
	from := callerOf(r).sidecar.Agent
	refuse := func(err error) (any, error) {
		s.audit(ctx, audit.Record{Action: ActionHandoffRefused, AgentID: from, Reason: asAPIError(err).reason,
			Detail: fmt.Sprintf("deposit for %s, schema %s, payload sha256 %s: %s", d.To, d.Schema, d.PayloadHash, err)})
		return nil, err
	}
	switch {
	case len(d.Token) > handoff.MaxSize:
		return refuse(fail(http.StatusRequestEntityTooLarge, ReasonBadRequest, fmt.Sprintf("a sealed handoff of %d bytes, at most %d", len(d.Token), handoff.MaxSize)))
	case d.To == "" || d.Token == "":
		return refuse(badRequest("to and token are required"))
	case time.Duration(d.TTL) <= 0 || time.Duration(d.TTL) > handoff.MaxTTL:
		return refuse(badRequest(fmt.Sprintf("ttl must be more than 0 and at most %s", handoff.MaxTTL)))
	}
	if err := handoff.ValidSchemaName(d.Schema); err != nil {
		return refuse(badRequest(err.Error()))
	}
	if _, err := s.usableAgent(ctx, from); err != nil {
		return refuse(err)
	}
	if _, err := s.usableAgent(ctx, d.To); err != nil {
		return refuse(err)
	}
	m, err := s.opts.Handoffs.Deposit(ctx, dropoff.Meta{ID: d.ID, From: from, To: d.To, Schema: d.Schema, PayloadHash: d.PayloadHash}, d.Token, time.Duration(d.TTL))
	if errors.Is(err, dropoff.ErrInvalid) {
		return refuse(badRequest(err.Error()))
	}
	if err != nil {
		return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
	}
	s.audit(ctx, audit.Record{Action: ActionHandoffDeposited, AgentID: from,
		Detail: fmt.Sprintf("handoff %s to %s, schema %s, %d bytes sealed, payload sha256 %s, expires %s", m.ID, m.To, m.Schema, m.Size, m.PayloadHash, m.Expires.Format(time.RFC3339))})
	return m, nil
}

// listHandoffs lists what waits for the calling sidecar's agent.
func (s *Server) listHandoffs(r *http.Request) (any, error) {
	if err := s.handoffsServed(); err != nil {
		return nil, err
	}
	return s.opts.Handoffs.List(r.Context(), callerOf(r).sidecar.Agent)
}

// fetchHandoff hands the calling sidecar's agent one of its handoffs,
// once: a second fetch is 410.
func (s *Server) fetchHandoff(r *http.Request) (any, error) {
	if err := s.handoffsServed(); err != nil {
		return nil, err
	}
	ctx := r.Context()
	to, id := callerOf(r).sidecar.Agent, r.PathValue("id")
	if _, err := s.usableAgent(ctx, to); err != nil {
		s.audit(ctx, audit.Record{Action: ActionHandoffRefused, AgentID: to, Reason: asAPIError(err).reason, Detail: "fetch of handoff " + id + ": " + err.Error()})
		return nil, err
	}
	m, tok, err := s.opts.Handoffs.Take(ctx, to, id)
	switch {
	case errors.Is(err, dropoff.ErrGone):
		s.audit(ctx, audit.Record{Action: ActionHandoffRefused, AgentID: to, Reason: ReasonHandoffGone, Detail: "fetch of handoff " + id + ": already fetched"})
		return nil, fail(http.StatusGone, ReasonHandoffGone, "handoff "+id+" was fetched already: a handoff is handed out once")
	case errors.Is(err, dropoff.ErrExpired):
		s.audit(ctx, audit.Record{Action: ActionHandoffRefused, AgentID: to, Reason: ReasonHandoffExpired,
			Detail: fmt.Sprintf("fetch of handoff %s from %s: expired at %s", id, m.From, m.Expires.Format(time.RFC3339))})
		return nil, fail(http.StatusGone, ReasonHandoffExpired, "handoff "+id+" expired at "+m.Expires.Format(time.RFC3339))
	case errors.Is(err, dropoff.ErrNotFound):
		return nil, fail(http.StatusNotFound, ReasonNotFound, "no handoff "+id+" waits for "+to+" (expired, withdrawn, or never sent)")
	case err != nil:
		return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
	}
	s.audit(ctx, audit.Record{Action: ActionHandoffDelivered, AgentID: to,
		Detail: fmt.Sprintf("handoff %s from %s, schema %s, payload sha256 %s", m.ID, m.From, m.Schema, m.PayloadHash)})
	return HandoffFetched{HandoffMeta: m, Token: tok}, nil
}

// allHandoffs lists every waiting handoff's metadata, for operators.
func (s *Server) allHandoffs(r *http.Request) (any, error) {
	if err := s.handoffsServed(); err != nil {
		return nil, err
	}
	return s.opts.Handoffs.List(r.Context(), "")
}

// withdrawHandoffs removes a revoked agent's undelivered handoffs.
func (s *Server) withdrawHandoffs(ctx context.Context, agent, why string) {
	if s.opts.Handoffs == nil {
		return
	}
	ms, err := s.opts.Handoffs.Withdraw(ctx, agent)
	if err != nil {
		s.log.Error("withdrawing a revoked agent's handoffs failed", zap.String("agent", agent), zap.Error(err))
	}
	for _, m := range ms {
		s.audit(ctx, audit.Record{Action: ActionHandoffWithdrawn, AgentID: agent,
			Detail: fmt.Sprintf("handoff %s to %s, schema %s, payload sha256 %s: %s", m.ID, m.To, m.Schema, m.PayloadHash, why)})
	}
}

// expireHandoffs removes handoffs past their expiry, each with a record.
func (s *Server) expireHandoffs(ctx context.Context) error {
	if s.opts.Handoffs == nil {
		return nil
	}
	ms, err := s.opts.Handoffs.Expire(ctx)
	for _, m := range ms {
		s.audit(ctx, audit.Record{Action: ActionHandoffExpired, AgentID: m.From,
			Detail: fmt.Sprintf("handoff %s to %s, schema %s, payload sha256 %s: expired at %s unfetched", m.ID, m.To, m.Schema, m.PayloadHash, m.Expires.Format(time.RFC3339))})
	}
	return err
}

// PathHandoffSchemas is where operators put the schemas handoff payloads
// are checked against, and where sidecars read them.
const PathHandoffSchemas = "/v1/handoff-schemas"

// prefixHandoffSchemas keeps the schemas in the store, by name.
const prefixHandoffSchemas = "handoff-schemas/"

// HandoffSchema is a named JSON Schema (2020-12) for handoff payloads.
type HandoffSchema struct {
	Name    string          `json:"name"`
	Schema  json.RawMessage `json:"schema"`
	Updated time.Time       `json:"updated,omitzero"`
}

// putHandoffSchema compiles and stores a schema; a schema that does not
// compile is refused with why.
func (s *Server) putHandoffSchema(r *http.Request) (any, error) {
	var hs HandoffSchema
	if err := decode(r, &hs); err != nil {
		return nil, err
	}
	if _, err := handoff.CompileSchema(hs.Name, hs.Schema); err != nil {
		return nil, badRequest(err.Error())
	}
	hs.Updated = s.now().UTC()
	b, _ := json.Marshal(hs)
	ctx := r.Context()
	if _, err := s.store.Put(ctx, prefixHandoffSchemas+hs.Name, b); err != nil {
		return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
	}
	sum := sha256.Sum256(hs.Schema)
	s.audit(ctx, audit.Record{Action: ActionHandoffSchemaPut, Detail: fmt.Sprintf("schema %s, sha256 %x", hs.Name, sum)})
	return hs, nil
}

// ActionHandoffSchemaPut records a schema stored or replaced.
const ActionHandoffSchemaPut = "handoff_schema_put"

// listHandoffSchemas returns every schema, by name.
func (s *Server) listHandoffSchemas(r *http.Request) (any, error) {
	kvs, _, err := s.store.List(r.Context(), prefixHandoffSchemas)
	if err != nil {
		return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
	}
	out := []HandoffSchema{}
	for _, kv := range kvs {
		var hs HandoffSchema
		if err := json.Unmarshal(kv.Value, &hs); err != nil {
			return nil, fmt.Errorf("handoff schema %s: %w", kv.Key, err)
		}
		out = append(out, hs)
	}
	return out, nil
}
