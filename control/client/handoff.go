package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/handoff"
)

// ErrNoHandoffKeys: the control plane handed no handoff keys with the
// passport (it keeps no handoffs).
var ErrNoHandoffKeys = errors.New("control client: the control plane gave this agent no handoff keys")

// HandoffKeys returns the agent's handoff keys from its current passport
// (which confirms the signing key), and that passport.
func (c *Client) HandoffKeys() (*handoff.AgentKeys, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handoffKeys == nil {
		return nil, "", ErrNoHandoffKeys
	}
	return c.handoffKeys, c.token, nil
}

// PublicHandoffKeys returns another agent's public handoff keys.
func (c *Client) PublicHandoffKeys(ctx context.Context, agent string) (handoff.PublicKeys, error) {
	var pk handoff.PublicKeys
	err := c.authed(ctx, http.MethodGet, control.PathHandoffKeys+"/"+url.PathEscape(agent), nil, &pk)
	return pk, err
}

// DepositHandoff deposits a sealed handoff from this agent.
func (c *Client) DepositHandoff(ctx context.Context, d control.HandoffDeposit) (control.HandoffMeta, error) {
	var m control.HandoffMeta
	err := c.authed(ctx, http.MethodPost, control.PathHandoffs, d, &m)
	return m, err
}

// Inbox lists the handoffs waiting for this agent.
func (c *Client) Inbox(ctx context.Context) ([]control.HandoffMeta, error) {
	var ms []control.HandoffMeta
	err := c.authed(ctx, http.MethodGet, control.PathHandoffs, nil, &ms)
	return ms, err
}

// FetchHandoff takes one of this agent's handoffs, once: a second fetch
// is an *APIError with status 410.
func (c *Client) FetchHandoff(ctx context.Context, id string) (control.HandoffFetched, error) {
	var f control.HandoffFetched
	err := c.authed(ctx, http.MethodPost, control.PathHandoffs+"/"+url.PathEscape(id)+"/fetch", nil, &f)
	return f, err
}

// HandoffSchemas returns the payload schemas the control plane keeps.
func (c *Client) HandoffSchemas(ctx context.Context) ([]control.HandoffSchema, error) {
	var hs []control.HandoffSchema
	err := c.authed(ctx, http.MethodGet, control.PathHandoffSchemas, nil, &hs)
	return hs, err
}
