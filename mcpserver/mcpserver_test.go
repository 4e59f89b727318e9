package mcpserver_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/mcpserver"
)

// unrecorded is a control plane whose audit log refuses every record;
// the tools must then act on nothing. (The tools against a real control
// plane: cmd/stack's TestMCPOperatorTools.)
type unrecorded struct{ acted []string }

func (u *unrecorded) Agents(context.Context) ([]control.Agent, error) {
	u.acted = append(u.acted, "agents")
	return nil, nil
}
func (u *unrecorded) Timeline(context.Context, string, int) ([]audit.Record, error) {
	u.acted = append(u.acted, "timeline")
	return nil, nil
}
func (u *unrecorded) Revoke(context.Context, string, string) error {
	u.acted = append(u.acted, "revoke")
	return nil
}
func (u *unrecorded) DetectorModes(context.Context, string) (control.AgentDetectors, error) {
	u.acted = append(u.acted, "detector modes")
	return control.AgentDetectors{}, nil
}
func (u *unrecorded) SetDetectorMode(context.Context, string, string, string, string) (control.AgentDetectors, error) {
	u.acted = append(u.acted, "set detector mode")
	return control.AgentDetectors{}, nil
}
func (u *unrecorded) Record(context.Context, control.OperatorCall) error {
	return errors.New("control plane: the audit log is full")
}

func TestNothingHappensUnrecorded(t *testing.T) {
	op := &unrecorded{}
	srv := mcpserver.New(mcpserver.Options{Operator: op, Scan: func(string) (mcpserver.Verdict, error) {
		op.acted = append(op.acted, "scan")
		return mcpserver.Verdict{}, nil
	}})
	ct, st := mcp.NewInMemoryTransports()
	ctx := context.Background()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	for tool, args := range map[string]map[string]any{
		"list_agents":       {},
		"agent_timeline":    {"agent": "bot"},
		"revoke_agent":      {"agent": "bot", "reason": "x"},
		"set_detector_mode": {"agent": "bot", "detector": "credential_burst", "mode": "block", "reason": "x"},
		"scan_text":         {"text": "hello"},
	} {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
		if err != nil || !res.IsError {
			t.Errorf("%s: %+v %v: want a refusal", tool, res, err)
		}
	}
	if len(op.acted) != 0 {
		t.Errorf("acted without a record: %v", op.acted)
	}
}

func TestHandlerWantsTheToken(t *testing.T) {
	h := mcpserver.Handler(mcpserver.New(mcpserver.Options{}), "s3cret-operator-token")
	for name, auth := range map[string]string{"none": "", "wrong": "Bearer nope", "basic": "Basic czNjcmV0"} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		h.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d", name, w.Code)
		}
	}
	// No token configured lets nobody in.
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set("Authorization", "Bearer ")
	mcpserver.Handler(mcpserver.New(mcpserver.Options{}), "").ServeHTTP(w, r)
	if w.Code != http.StatusUnauthorized {
		t.Errorf("empty token: %d", w.Code)
	}
}
