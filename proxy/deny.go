package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/stackctl/stack/passport"
)

// Reasons a request is refused, sent in X-Stack-Reason and the JSON body.
// Reasons from the passport and inject packages pass through unchanged.
const (
	ReasonPassportMissing    = "passport_missing"
	ReasonPassportInvalid    = "passport_invalid"
	ReasonScopeDenied        = "scope_denied"
	ReasonEgressDenied       = "egress_denied"
	ReasonUpstreamTLS        = "upstream_tls"
	ReasonUpstreamError      = "upstream_unreachable"
	ReasonCleartext          = "cleartext_credential"
	ReasonBodyTooLarge       = "body_too_large"
	ReasonNotAProxyRequest   = "not_a_proxy_request"
	ReasonAuditUnavailable   = "audit_unavailable"
	ReasonCredentialNotBound = "placeholder_unbound"
	ReasonHeaderTooLarge     = "header_too_large"
	// ReasonUpgradeRefused: a protocol upgrade on which a credential was
	// injected, whose traffic the proxy cannot scrub of it (anything but
	// a WebSocket without extensions).
	ReasonUpgradeRefused = "upgrade_refused"
	// ReasonUpstreamTimeout: the upstream did not answer in time
	// (proxy.upstream_response_timeout for its response headers).
	ReasonUpstreamTimeout = "upstream_timeout"
	// ReasonOverloaded: the sidecar sheds load (proxy.max_connections,
	// proxy.max_requests); the agent may retry after Retry-After.
	ReasonOverloaded = "overloaded"
	// ReasonControlUnreachable: a sidecar joined to a control plane has
	// had no contact with it for longer than control.max_staleness.
	ReasonControlUnreachable = "control_unreachable"
	// ReasonClientClosed is recorded, never sent: the agent went away
	// before its answer came.
	ReasonClientClosed = "client_closed"
	// ReasonResponseEncoding: the upstream answered in a content coding
	// the sidecar cannot decode, on a response it must scrub or scan.
	ReasonResponseEncoding = "response_encoding_unsupported"
)

// statusClientClosed is the audit status of a request whose agent went
// away first (nginx's 499).
const statusClientClosed = 499

// HeaderReason carries the machine-readable reason of every refusal.
const HeaderReason = "X-Stack-Reason"

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

// response builds the refusal as an HTTP response to req.
func (d *denial) response(req *http.Request) *http.Response {
	body, _ := json.Marshal(denyBody{Error: "request refused by stack", Reason: d.Reason, Detail: d.Detail, Status: d.Status})
	body = append(body, '\n')
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(HeaderReason, d.Reason)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	closeConn := false
	switch d.Status {
	case http.StatusProxyAuthRequired:
		h.Set("Proxy-Authenticate", `Basic realm="stack"`)
		// An agent without a valid passport has no business keeping the
		// connection: it retries on a new one.
		closeConn = true
	case http.StatusServiceUnavailable:
		if d.Reason == ReasonOverloaded {
			h.Set("Retry-After", "1")
		}
	}
	if closeConn {
		h.Set("Connection", "close")
	}
	return &http.Response{
		Close:         closeConn,
		StatusCode:    d.Status,
		Status:        strconv.Itoa(d.Status) + " " + http.StatusText(d.Status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          readCloser{bytes.NewReader(body)},
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
