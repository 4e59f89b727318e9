package control_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stackctl/stack/control"
)

// Calls through a front end (the MCP server) are recorded by operators
// only, with what they were, and bad ones are refused.
func TestOperatorCallRecorded(t *testing.T) {
	f := newFixture(t, nil)
	f.register("bot")
	bot := f.join("bot")
	f.must(operatorToken, http.MethodPost, control.PathOperatorCall, control.OperatorCall{Via: "mcp", Tool: "revoke_agent", Detail: `agent bot, reason "x"`}, nil)
	f.must(operatorToken, http.MethodPost, control.PathOperatorCall, control.OperatorCall{Via: "mcp", Tool: "list_agents"}, nil)
	got := f.audit.actions(control.ActionOperatorCall)
	if len(got) != 2 || got[0].Detail != `mcp revoke_agent: agent bot, reason "x"` || got[1].Detail != "mcp list_agents" {
		t.Fatalf("records %+v", got)
	}
	for name, tc := range map[string]struct {
		token string
		call  control.OperatorCall
		want  int
	}{
		"a sidecar":     {bot.Token, control.OperatorCall{Via: "mcp", Tool: "list_agents"}, http.StatusForbidden},
		"no token":      {"", control.OperatorCall{Via: "mcp", Tool: "list_agents"}, http.StatusUnauthorized},
		"no tool":       {operatorToken, control.OperatorCall{Via: "mcp"}, http.StatusBadRequest},
		"a long detail": {operatorToken, control.OperatorCall{Via: "mcp", Tool: "x", Detail: strings.Repeat("a", 2000)}, http.StatusBadRequest},
	} {
		if st, _ := f.call(tc.token, http.MethodPost, control.PathOperatorCall, tc.call, nil); st != tc.want {
			t.Errorf("%s: %d, want %d", name, st, tc.want)
		}
	}
	if n := len(f.audit.actions(control.ActionOperatorCall)); n != 2 {
		t.Errorf("%d records after refusals, want 2", n)
	}
}
