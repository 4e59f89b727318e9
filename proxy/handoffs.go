package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/handoff"
	"github.com/stackctl/stack/handoff/desk"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// HandoffHost is the reserved host where an agent reaches its sidecar's
// handoff desk (package handoff owns the name); requests to it never
// leave the sidecar.
const HandoffHost = handoff.SidecarHost

// HandoffPath and PassportPath are the desk's endpoints on HandoffHost.
const (
	HandoffPath  = handoff.SidecarPath
	PassportPath = handoff.SidecarPassportPath
)

// PassportView is what PassportPath answers.
type PassportView struct {
	Agent     string         `json:"agent"`
	ID        string         `json:"id"`
	Issued    time.Time      `json:"issued"`
	Expires   time.Time      `json:"expires"`
	Mode      string         `json:"mode,omitempty"`
	Scope     passport.Scope `json:"scope"`
	Delegated bool           `json:"delegated,omitempty"`
}

// Audit actions of the sidecar's handoff desk; their records hold the
// payload's hash, never the payload.
const (
	ActionHandoffSent     = "handoff_sent"
	ActionHandoffReceived = "handoff_received"
)

// maxHandoffRequest bounds a send's body: the payload with room for the
// fields around it. What seals larger than handoff.MaxSize is refused by
// Seal.
const maxHandoffRequest = handoff.MaxSize + 4<<10

// serveHandoff answers a request to HandoffHost from the desk, after the
// passport was identified and verified. The response is the sidecar's
// own; a refusal is a denial like any other.
func (r *request) serveHandoff() *denial {
	p, req, st := r.p, r.req, r.st
	ctx := req.Context()
	if p.opts.Handoffs == nil && st.path != PassportPath {
		return &denial{Status: http.StatusServiceUnavailable, Reason: reason.HandoffUnavailable,
			Detail: "handoffs go through a control plane, and this sidecar has none (stack proxy --control URL)"}
	}
	id, one := strings.CutPrefix(st.path, HandoffPath+"/")
	switch {
	case st.path == PassportPath && req.Method == http.MethodGet:
		c := st.claims
		r.local = localJSON(req, http.StatusOK, PassportView{Agent: c.Subject, ID: c.ID, Issued: c.IssuedAt.UTC(), Expires: c.Expiry.UTC(),
			Mode: string(c.Mode), Scope: c.Scope, Delegated: len(c.Delegation) > 0})
		p.record(ctx, audit.Record{Action: audit.ActionRequest, AgentID: c.Subject, PassportJTI: c.ID,
			Host: st.host, Method: st.method, Path: st.path, Status: http.StatusOK,
			Detail: "the agent read its passport's grants", DurationMS: p.now().Sub(st.start).Milliseconds()})
		return nil
	case st.path == HandoffPath && req.Method == http.MethodPost:
		return r.sendHandoff(ctx)
	case st.path == HandoffPath && req.Method == http.MethodGet:
		waiting, err := p.opts.Handoffs.Inbox(ctx, st.claims)
		if err != nil {
			return handoffDenial(err)
		}
		r.local = localJSON(req, http.StatusOK, waiting)
		p.record(ctx, audit.Record{Action: audit.ActionRequest, AgentID: st.claims.Subject, PassportJTI: st.claims.ID,
			Host: st.host, Method: st.method, Path: st.path, Status: http.StatusOK,
			Detail: fmt.Sprintf("handoff inbox: %d waiting", len(waiting)), DurationMS: p.now().Sub(st.start).Milliseconds()})
		return nil
	case one && id != "" && !strings.Contains(id, "/") && req.Method == http.MethodGet:
		return r.fetchHandoff(ctx, id)
	}
	return &denial{Status: http.StatusNotFound, Reason: reason.HandoffUnknown,
		Detail: fmt.Sprintf("no endpoint %s %s here: POST %s sends, GET %s lists, GET %s/{id} fetches, GET %s shows the passport", req.Method, st.path, HandoffPath, HandoffPath, HandoffPath, PassportPath)}
}

