package proxy

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/inject"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// pipeline runs the request pipeline of docs/architecture.md on req, up
// to the point where it may go upstream. It returns the refusal, already
// audited and counted, or nil.
func (p *Proxy) pipeline(req *http.Request, st *reqState) *http.Response {
	r := request{p: p, req: req, st: st}
	d := r.run()
	if d == nil {
		if r.local != nil {
			st.local = true
		}
		return r.local
	}
	p.deny(req.Context(), st, d)
	return d.response(req)
}

// request is one request on its way through the pipeline: what a step
// found that a later one needs. It lasts as long as the pipeline; what
// the response needs goes into st.
type request struct {
	p   *Proxy
	req *http.Request
	st  *reqState

	// connect: the request runs on its tunnel's passport, the CONNECT's.
	connect bool
	// token and agent: the passport the request brings, and the agent id
	// it names, if any.
	token, agent string
	// scope describes the request to the passport's scope, body
	// included; decision is the scope's answer.
	scope    passport.Request
	decision passport.Decision
	// head is the start of the body, for the detectors.
	head []byte
	// sent is the request's headers as the agent sent them, before
	// injection, for the detectors (nil without detectors).
	sent http.Header
	res  *inject.Result
	// local is the sidecar's own answer, for a request to HandoffHost:
	// it goes no further.
	local *http.Response
}

// run takes the request through the steps in order; the first refusal
// ends it. Step 7, forward, is the round trip that follows, except for
// requests to HandoffHost, which the sidecar answers itself.
func (r *request) run() *denial {
	if d := r.limits(); d != nil { // 0
		return d
	}
	if d := r.identify(); d != nil { // 1
		return d
	}
	if d := r.verify(); d != nil { // 2
		return d
	}
	if r.st.host == HandoffHost { // the sidecar's own endpoint
		return r.serveHandoff()
	}
	if d := r.authorize(); d != nil { // 3
		return d
	}
	if d := r.injectCredentials(); d != nil { // 4
		return d
	}
	if d := r.detectRequest(); d != nil { // 5
		return d
	}
	if d := r.auditAccess(); d != nil { // 6
		return d
	}
	r.readyToForward()
	return nil
}

// limits: the request line and headers fit in MaxHeaderBytes, also
// inside a tunnel, which net/http's own limit does not reach.
func (r *request) limits() *denial { return r.p.checkHeaderSize(r.req) }

// identify finds the request's passport. Inside a tunnel the CONNECT's
// applies, unless the request brings its own.
func (r *request) identify() *denial {
	if r.st.conn != nil && r.req.Header.Get("Proxy-Authorization") == "" {
		r.connect = true
		return nil
	}
	var d *denial
	r.token, r.agent, d = r.p.identity(r.req.Header)
	return d
}

// verify checks the passport, again on every request inside a tunnel: a
// revocation applies to the very next request. The proxy's own headers
// go no further.
func (r *request) verify() *denial {
	if r.connect {
		claims, d := r.p.recheck(r.st.conn)
		if d != nil {
			return d
		}
		r.st.claims = claims
	} else {
		vd, d := r.p.verify(r.token, r.agent)
		if d != nil {
			return d
		}
		r.st.claims = vd.Claims()
	}
	if len(r.req.Header) > 0 {
		r.req.Header.Del("Proxy-Authorization")
		r.req.Header.Del("Proxy-Connection")
	}
	return nil
}

// authorize checks an IP-literal host against the egress guard, then the
// request, body included, against the passport's scope.
func (r *request) authorize() *denial {
	if d := r.p.checkEgressLiteral(r.st.host); d != nil {
		return d
	}
	if d := r.readBody(); d != nil {
		return d
	}
	r.decision = r.st.claims.Scope.Allows(r.scope)
	if !r.decision.Allowed {
		return r.outOfScope()
	}
	return nil
}

// readBody reads the body for parameter constraints and the detectors,
// and describes the request to the scope.
func (r *request) readBody() *denial {
	req := r.req
	body, head, d := r.p.scanBody(req)
	if d != nil {
		return d
	}
	r.head = head
	r.st.bodyRead = body != nil || req.Body == nil || req.Body == http.NoBody
	r.scope = passport.Request{
		Host: r.st.host, Method: req.Method, Path: r.st.path,
		Body: body, ContentType: req.Header.Get("Content-Type"),
	}
	if req.URL.RawQuery != "" {
		r.scope.Query = req.URL.Query()
	}
	return nil
}

// outOfScope decides a request no grant allows. The detectors see it
// first: scope drift watches for these. A passport in alert or shadow
// mode is being rolled out: what enforce would have refused is recorded,
// and the request goes on.
func (r *request) outOfScope() *denial {
	ctx, claims := r.req.Context(), r.st.claims
	ev := r.detectEvent(r.req.Header)
	ev.ScopeDenied, ev.ScopeReason = true, r.decision.Reason
	blocked := r.p.runDetectors(ctx, ev, claims)
	if !r.reportOnly() {
		if blocked != nil {
			return blocked
		}
		return &denial{Status: http.StatusForbidden, Reason: reason.ScopeDenied, Detail: r.decision.Reason}
	}
	r.p.metrics.Requests.WithLabelValues("would_deny", reason.ScopeDenied).Inc()
	r.p.record(ctx, audit.Record{
		Action: ActionWouldDeny, AgentID: claims.Subject, PassportJTI: claims.ID,
		Host: r.st.host, Method: r.st.method, Path: r.st.path, Reason: reason.ScopeDenied,
		Detail: "passport mode " + string(claims.Mode) + ": " + r.decision.Reason,
	})
	return nil
}

