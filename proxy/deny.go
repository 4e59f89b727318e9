package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// statusClientClosed is the audit status of a request whose agent went
// away first (nginx's 499).
const statusClientClosed = 499

// denial is a refusal: what the agent sees. Detail never holds a secret.
type denial struct {
	Status int
	Reason string
	Detail string
	// Credential is the credential concerned, if any, for the audit record.
	Credential string
	// claims are a refused passport's genuine claims (expired, revoked),
	// for the audit record.
	claims *passport.Claims
}

type denyBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
	Status int    `json:"status"`
}

// deny audits and counts the refusal d of the request st follows, and
// marks it refused.
func (p *Proxy) deny(ctx context.Context, st *reqState, d *denial) {
	st.denied = true
	p.metrics.Requests.WithLabelValues("denied", d.Reason).Inc()
	claims := st.claims
	if claims == nil {
		claims = d.claims
	}
	r := audit.Record{
		Action: audit.ActionRequestDenied, Host: st.host, Method: st.method, Path: st.path,
		Status: d.Status, Reason: d.Reason, Detail: d.Detail, CredentialID: d.Credential,
		DurationMS: p.now().Sub(st.start).Milliseconds(),
	}
	if claims != nil {
		r.AgentID, r.PassportJTI = claims.Subject, claims.ID
	}
	p.record(ctx, r)
	p.log.Info("request denied", zap.String("reason", d.Reason), zap.String("agent", r.AgentID),
		zap.String("host", st.host), zap.String("method", st.method), zap.String("path", st.path), zap.Int("status", d.Status))
}

// response builds the refusal as an HTTP response to req.
func (d *denial) response(req *http.Request) *http.Response {
	resp := localJSON(req, d.Status, denyBody{Error: "request refused by stack", Reason: d.Reason, Detail: d.Detail, Status: d.Status})
	resp.Header.Set(reason.Header, d.Reason)
	switch d.Status {
	case http.StatusProxyAuthRequired:
		resp.Header.Set("Proxy-Authenticate", `Basic realm="stack"`)
		// An agent without a valid passport has no business keeping the
		// connection: it retries on a new one.
		resp.Header.Set("Connection", "close")
		resp.Close = true
	case http.StatusServiceUnavailable:
		if d.Reason == reason.Overloaded {
			resp.Header.Set("Retry-After", "1")
		}
	}
	return resp
}

// localJSON is a response the sidecar gives itself: v as JSON.
func localJSON(req *http.Request, status int, v any) *http.Response {
	body, _ := json.Marshal(v)
	body = append(body, '\n')
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	return &http.Response{
		StatusCode: status, Status: strconv.Itoa(status) + " " + http.StatusText(status),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: readCloser{bytes.NewReader(body)}, ContentLength: int64(len(body)), Request: req,
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
