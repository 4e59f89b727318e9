package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/stackctl/stack/handoff"
	"github.com/stackctl/stack/reason"
)

// AgentOptions configure NewAgent.
type AgentOptions struct {
	// Sidecar reaches the agent's sidecar as the agent does: through its
	// HTTPS_PROXY, trusting its CA. The sidecar checks the passport, does
	// the work and audits every call.
	Sidecar *http.Client
	Version string
}

// NewAgent returns the MCP server of an agent's own tools: what its
// passport allows, and its handoffs. It runs beside the agent (`stack mcp
// --agent`) and holds nothing: every tool is a request to the agent's
// sidecar at handoff.SidecarHost, under the agent's own passport.
func NewAgent(opts AgentOptions) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "stack-agent", Title: "STACK agent tools", Version: opts.Version}, nil)
	t := agentTools{opts}
	mcp.AddTool(s, &mcp.Tool{Name: "my_passport", Description: "What this agent's passport allows: its grants (hosts, methods, paths, credentials, handoffs), its mode and when it expires."}, t.passport)
	mcp.AddTool(s, &mcp.Tool{Name: "hand_off", Description: "Hand a JSON payload to another agent: checked against the named schema and this agent's handoff grants, signed, encrypted to the recipient, delivered once."}, t.handOff)
	mcp.AddTool(s, &mcp.Tool{Name: "handoff_inbox", Description: "The handoffs waiting for this agent: id, sender, schema, size, expiry."}, t.inbox)
	mcp.AddTool(s, &mcp.Tool{Name: "fetch_handoff", Description: "Take one waiting handoff, once: the payload, verified, with who sent it."}, t.fetch)
	return s
}

type agentTools struct{ AgentOptions }

// call sends one request to the sidecar's desk and decodes its answer;
// a refusal is an error naming the sidecar's reason.
func (t agentTools) call(ctx context.Context, method, path string, in any, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+handoff.SidecarHost+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := t.Sidecar.Do(req)
	if err != nil {
		return fmt.Errorf("the sidecar cannot be reached (is HTTPS_PROXY set to it, and its CA trusted?): %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 2*handoff.MaxSize))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var d struct {
			Detail string `json:"detail"`
		}
		json.Unmarshal(b, &d)
		return fmt.Errorf("refused by the sidecar (%d %s): %s", resp.StatusCode, resp.Header.Get(reason.Header), d.Detail)
	}
	return json.Unmarshal(b, out)
}

type passportView map[string]any

func (t agentTools) passport(ctx context.Context, _ *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, passportView, error) {
	var v passportView
	err := t.call(ctx, http.MethodGet, handoff.SidecarPassportPath, nil, &v)
	return nil, v, err
}

type handOffArgs struct {
	To      string         `json:"to" jsonschema:"the recipient agent"`
	Schema  string         `json:"schema" jsonschema:"the payload's schema, which the recipient expects"`
	Payload map[string]any `json:"payload" jsonschema:"the JSON object to hand off"`
	TTL     string         `json:"ttl,omitempty" jsonschema:"how long it waits for the recipient, such as 1h (24h by default, a week at most)"`
}

type sent map[string]any

func (t agentTools) handOff(ctx context.Context, _ *mcp.CallToolRequest, in handOffArgs) (*mcp.CallToolResult, sent, error) {
	if in.To == "" || in.Schema == "" || in.Payload == nil {
		return nil, nil, errors.New("to, schema and payload are required")
	}
	body := map[string]any{"to": in.To, "schema": in.Schema, "payload": in.Payload}
	if in.TTL != "" {
		body["ttl"] = in.TTL
	}
	var out sent
	err := t.call(ctx, http.MethodPost, handoff.SidecarPath, body, &out)
	return nil, out, err
}

type inbox struct {
	Waiting []map[string]any `json:"waiting"`
}

func (t agentTools) inbox(ctx context.Context, _ *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, inbox, error) {
	out := inbox{Waiting: []map[string]any{}}
	err := t.call(ctx, http.MethodGet, handoff.SidecarPath, nil, &out.Waiting)
	return nil, out, err
}

type fetchArgs struct {
	ID string `json:"id" jsonschema:"the handoff's id, from handoff_inbox"`
}

func (t agentTools) fetch(ctx context.Context, _ *mcp.CallToolRequest, in fetchArgs) (*mcp.CallToolResult, sent, error) {
	if in.ID == "" {
		return nil, nil, errors.New("id: a handoff's id, from handoff_inbox")
	}
	var out sent
	err := t.call(ctx, http.MethodGet, handoff.SidecarPath+"/"+url.PathEscape(in.ID), nil, &out)
	return nil, out, err
}