// reportOnly: the passport's mode (alert, shadow) asks to be told what
// enforce would refuse, not to be refused.
func (r *request) reportOnly() bool {
	return r.st.claims.Mode == passport.ModeAlert || r.st.claims.Mode == passport.ModeShadow
}

// injectCredentials renders, in memory only, each credential whose
// placeholder the request carries, where the credential is bound to this
// host and granted here. Nothing leaves before the detectors and the
// audit log have had their say.
func (r *request) injectCredentials() *denial {
	req := r.req
	r.sent = r.p.sentHeader(req)
	res, err := r.p.opts.Injector.Apply(req.Context(), req, r.st.host, r.granted)
	if err != nil {
		return r.injectDenial(err)
	}
	r.res = res
	if len(res.Injected) == 0 {
		return nil
	}
	if isWebSocketUpgrade(req.Header) {
		// Compressed frames could carry an echoed secret past the
		// scrubber: ask for none (see wsScrubber).
		req.Header.Del("Sec-WebSocket-Extensions")
	}
	if req.URL.Scheme != "https" {
		// Never send a real secret over cleartext.
		return &denial{Status: http.StatusForbidden, Reason: reason.CleartextCredential,
			Detail: "credentials are only injected into https requests", Credential: res.Injected[0].Name}
	}
	return nil
}

// granted reports whether the passport grants credential name for this
// request, and under which grant's narrowing it is minted.
func (r *request) granted(name string) (inject.Grant, bool) {
	scope := r.st.claims.Scope
	g := inject.Grant{Agent: r.st.claims.Subject}
	// The grant that allowed the request allows it with any credential
	// it names: only the credential stage differs.
	if r.decision.Allowed && slices.Contains(scope[r.decision.Grant].Credentials, name) {
		g.Narrow = scope[r.decision.Grant].Narrow
		return g, true
	}
	withCred := r.scope
	withCred.Credential = name
	if d := scope.Allows(withCred); d.Allowed {
		g.Narrow = scope[d.Grant].Narrow
		return g, true
	}
	// Report-only passports still name their credentials per host.
	if r.reportOnly() {
		if i := grantNaming(scope, r.st.host, name); i >= 0 {
			g.Narrow = scope[i].Narrow
			return g, true
		}
	}
	return g, false
}

// injectDenial is the refusal for the injector's error. A placeholder
// headed where it does not belong is an exfiltration attempt, which the
// detectors see too.
func (r *request) injectDenial(err error) *denial {
	var de *inject.DeniedError
	if !errors.As(err, &de) {
		return &denial{Status: http.StatusForbidden, Reason: reason.ScopeDenied, Detail: "credential injection failed"}
	}
	if de.Reason == reason.PlaceholderUnbound || de.Reason == reason.PlaceholderUnknown {
		ev := r.detectEvent(r.sent)
		ev.Placeholders = []string{de.Credential}
		r.p.runDetectors(r.req.Context(), ev, r.st.claims)
	}
	if de.Err != nil {
		r.p.log.Warn("credential unavailable", zap.String("credential", de.Credential), zap.Error(de.Err))
	}
	return &denial{Status: de.Status(), Reason: de.Reason, Detail: de.Detail, Credential: de.Credential}
}

// detectRequest runs the request-side detectors on what the request
// would carry; their policy may block it or revoke the passport.
func (r *request) detectRequest() *denial {
	if r.p.opts.Grid == nil {
		return nil
	}
	ev := r.detectEvent(r.sent)
	ev.Credentials = injectedList(r.res.Injected)
	ev.Placeholders = r.res.Placeholders
	return r.p.runDetectors(r.req.Context(), ev, r.st.claims)
}

// detectEvent is the event the detectors see for this request, with the
// query the scope check already parsed; header is the request's headers
// as the agent sent them.
func (r *request) detectEvent(header http.Header) *detect.Event {
	c := r.st.claims
	return &detect.Event{
		Time: r.p.now(), Direction: detect.Request, Agent: c.Subject, PassportJTI: c.ID, Mode: string(c.Mode),
		Host: r.st.host, Method: r.st.method, Path: r.st.path,
		Query: r.scope.Query, Headers: header, Body: r.head, ContentType: r.scope.ContentType,
	}
}

// auditAccess makes each credential access durable before the request
// leaves; a log that cannot record one refuses the request.
func (r *request) auditAccess() *denial {
	claims := r.st.claims
	for _, in := range r.res.Injected {
		if _, err := r.p.appendDurable(r.req.Context(), audit.Record{
			Action: audit.ActionCredentialAccess, AgentID: claims.Subject, PassportJTI: claims.ID,
			CredentialID: in.Name, CredentialFingerprint: in.Fingerprint,
			Host: r.st.host, Method: r.st.method, Path: r.st.path, Detail: accessDetail(in),
		}); err != nil {
			r.p.log.Error("audit append failed; refusing the request", zap.Error(err))
			return &denial{Status: http.StatusServiceUnavailable, Reason: reason.AuditUnavailable,
				Detail: "the audit log cannot record this credential access", Credential: in.Name}
		}
		r.p.metrics.injected(in.Name).Inc()
	}
	return nil
}

// accessDetail says, for a minted credential, when what was injected
// expires and which AWS operation a re-signed request performs.
func accessDetail(in inject.Injected) string {
	var d string
	if in.Operation != "" {
		d = "aws " + in.Operation
	}
	if !in.Expires.IsZero() {
		if d != "" {
			d += ", "
		}
		d += "minted, expires " + in.Expires.UTC().Format(time.RFC3339)
	}
	return d
}

// readyToForward keeps what the response steps need, and asks the
// upstream for a body they can decode.
func (r *request) readyToForward() {
	r.st.injected = r.res.Injected
	r.st.bytesIn = r.req.ContentLength
	askDecodable(r.req.Header)
}
