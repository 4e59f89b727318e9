package control

import (
	"context"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/stackctl/stack/audit"
)

// PathOperatorCall records a call an operator made through a front end
// other than this API (the MCP server), before the front end acts on it.
const PathOperatorCall = "/v1/audit/operator-call"

// ActionOperatorCall is the audit action of such a record.
const ActionOperatorCall = "operator_call"

// maxOperatorCallField bounds each field of an OperatorCall.
const maxOperatorCallField = 1024

// OperatorCall is one call through a front end: which (Via), what it was
// asked (Tool, and Detail: its arguments as the front end summarizes
// them, never a secret).
type OperatorCall struct {
	Via    string `json:"via"`
	Tool   string `json:"tool"`
	Detail string `json:"detail,omitempty"`
}

// operatorCall appends the record; a log that cannot take it refuses the
// call (503), so that the front end does not act unrecorded.
func (s *Server) operatorCall(r *http.Request) (any, error) {
	var c OperatorCall
	if err := decode(r, &c); err != nil {
		return nil, err
	}
	if err := s.RecordOperatorCall(r.Context(), c); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// RecordOperatorCall appends an operator_call record for a call made
// through a front end (MCP, the console) before the front end acts on
// it. An error means the call is not recorded, and must not be made.
func (s *Server) RecordOperatorCall(ctx context.Context, c OperatorCall) error {
	for name, v := range map[string]string{"via": c.Via, "tool": c.Tool, "detail": c.Detail} {
		if len(v) > maxOperatorCallField || !utf8.ValidString(v) {
			return badRequest(fmt.Sprintf("%s: at most %d bytes of UTF-8", name, maxOperatorCallField))
		}
	}
	if c.Via == "" || c.Tool == "" {
		return badRequest("via and tool are required")
	}
	if s.opts.Audit == nil {
		return nil
	}
	detail := c.Via + " " + c.Tool
	if c.Detail != "" {
		detail += ": " + c.Detail
	}
	if _, err := s.opts.Audit.Append(ctx, audit.Record{Action: ActionOperatorCall, Detail: detail}); err != nil {
		return fail(http.StatusServiceUnavailable, ReasonUnavailable, "the control plane's audit log cannot record the call: "+err.Error())
	}
	return nil
}
