// Package mcpserver serves STACK's operator tools over the Model Context
// Protocol: list the agents, read an agent's audit timeline across the
// fleet and its detector modes, revoke an agent, set an agent's detector
// mode, and scan a text with the detectors.
//
// # Basics
//
// New returns an mcp.Server (github.com/modelcontextprotocol/go-sdk) whose
// tools act through an Operator: `stack mcp` gives it the control plane's
// API with the operator token. Before a tool acts, the call is recorded
// in the control plane's audit log (operator_call); a call that cannot be
// recorded is refused, so nothing happens unrecorded. Refusals come back
// as tool errors (isError) with the reason, which MCP clients show.
//
// # Caveats
//
// The tools are an operator's: whoever reaches this server acts with the
// operator token it was started with. Over HTTP, Handler lets in only
// requests that present that token.
package mcpserver

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control"
)

// Operator is what the tools act through: the control plane's API.
type Operator interface {
	Agents(ctx context.Context) ([]control.Agent, error)
	// Timeline returns the agent's newest records across the fleet, at
	// most limit, oldest first.
	Timeline(ctx context.Context, agent string, limit int) ([]audit.Record, error)
	Revoke(ctx context.Context, agent, reason string) error
	// DetectorModes returns the detector modes the control plane sets for
	// the agent, with the rollout gate.
	DetectorModes(ctx context.Context, agent string) (control.AgentDetectors, error)
	// SetDetectorMode sets one detector's mode for the agent
	// (control.ModeDefault removes it) and returns the agent's modes.
	SetDetectorMode(ctx context.Context, agent, detector, mode, reason string) (control.AgentDetectors, error)
	// Record writes the call to the control plane's audit log.
	Record(ctx context.Context, call control.OperatorCall) error
}

// ScanFunc runs the detectors on a text (what `stack detect scan` does).
type ScanFunc func(text string) (Verdict, error)

// Verdict is a scan's answer.
type Verdict struct {
	Flagged bool     `json:"flagged" jsonschema:"whether any detector fired"`
	Score   float64  `json:"score" jsonschema:"the prompt-injection score, 0 to 1"`
	Signals []string `json:"signals" jsonschema:"each detector's finding"`
}

// Options configure New.
type Options struct {
	Operator Operator
	Scan     ScanFunc
	Version  string
}

// Limits of the tools' arguments.
const (
	DefaultTimeline = 50
	MaxTimeline     = 500
	MaxScanText     = 1 << 20
)

// New returns the MCP server with the operator tools.
func New(opts Options) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "stack", Title: "STACK operator tools", Version: opts.Version}, nil)
	t := tools{opts}
	mcp.AddTool(s, &mcp.Tool{Name: "list_agents", Description: "List the agents the control plane knows: name, whether disabled and why, passport lifetime and mode, and how many grants."}, t.listAgents)
	mcp.AddTool(s, &mcp.Tool{Name: "agent_timeline", Description: "An agent's newest audit records across every sidecar, from the fleet audit log, oldest first, with its detector modes and how long each detector has been clean."}, t.timeline)
	mcp.AddTool(s, &mcp.Tool{Name: "revoke_agent", Description: "Revoke an agent: every passport it holds stops working on its sidecars' next request, and its undelivered handoffs are withdrawn. A reason is required."}, t.revoke)
	mcp.AddTool(s, &mcp.Tool{Name: "set_detector_mode", Description: "Set one detector's mode for one agent, in place of its sidecars' configured mode, within a second on every sidecar of the agent: off, shadow, alert, block or revoke; default removes it. The rollout gate (how long the detector has been clean in alert) is shown; it is advice, not a lock. A reason is required."}, t.setDetectorMode)
	mcp.AddTool(s, &mcp.Tool{Name: "scan_text", Description: "Scan a text for prompt injection and leaked credentials with STACK's detectors, as stack detect scan does."}, t.scan)
	return s
}

type tools struct{ Options }

// record writes the call before it acts; without a record, no action.
func (t tools) record(ctx context.Context, tool, detail string) error {
	if err := t.Operator.Record(ctx, control.OperatorCall{Via: "mcp", Tool: tool, Detail: detail}); err != nil {
		return fmt.Errorf("refused: the call could not be recorded in the audit log: %w", err)
	}
	return nil
}

// AgentSummary is one agent in list_agents.
type AgentSummary struct {
	Name           string `json:"name"`
	Disabled       bool   `json:"disabled,omitempty"`
	DisabledReason string `json:"disabled_reason,omitempty"`
	Mode           string `json:"mode,omitempty"`
	TTL            string `json:"ttl,omitempty"`
	Grants         int    `json:"grants"`
}

