package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/passport"
)

// Store prefixes (see the package doc).
const (
	prefixAgents      = "agents/"
	prefixTokens      = "jointokens/"
	prefixSessions    = "sessions/"
	prefixSidecars    = "sidecars/"
	prefixIssued      = "issued/"
	prefixFeed        = "feed/"
	prefixRevocations = prefixFeed + "revocations/"
	prefixVault       = prefixFeed + "vault/"
)

func (s *Server) registerAgent(r *http.Request) (any, error) {
	var req AgentRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	a := req.Agent
	if !ValidAgentName(a.Name) {
		return nil, badRequest(fmt.Sprintf("agent name %q: use letters, digits, '.', '_', '-' and '@', at most 256", a.Name))
	}
	if a.Role != "" {
		role, ok := s.opts.Roles[a.Role]
		if !ok {
			return nil, badRequest(fmt.Sprintf("no role %q in passport.roles of the control plane's config", a.Role))
		}
		if len(a.Scope) > 0 {
			return nil, badRequest("give a role or a scope, not both")
		}
		a.Scope = role.Scope
		if a.TTL == 0 {
			a.TTL = Duration(role.TTL)
		}
		if a.Mode == "" && role.Mode != "" {
			a.Mode = passport.Mode(role.Mode)
		}
	}
	if len(a.Scope) == 0 {
		return nil, badRequest("an agent needs a role or at least one grant")
	}
	if err := a.Scope.Validate(); err != nil {
		return nil, badRequest(err.Error())
	}
	if a.Mode != "" {
		if _, err := passport.ParseMode(string(a.Mode)); err != nil {
			return nil, badRequest(err.Error())
		}
	}
	if a.TTL < 0 || a.TTL > Duration(s.opts.MaxTTL) {
		return nil, badRequest(fmt.Sprintf("ttl %s: between 0 (the default) and passport.max_ttl %s", time.Duration(a.TTL), s.opts.MaxTTL))
	}
	key := prefixAgents + a.Name
	ctx := r.Context()
	var old Agent
	oldRev, err := s.getJSON(ctx, key, &old)
	switch {
	case err == nil && !req.Update:
		return nil, fail(http.StatusConflict, ReasonAgentExists, fmt.Sprintf("agent %s is registered already (use --update to change it)", a.Name))
	case err == nil:
		a.Created, a.Disabled, a.DisabledReason = old.Created, old.Disabled, old.DisabledReason
		a.Updated = s.now().UTC()
	case errors.Is(err, store.ErrNotFound):
		a.Created = s.now().UTC()
	default:
		return nil, err
	}
	a.Rev = 0
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	rev, err := s.store.CompareAndSwap(ctx, key, oldRev, b)
	if errors.Is(err, store.ErrConflict) {
		return nil, fail(http.StatusConflict, ReasonConflict, fmt.Sprintf("agent %s changed meanwhile; try again", a.Name))
	}
	if err != nil {
		return nil, err
	}
	a.Rev = rev
	return a, nil
}

// ValidAgentName reports whether name may name a registered agent: a
// passport's sub (passport.ValidAgent) without '/' and '+', which are not
// safe in the API's paths.
func ValidAgentName(name string) bool {
	return passport.ValidAgent(name) && !strings.ContainsAny(name, "/+")
}

// agent returns a registered agent.
func (s *Server) agent(ctx context.Context, name string) (Agent, error) {
	var a Agent
	rev, err := s.getJSON(ctx, prefixAgents+name, &a)
	if errors.Is(err, store.ErrNotFound) {
		return a, fail(http.StatusNotFound, ReasonAgentUnknown, fmt.Sprintf("no agent %q is registered (stack agent register)", name))
	}
	a.Rev = rev
	return a, err
}

// usableAgent is an agent that may have passports, joins and leases now.
func (s *Server) usableAgent(ctx context.Context, name string) (Agent, error) {
	a, err := s.agent(ctx, name)
	if err == nil && a.Disabled {
		msg := fmt.Sprintf("agent %s is disabled", name)
		if a.DisabledReason != "" {
			msg += ": " + a.DisabledReason
		}
		return a, fail(http.StatusForbidden, ReasonAgentDisabled, msg)
	}
	return a, err
}

func (s *Server) listAgents(r *http.Request) (any, error) {
	return s.Agents(r.Context())
}

// Agents returns every registered agent, by name.
func (s *Server) Agents(ctx context.Context) ([]Agent, error) {
	kvs, _, err := s.store.List(ctx, prefixAgents)
	if err != nil {
		return nil, err
	}
	out := make([]Agent, 0, len(kvs))
	for _, kv := range kvs {
		var a Agent
		if err := json.Unmarshal(kv.Value, &a); err != nil {
			return nil, fmt.Errorf("control: %s: %w", kv.Key, err)
		}
		a.Rev = kv.ModRev
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *Server) showAgent(r *http.Request) (any, error) {
	return s.agent(r.Context(), r.PathValue("name"))
}

// disableAgent stops issuing to the agent and revokes every passport it
// holds: its sidecars refuse it at once.
func (s *Server) disableAgent(r *http.Request) (any, error) {
	var req DisableRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	name := r.PathValue("name")
	a, err := s.setDisabled(r.Context(), name, true, req.Reason)
	if err != nil {
		return nil, err
	}
	why := "agent disabled"
	if req.Reason != "" {
		why += ": " + req.Reason
	}
	if _, err := s.revokeAgent(r.Context(), name, why, "operator"); err != nil {
		return nil, err
	}
	return a, nil
}

// enableAgent lets the agent have passports again. Passports revoked
// while it was disabled stay revoked; new ones are issued after.
func (s *Server) enableAgent(r *http.Request) (any, error) {
	return s.setDisabled(r.Context(), r.PathValue("name"), false, "")
}

func (s *Server) setDisabled(ctx context.Context, name string, disabled bool, reason string) (Agent, error) {
	for {
		a, err := s.agent(ctx, name)
		if err != nil {
			return a, err
		}
		a.Disabled, a.DisabledReason = disabled, reason
		a.Updated = s.now().UTC()
		rev := a.Rev
		a.Rev = 0
		b, err := json.Marshal(a)
		if err != nil {
			return a, err
		}
		nrev, err := s.store.CompareAndSwap(ctx, prefixAgents+name, rev, b)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return a, err
		}
		a.Rev = nrev
		action := "agent_enabled"
		if disabled {
			action = "agent_disabled"
		}
		s.audit(ctx, audit.Record{Action: action, AgentID: name, Detail: reason})
		return a, nil
	}
}
