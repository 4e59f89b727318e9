package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control/store"
)

// Prefixes of the secrets the control plane hands out, so a leaked one
// is recognisable (and secret scanners can be taught them).
const (
	joinTokenPrefix    = "stkj_"
	sidecarTokenPrefix = "stks_"
)

// msgJoinTokenInvalid answers a join token the store does not hold: one
// never issued, spent, or expired (the store deletes those by itself).
const msgJoinTokenInvalid = "the join token is not valid, was used already or has expired"

// joinToken is a join token as stored (keyed by its hash).
type joinToken struct {
	Agent     string    `json:"agent"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// sidecarRecord is a joined sidecar as stored (sidecars/ID).
type sidecarRecord struct {
	ID     string    `json:"id"`
	Name   string    `json:"name,omitempty"`
	Agent  string    `json:"agent"`
	Method string    `json:"method"`
	Joined time.Time `json:"joined"`
	// ExpiresAt is when its newest credential expires.
	ExpiresAt time.Time `json:"expires_at"`
	// Revoked sidecars get no passport, lease or renewal: set when a
	// passport issued to the sidecar is revoked, so that it cannot refresh
	// its way out of the revocation.
	Revoked       bool   `json:"revoked,omitempty"`
	RevokedReason string `json:"revoked_reason,omitempty"`
}

// session is one credential of a sidecar as stored (sessions/HASH).
type session struct {
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
}

func randomToken(prefix string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return prefix + hex.EncodeToString(b), nil
}

func (s *Server) joinToken(r *http.Request) (any, error) {
	var req JoinTokenRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	ttl := time.Duration(req.TTL)
	switch {
	case ttl == 0:
		ttl = DefaultJoinTokenTTL
	case ttl < 0 || ttl > MaxJoinTokenTTL:
		return nil, badRequest(fmt.Sprintf("ttl %s: between 1s and %s", ttl, MaxJoinTokenTTL))
	}
	ctx := r.Context()
	if _, err := s.usableAgent(ctx, req.Agent); err != nil {
		return nil, err
	}
	tok, err := randomToken(joinTokenPrefix)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	jt := joinToken{Agent: req.Agent, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	b, _ := json.Marshal(jt)
	// The store deletes the token when it expires, even if no control
	// plane runs then; ExpiresAt stays what decides, to the instant.
	if _, err := s.store.Create(ctx, prefixTokens+hashed(tok), b, ttl); err != nil {
		return nil, err
	}
	s.audit(ctx, audit.Record{Action: "join_token_created", AgentID: req.Agent, Detail: "expires " + jt.ExpiresAt.Format(time.RFC3339)})
	return JoinTokenResponse{Token: tok, Agent: req.Agent, ExpiresAt: jt.ExpiresAt}, nil
}

// join admits a sidecar: a join token is spent (deleted by
// compare-and-swap, so two sidecars racing with one token cannot both
// win), a workload token is checked against its issuer.
func (s *Server) join(r *http.Request) (any, error) {
	var req JoinRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	ctx := r.Context()
	var agent, method, subject string
	switch {
	case (req.JoinToken == "") == (req.OIDCToken == ""):
		return nil, badRequest("give exactly one of join_token and oidc_token")
	case req.JoinToken != "":
		a, err := s.spendJoinToken(ctx, req.JoinToken)
		if err != nil {
			s.opts.Metrics.joins.WithLabelValues("token", asAPIError(err).reason).Inc()
			return nil, err
		}
		agent, method = a, "join_token"
	default:
		if s.opts.Attester == nil {
			return nil, fail(http.StatusForbidden, ReasonWorkloadDisabled, "workload identity is not configured (control.oidc_issuers)")
		}
		// A token with a bad signature makes the OIDC library fetch the
		// issuer's keys again: bound how often anyone can make the
		// control plane do that to kube-apiserver or a CI provider.
		if !s.oidcJoins.Allow() {
			s.opts.Metrics.joins.WithLabelValues("oidc", ReasonRateLimited).Inc()
			return nil, fail(http.StatusTooManyRequests, ReasonRateLimited, "too many workload joins at once; retry in a second")
		}
		a, sub, err := s.opts.Attester.Attest(ctx, req.OIDCToken)
		if err != nil {
			reason := s.opts.Attester.Reason(err)
			s.opts.Metrics.joins.WithLabelValues("oidc", reason).Inc()
			s.log.Info("workload join refused", zap.String("reason", reason), zap.Error(err))
			return nil, fail(http.StatusForbidden, reason, err.Error())
		}
		agent, method, subject = a, "oidc", sub
	}
	if _, err := s.usableAgent(ctx, agent); err != nil {
		s.opts.Metrics.joins.WithLabelValues(method, asAPIError(err).reason).Inc()
		return nil, err
	}
	id, err := randomToken("sc-")
	if err != nil {
		return nil, err
	}
	id = id[:3+16]
	now := s.now().UTC()
	rec := sidecarRecord{ID: id, Name: req.Name, Agent: agent, Method: method, Joined: now}
	cred, err := s.newCredential(ctx, rec)
	if err != nil {
		return nil, err
	}
	s.opts.Metrics.joins.WithLabelValues(method, "ok").Inc()
	detail := fmt.Sprintf("sidecar %s (%s) joined by %s", id, req.Name, method)
	if subject != "" {
		detail += " as " + subject
	}
	s.audit(ctx, audit.Record{Action: "sidecar_joined", AgentID: agent, Detail: detail})
	s.log.Info("sidecar joined", zap.String("sidecar", id), zap.String("name", req.Name), zap.String("agent", agent), zap.String("method", method))
	return cred, nil
}

func (s *Server) spendJoinToken(ctx context.Context, tok string) (string, error) {
	key := prefixTokens + hashed(tok)
	var jt joinToken
	rev, err := s.getJSON(ctx, key, &jt)
	if errors.Is(err, store.ErrNotFound) {
		return "", fail(http.StatusForbidden, ReasonJoinTokenInvalid, msgJoinTokenInvalid)
	}
	if err != nil {
		return "", err
	}
	if !s.now().Before(jt.ExpiresAt) {
		return "", fail(http.StatusForbidden, ReasonJoinTokenExpired, "the join token expired at "+jt.ExpiresAt.Format(time.RFC3339)+"; ask for a new one (stack control join-token)")
	}
	// Spent by deleting it at the revision read: another join, or the
	// store's expiry, that came first makes this one lose.
	if _, err := s.store.CompareAndSwap(ctx, key, rev, nil); err != nil {
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			return "", fail(http.StatusForbidden, ReasonJoinTokenInvalid, msgJoinTokenInvalid)
		}
		return "", err
	}
	return jt.Agent, nil
}

// newCredential stores a fresh credential for the sidecar rec.
func (s *Server) newCredential(ctx context.Context, rec sidecarRecord) (Credential, error) {
	tok, err := randomToken(sidecarTokenPrefix)
	if err != nil {
		return Credential{}, err
	}
	exp := s.now().UTC().Add(s.opts.SidecarTTL)
	if err := s.updateSidecar(ctx, rec, func(r *sidecarRecord) error {
		if r.Revoked {
			return fail(http.StatusForbidden, ReasonSidecarRevoked, "this sidecar's passport was revoked: "+r.RevokedReason)
		}
		r.ExpiresAt = exp
		return nil
	}); err != nil {
		return Credential{}, err
	}
	b, _ := json.Marshal(session{ID: rec.ID, ExpiresAt: exp})
	// As for join tokens: the store's expiry removes the secret, exp
	// decides. The store's clock starts after exp was computed, so the
	// key never goes before exp.
	if _, err := s.store.Create(ctx, prefixSessions+hashed(tok), b, s.opts.SidecarTTL); err != nil {
		return Credential{}, err
	}
	return Credential{SidecarID: rec.ID, Agent: rec.Agent, Token: tok, ExpiresAt: exp}, nil
}

// updateSidecar changes a sidecar's record with f, creating it from def
// when it does not exist yet.
func (s *Server) updateSidecar(ctx context.Context, def sidecarRecord, f func(*sidecarRecord) error) error {
	key := prefixSidecars + def.ID
	for {
		rec := def
		rev, err := s.getJSON(ctx, key, &rec)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := f(&rec); err != nil {
			return err
		}
		b, _ := json.Marshal(rec)
		_, err = s.store.CompareAndSwap(ctx, key, rev, b)
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
}

// authSidecar finds the sidecar a credential belongs to.
func (s *Server) authSidecar(ctx context.Context, tok string) (*sidecarRecord, error) {
	var sess session
	if _, err := s.getJSON(ctx, prefixSessions+hashed(tok), &sess); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fail(http.StatusUnauthorized, ReasonCredentialInvalid, "the sidecar credential is not valid; join again")
		}
		return nil, err
	}
	if !s.now().Before(sess.ExpiresAt) {
		return nil, fail(http.StatusUnauthorized, ReasonCredentialExpired, "the sidecar credential expired at "+sess.ExpiresAt.Format(time.RFC3339)+"; join again")
	}
	var rec sidecarRecord
	if _, err := s.getJSON(ctx, prefixSidecars+sess.ID, &rec); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fail(http.StatusUnauthorized, ReasonCredentialInvalid, "the sidecar is no longer known; join again")
		}
		return nil, err
	}
	return &rec, nil
}

// checkSidecar refuses a sidecar whose agent is disabled or whose own
// passport was revoked.
func (s *Server) checkSidecar(ctx context.Context, rec *sidecarRecord) (Agent, error) {
	if rec.Revoked {
		return Agent{}, fail(http.StatusForbidden, ReasonSidecarRevoked, "this sidecar's passport was revoked: "+rec.RevokedReason)
	}
	return s.usableAgent(ctx, rec.Agent)
}

// renew gives a sidecar a new credential. The old one stays valid until
// it expires, so a renewal whose answer is lost costs nothing.
func (s *Server) renew(r *http.Request) (any, error) {
	c := callerOf(r)
	if _, err := s.checkSidecar(r.Context(), c.sidecar); err != nil {
		return nil, err
	}
	return s.newCredential(r.Context(), *c.sidecar)
}