type noArgs struct{}

type agentList struct {
	Agents []AgentSummary `json:"agents"`
}

func (t tools) listAgents(ctx context.Context, _ *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, agentList, error) {
	if err := t.record(ctx, "list_agents", ""); err != nil {
		return nil, agentList{}, err
	}
	agents, err := t.Operator.Agents(ctx)
	if err != nil {
		return nil, agentList{}, err
	}
	out := agentList{Agents: []AgentSummary{}}
	for _, a := range agents {
		s := AgentSummary{Name: a.Name, Disabled: a.Disabled, DisabledReason: a.DisabledReason, Mode: string(a.Mode), Grants: len(a.Scope)}
		if a.TTL > 0 {
			s.TTL = time.Duration(a.TTL).String()
		}
		out.Agents = append(out.Agents, s)
	}
	return nil, out, nil
}

type timelineArgs struct {
	Agent string `json:"agent" jsonschema:"the agent's name"`
	Limit int    `json:"limit,omitempty" jsonschema:"how many of the newest records, 50 by default, 500 at most"`
}

// Event is one record in agent_timeline.
type Event struct {
	Time       time.Time `json:"time"`
	Action     string    `json:"action"`
	Host       string    `json:"host,omitempty"`
	Method     string    `json:"method,omitempty"`
	Path       string    `json:"path,omitempty"`
	Status     int       `json:"status,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Credential string    `json:"credential,omitempty"`
	Detector   string    `json:"detector,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	EventID    string    `json:"event_id"`
}

type timeline struct {
	Agent  string  `json:"agent"`
	Events []Event `json:"events"`
	// The agent's detector modes, for reading its detector_fired events.
	DetectorGate  string         `json:"detector_gate" jsonschema:"how long a detector in alert must be clean before it is ready for block"`
	DetectorModes []DetectorMode `json:"detector_modes"`
}

