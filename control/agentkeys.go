package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/handoff"
)

// An agent's handoff keys are made by the control plane on first need,
// kept in the store wrapped by the KMS, and handed to the agent's
// sidecars with its passport (never to the agent process): every sidecar
// of an agent opens what was sealed to it, and its passports confirm the
// signing key (cnf.jkt).
const prefixAgentKeys = "agent-keys/"

// PathHandoffKeys + "/{agent}" answers an agent's public handoff keys.
const PathHandoffKeys = "/v1/sidecar/handoff-keys"

// agentKeysAAD binds wrapped keys to their agent.
func agentKeysAAD(agent string) []byte { return []byte("stack-agent-keys\x00" + agent) }

// agentKeys returns the agent's handoff keys, making them if it has none.
func (s *Server) agentKeys(ctx context.Context, agent string) (*handoff.AgentKeys, error) {
	k := s.opts.Handoffs.KMS
	for {
		kv, err := s.store.Get(ctx, prefixAgentKeys+agent)
		if err == nil {
			plain, err := k.Unwrap(ctx, kv.Value, agentKeysAAD(agent))
			if err != nil {
				return nil, fmt.Errorf("agent %s's handoff keys: %w", agent, err)
			}
			var keys handoff.AgentKeys
			if err := json.Unmarshal(plain, &keys); err != nil {
				return nil, err
			}
			return &keys, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		keys, err := handoff.GenerateKeys()
		if err != nil {
			return nil, err
		}
		plain, _ := json.Marshal(keys)
		wrapped, err := k.Wrap(ctx, plain, agentKeysAAD(agent))
		if err != nil {
			return nil, fmt.Errorf("wrapping agent %s's handoff keys: %w", agent, err)
		}
		// Create only: of two sidecars asking at once, one makes them
		// and the other reads them.
		if _, err := s.store.CompareAndSwap(ctx, prefixAgentKeys+agent, 0, wrapped); err != nil && !errors.Is(err, store.ErrConflict) {
			return nil, err
		}
	}
}

// handoffKeys answers an agent's public handoff keys, for a sidecar that
// seals a handoff to it.
func (s *Server) handoffKeys(r *http.Request) (any, error) {
	if err := s.handoffsServed(); err != nil {
		return nil, err
	}
	a, err := s.usableAgent(r.Context(), r.PathValue("agent"))
	if err != nil {
		return nil, err
	}
	keys, err := s.agentKeys(r.Context(), a.Name)
	if err != nil {
		return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
	}
	return keys.Public(), nil
}