// sendHandoff runs the request-side detectors on what the agent sends
// (a secret in a payload is exfiltration like any other), then has the
// desk check, seal and deposit it.
func (r *request) sendHandoff(ctx context.Context) *denial {
	p, req, st := r.p, r.req, r.st
	body, err := io.ReadAll(io.LimitReader(req.Body, maxHandoffRequest+1))
	if err != nil {
		return &denial{Status: http.StatusBadRequest, Reason: reason.BadRequest, Detail: "reading the request body failed"}
	}
	if len(body) > maxHandoffRequest {
		return &denial{Status: http.StatusRequestEntityTooLarge, Reason: reason.HandoffTooLarge,
			Detail: fmt.Sprintf("a handoff request over %d bytes; a sealed handoff is at most %d", maxHandoffRequest, handoff.MaxSize)}
	}
	var out desk.Outgoing
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return &denial{Status: http.StatusBadRequest, Reason: reason.HandoffInvalid,
			Detail: "want JSON {\"to\": agent, \"schema\": name, \"payload\": {...}, \"ttl\": \"24h\"}: " + firstLine(jsonError(err))}
	}
	ev := r.detectEvent(req.Header)
	ev.Body, ev.ContentType, ev.Handoff = body[:min(len(body), p.scanWindow())], "application/json", true
	if d := p.runDetectors(ctx, ev, st.claims); d != nil {
		return d
	}
	sent, err := p.opts.Handoffs.Send(ctx, st.claims, r.passportToken(), out)
	if err != nil {
		return handoffDenial(err)
	}
	r.local = localJSON(req, http.StatusCreated, sent)
	p.record(ctx, audit.Record{Action: ActionHandoffSent, AgentID: st.claims.Subject, PassportJTI: st.claims.ID,
		Host: st.host, Method: st.method, Path: st.path, Status: http.StatusCreated, BytesIn: int64(len(body)),
		DurationMS: p.now().Sub(st.start).Milliseconds(),
		Detail:     fmt.Sprintf("handoff %s to %s, schema %s, payload sha256 %s, expires %s", sent.ID, sent.To, sent.Schema, sent.PayloadSHA256, sent.Expires.UTC().Format("2006-01-02T15:04:05Z"))})
	return nil
}

// fetchHandoff has the desk take, open and check handoff id, then runs
// the response-side detectors on its payload: a handoff is content an
// agent will read, as any upstream's answer.
func (r *request) fetchHandoff(ctx context.Context, id string) *denial {
	p, req, st := r.p, r.req, r.st
	// Once asked, the take goes through even if the agent goes away: the
	// control plane may have handed the handoff out already, and the
	// record below must say so.
	got, err := p.opts.Handoffs.Fetch(context.WithoutCancel(ctx), st.claims, id)
	if err != nil {
		return handoffDenial(err)
	}
	resp := localJSON(req, http.StatusOK, got)
	if p.opts.Grid != nil {
		ev := &detect.Event{Time: p.now(), Direction: detect.Response, Agent: st.claims.Subject, PassportJTI: st.claims.ID,
			Mode: string(st.claims.Mode), Host: st.host, Method: st.method, Path: st.path,
			ContentType: "application/json", Status: http.StatusOK, Body: got.Payload[:min(len(got.Payload), p.scanWindow())], Handoff: true}
		if d := p.runDetectors(ctx, ev, st.claims); d != nil {
			d.Detail = fmt.Sprintf("handoff %s from %s: %s", got.ID, got.From, d.Detail)
			return d
		}
	}
	r.local = resp
	p.record(ctx, audit.Record{Action: ActionHandoffReceived, AgentID: st.claims.Subject, PassportJTI: st.claims.ID,
		Host: st.host, Method: st.method, Path: st.path, Status: http.StatusOK, BytesOut: resp.ContentLength,
		DurationMS: p.now().Sub(st.start).Milliseconds(),
		Detail:     fmt.Sprintf("handoff %s from %s, schema %s, payload sha256 %s", got.ID, got.From, got.Schema, got.PayloadSHA256)})
	return nil
}

// passportToken is the passport the request runs on, which a handoff
// carries to vouch for its sender.
func (r *request) passportToken() string {
	if r.connect {
		return r.st.conn.verified.Load().Token()
	}
	return r.token
}

// handoffDenial names the refusal for the desk's error.
func handoffDenial(err error) *denial {
	status, why := http.StatusServiceUnavailable, reason.HandoffUnavailable
	switch {
	case errors.Is(err, desk.ErrNotGranted):
		status, why = http.StatusForbidden, reason.HandoffNotGranted
	case errors.Is(err, desk.ErrInvalid):
		status, why = http.StatusBadRequest, reason.HandoffInvalid
	case errors.Is(err, desk.ErrUnknownSchema), errors.Is(err, desk.ErrUnknownRecipient), errors.Is(err, desk.ErrNotFound):
		status, why = http.StatusNotFound, reason.HandoffUnknown
	case errors.Is(err, handoff.ErrTooLarge):
		status, why = http.StatusRequestEntityTooLarge, reason.HandoffTooLarge
	case errors.Is(err, handoff.ErrSchemaViolation):
		status, why = http.StatusUnprocessableEntity, reason.HandoffSchemaViolation
	case errors.Is(err, desk.ErrGone):
		status, why = http.StatusGone, reason.HandoffGone
	case errors.Is(err, handoff.ErrExpired):
		status, why = http.StatusGone, reason.HandoffExpired
	case errors.Is(err, handoff.ErrDecrypt), errors.Is(err, handoff.ErrWrongRecipient), errors.Is(err, handoff.ErrSender),
		errors.Is(err, handoff.ErrSignature), errors.Is(err, handoff.ErrMalformed), errors.Is(err, handoff.ErrSchema):
		status, why = http.StatusUnprocessableEntity, reason.HandoffRejected
	}
	return &denial{Status: status, Reason: why, Detail: firstLine(err.Error())}
}

// jsonError says what is wrong with a request body without quoting it.
func jsonError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("not JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %s: want %s", te.Field, te.Type)
	}
	return err.Error()
}