// DetectorMode is one detector's mode for an agent.
type DetectorMode struct {
	Detector   string    `json:"detector"`
	Mode       string    `json:"mode" jsonschema:"off, shadow, alert, block or revoke for this agent; default: its sidecars' configured mode"`
	Since      time.Time `json:"since" jsonschema:"when the mode was set, or the agent registered"`
	By         string    `json:"by,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	LastSignal time.Time `json:"last_signal,omitzero" jsonschema:"the newest signal of this detector for the agent"`
	CleanFor   string    `json:"clean_for" jsonschema:"time since the later of since and last_signal"`
	GateMet    bool      `json:"gate_met" jsonschema:"in alert and clean for the whole gate: ready for block"`
}

// detectorModes is the tools' view of an agent's detector modes.
func detectorModes(ad control.AgentDetectors) (gate string, modes []DetectorMode) {
	modes = []DetectorMode{}
	for _, d := range ad.Detectors {
		modes = append(modes, DetectorMode{Detector: d.Detector, Mode: d.Mode, Since: d.Since, By: d.By, Reason: d.Reason,
			LastSignal: d.LastSignal, CleanFor: time.Duration(d.CleanFor).Round(time.Second).String(), GateMet: d.GateMet})
	}
	return time.Duration(ad.Gate).String(), modes
}

func (t tools) timeline(ctx context.Context, _ *mcp.CallToolRequest, in timelineArgs) (*mcp.CallToolResult, timeline, error) {
	if !control.ValidAgentName(in.Agent) {
		return nil, timeline{}, errors.New("agent: give an agent's name")
	}
	limit := in.Limit
	switch {
	case limit == 0:
		limit = DefaultTimeline
	case limit < 0 || limit > MaxTimeline:
		return nil, timeline{}, fmt.Errorf("limit: 1 to %d", MaxTimeline)
	}
	if err := t.record(ctx, "agent_timeline", fmt.Sprintf("agent %s, limit %d", in.Agent, limit)); err != nil {
		return nil, timeline{}, err
	}
	recs, err := t.Operator.Timeline(ctx, in.Agent, limit)
	if err != nil {
		return nil, timeline{}, err
	}
	out := timeline{Agent: in.Agent, Events: []Event{}}
	for _, r := range recs {
		out.Events = append(out.Events, Event{Time: time.UnixMilli(r.TimestampMS).UTC(), Action: r.Action, Host: r.Host, Method: r.Method, Path: r.Path,
			Status: r.Status, Reason: r.Reason, Credential: r.CredentialID, Detector: r.Detector, Detail: r.Detail, EventID: r.EventID})
	}
	ad, err := t.Operator.DetectorModes(ctx, in.Agent)
	if err != nil {
		return nil, timeline{}, err
	}
	out.DetectorGate, out.DetectorModes = detectorModes(ad)
	return nil, out, nil
}

type detectorModeArgs struct {
	Agent    string `json:"agent" jsonschema:"the agent's name"`
	Detector string `json:"detector" jsonschema:"credential_burst, scope_drift, prompt_injection or credential_exfiltration"`
	Mode     string `json:"mode" jsonschema:"off, shadow, alert, block or revoke; default removes the agent's mode"`
	Reason   string `json:"reason" jsonschema:"why, for the audit log"`
}

type agentModes struct {
	Agent         string         `json:"agent"`
	DetectorGate  string         `json:"detector_gate" jsonschema:"how long a detector in alert must be clean before it is ready for block"`
	DetectorModes []DetectorMode `json:"detector_modes"`
}

// setDetectorMode checks only that the call is whole; which detectors and
// modes exist is the control plane's to say.
func (t tools) setDetectorMode(ctx context.Context, _ *mcp.CallToolRequest, in detectorModeArgs) (*mcp.CallToolResult, agentModes, error) {
	switch {
	case !control.ValidAgentName(in.Agent):
		return nil, agentModes{}, errors.New("agent: give an agent's name")
	case strings.TrimSpace(in.Detector) == "":
		return nil, agentModes{}, errors.New("detector: give a detector's name")
	case strings.TrimSpace(in.Mode) == "":
		return nil, agentModes{}, errors.New("mode: give off, shadow, alert, block, revoke, or default to remove the agent's mode")
	case strings.TrimSpace(in.Reason) == "":
		return nil, agentModes{}, errors.New("reason: say why the mode changes; it goes into the audit log")
	}
	if err := t.record(ctx, "set_detector_mode", fmt.Sprintf("agent %s, detector %s, mode %s, reason %q",
		in.Agent, clip(in.Detector, 64), clip(in.Mode, 32), clip(in.Reason, 200))); err != nil {
		return nil, agentModes{}, err
	}
	ad, err := t.Operator.SetDetectorMode(ctx, in.Agent, in.Detector, in.Mode, in.Reason)
	if err != nil {
		return nil, agentModes{}, err
	}
	out := agentModes{Agent: ad.Agent}
	out.DetectorGate, out.DetectorModes = detectorModes(ad)
	return nil, out, nil
}

type revokeArgs struct {
	Agent  string `json:"agent" jsonschema:"the agent to revoke"`
	Reason string `json:"reason" jsonschema:"why, for the audit log"`
}

type revoked struct {
	Agent   string `json:"agent"`
	Revoked bool   `json:"revoked"`
}

func (t tools) revoke(ctx context.Context, _ *mcp.CallToolRequest, in revokeArgs) (*mcp.CallToolResult, revoked, error) {
	if !control.ValidAgentName(in.Agent) {
		return nil, revoked{}, errors.New("agent: give an agent's name")
	}
	if strings.TrimSpace(in.Reason) == "" {
		return nil, revoked{}, errors.New("reason: say why the agent is revoked; it goes into the audit log")
	}
	if err := t.record(ctx, "revoke_agent", fmt.Sprintf("agent %s, reason %q", in.Agent, clip(in.Reason, 200))); err != nil {
		return nil, revoked{}, err
	}
	if err := t.Operator.Revoke(ctx, in.Agent, in.Reason); err != nil {
		return nil, revoked{}, err
	}
	return nil, revoked{Agent: in.Agent, Revoked: true}, nil
}

type scanArgs struct {
	Text string `json:"text" jsonschema:"the text to scan"`
}

func (t tools) scan(ctx context.Context, _ *mcp.CallToolRequest, in scanArgs) (*mcp.CallToolResult, Verdict, error) {
	if len(in.Text) > MaxScanText {
		return nil, Verdict{}, fmt.Errorf("text: at most %d bytes", MaxScanText)
	}
	// The record says how much was scanned, never what: the text may hold
	// the secret it is scanned for.
	if err := t.record(ctx, "scan_text", fmt.Sprintf("%d bytes", len(in.Text))); err != nil {
		return nil, Verdict{}, err
	}
	v, err := t.Scan(in.Text)
	if v.Signals == nil {
		v.Signals = []string{}
	}
	return nil, v, err
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Handler serves s over streamable HTTP to requests that present token
// as a bearer token; others get 401.
func Handler(s *mcp.Server, token string) http.Handler {
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stack"`)
			http.Error(w, "stack mcp: send the operator token as Authorization: Bearer", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
