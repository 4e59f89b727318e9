package control

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/passport"
)

// issued records which sidecar a passport went to (issued/JTI), so that
// revoking the passport also stops that sidecar from refreshing it.
type issued struct {
	Sidecar   string    `json:"sidecar"`
	Agent     string    `json:"agent"`
	ExpiresAt time.Time `json:"expires_at"`
}

// issuePassport signs a passport for the calling sidecar's agent, with
// the agent's scope, TTL and mode as registered now.
func (s *Server) issuePassport(r *http.Request) (any, error) {
	c := callerOf(r)
	ctx := r.Context()
	a, err := s.checkSidecar(ctx, c.sidecar)
	if err != nil {
		return nil, err
	}
	if err := s.afterAgentRevocation(ctx, a.Name); err != nil {
		return nil, err
	}
	req := passport.IssueRequest{Agent: a.Name, Scope: a.Scope, TTL: time.Duration(a.TTL), Mode: a.Mode}
	var handoffKeys json.RawMessage
	if s.opts.Handoffs != nil {
		keys, err := s.agentKeys(ctx, a.Name)
		if err != nil {
			return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
		}
		req.Confirmation = &passport.Confirmation{JKT: keys.JKT()}
		handoffKeys, _ = json.Marshal(keys)
	}
	s.keyMu.RLock()
	tok, claims, err := s.issuer.Issue(ctx, req)
	s.keyMu.RUnlock()
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(issued{Sidecar: c.sidecar.ID, Agent: a.Name, ExpiresAt: claims.Expiry.Add(s.opts.Leeway)})
	if _, err := s.store.Put(ctx, prefixIssued+claims.ID, b); err != nil {
		return nil, err
	}
	s.opts.Metrics.issued.Inc()
	s.audit(ctx, audit.Record{Action: audit.ActionPassportIssued, AgentID: a.Name, PassportJTI: claims.ID,
		Detail: "to sidecar " + c.sidecar.ID + ", expires " + claims.Expiry.UTC().Format(time.RFC3339)})
	return PassportResponse{Passport: tok, JTI: claims.ID, IssuedAt: claims.IssuedAt, ExpiresAt: claims.Expiry, JWKS: s.publicKeys(), HandoffKeys: handoffKeys}, nil
}

// afterAgentRevocation waits, when the agent was revoked in this very
// second, for the next one: revoking an agent covers every passport
// issued up to its second (iat has no finer grain), so a passport issued
// now would be born revoked.
func (s *Server) afterAgentRevocation(ctx context.Context, agent string) error {
	var rv passport.Revocation
	if _, err := s.getJSON(ctx, prefixRevocations+string(passport.RevokeAgent)+"/"+agent, &rv); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}
	wait := rv.RevokedAt.Truncate(time.Second).Add(time.Second).Sub(s.now())
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (s *Server) publicKeys() jose.JSONWebKeySet {
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	return s.opts.Keys.JWKS(s.now())
}
