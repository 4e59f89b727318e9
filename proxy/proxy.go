package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/handoff/desk"
	"github.com/stackctl/stack/hostmatch"
	"github.com/stackctl/stack/inject"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/proxy/ca"
	"github.com/stackctl/stack/proxy/coding"
	"github.com/stackctl/stack/proxy/egress"
	"github.com/stackctl/stack/reason"
)

// Verifier checks passports; *passport.Verifier is one. Check verifies a
// CONNECT's passport once; Recheck repeats, for each request inside the
// tunnel, the checks whose answer can change (dates, revocation, keys).
type Verifier interface {
	Check(token string) (*passport.Verified, error)
	Recheck(vd *passport.Verified) (*passport.Claims, error)
}

// Auditor records what the proxy does; *audit.Log is one. Append returns
// only once the record is durable.
type Auditor interface {
	Append(ctx context.Context, r audit.Record) (uint64, error)
}

// PassportSource supplies the passport of the single agent a sidecar
// serves when requests carry none (single-agent sidecar mode).
type PassportSource interface {
	Passport() (token string, err error)
}

// Defaults of Options.
const (
	DefaultMaxBodyScan           = 1 << 20
	DefaultMaxHeaderBytes        = 64 << 10
	DefaultDialTimeout           = 10 * time.Second
	DefaultTLSHandshakeTimeout   = 10 * time.Second
	DefaultResponseHeaderTimeout = 10 * time.Minute
	DefaultIdleConnTimeout       = 90 * time.Second
	DefaultHandshakeTimeout      = 10 * time.Second
	DefaultIdleTimeout           = 2 * time.Minute
	DefaultMaxConnections        = 4096
	DefaultMaxRequests           = 1024
	DefaultMaxConnsPerHost       = 256
)

// Options configure a Proxy. Verifier, Injector, Audit, CA and Guard are
// required.
type Options struct {
	Verifier Verifier
	Injector *inject.Injector
	Audit    Auditor
	CA       *ca.CA
	// Leaves caches minted leaf certificates; nil makes a default cache.
	Leaves *ca.LeafCache
	Guard  *egress.Guard
	// RootCAs are the roots trusted for upstream TLS; nil means the system
	// roots.
	RootCAs *x509.CertPool
	// Passports, when set, supplies the passport for requests without a
	// Proxy-Authorization header.
	Passports PassportSource
	// Gate, when set, is asked before each request's passport is checked;
	// an error refuses the request 503 control_unreachable (a sidecar cut
	// off from its control plane for longer than control.max_staleness).
	Gate func() error
	// TunnelHosts are hosts (exact or *.example.com) whose CONNECT tunnels
	// pass without interception: no injection and no inner inspection, for
	// hosts in scope that need neither.
	TunnelHosts []string
	// MaxBodyScan is how much of a request body is read to check parameter
	// constraints; larger bodies are streamed unread and fail body
	// constraints.
	MaxBodyScan int64
	// MaxHeaderBytes bounds a request's header block, including requests
	// inside intercepted tunnels, which net/http's own limit does not
	// reach (DefaultMaxHeaderBytes). Serve the proxy with a larger
	// http.Server.MaxHeaderBytes so this check answers with a reason.
	MaxHeaderBytes int
	// Handoffs is the agent's handoff desk, served at HandoffHost; nil
	// refuses handoffs 503 handoff_unavailable (no control plane).
	Handoffs *desk.Desk
	// Grid runs the detectors on every request and response; nil runs none.
	Grid *detect.Grid
	// Revoker carries out revoke decisions (the revocation store).
	Revoker Revoker
	// Alerts receives the alerts the detectors' decisions ask for.
	Alerts AlertFunc
	// Summaries folds repeated detector signals: the first of a storm
	// (per detector, rule, agent and credential) is audited, logged and alerted
	// at once, the ones that follow once per window in a summary, which
	// the proxy emits from a goroutine of its own; Close emits what is
	// still folded. Every signal is still counted, and every decision
	// still blocks or revokes. Nil reports every signal on its own.
	Summaries *detect.Summarizer
	// ScanWindow bounds the body bytes detectors see (DefaultScanWindow).
	ScanWindow int
	Metrics    *Metrics
	Log        *zap.Logger
	Now        func() time.Time

	// DialTimeout, TLSHandshakeTimeout and IdleConnTimeout bound the
	// upstream side: connecting, its TLS handshake, and how long an idle
	// upstream connection is kept for reuse.
	DialTimeout         time.Duration
	TLSHandshakeTimeout time.Duration
	IdleConnTimeout     time.Duration
	// ResponseHeaderTimeout bounds the wait for an upstream's response
	// headers (DefaultResponseHeaderTimeout): a non-streaming LLM call can
	// take minutes. It also closes a tunnel without interception that
	// carries no byte either way for that long.
	ResponseHeaderTimeout time.Duration
	// MaxConnsPerHost bounds the upstream connections to one host; more
	// requests wait for one to be free (DefaultMaxConnsPerHost).
	MaxConnsPerHost int

	// HandshakeTimeout bounds an agent's TLS handshake inside an
	// intercepted tunnel, and the head of the first request on a new
	// connection (DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// IdleTimeout closes an agent connection with no request in flight
	// for this long, and one whose request body or response stalls for
	// this long (DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MaxConnections caps agent connections on the Listener; more are
	// answered 503 overloaded (DefaultMaxConnections).
	MaxConnections int
	// MaxRequests caps requests in flight; more are answered 503
	// overloaded (DefaultMaxRequests).
	MaxRequests int
	// DisableHTTP2 offers agents only HTTP/1.1 inside intercepted
	// tunnels. By default HTTP/2 is offered too, and chosen by agents
	// that speak only it (gRPC).
	DisableHTTP2 bool
}

// Proxy is the data plane: an http.Handler that serves proxy requests
// (absolute-form HTTP and CONNECT) and runs the request pipeline on each.
type Proxy struct {
	opts      Options
	gp        *goproxy.ProxyHttpServer
	transport *http.Transport
	log       *zap.Logger
	metrics   *Metrics
	now       func() time.Time
	leaves    *ca.LeafCache
	closeOnce sync.Once
	// agentProtos are the ALPN protocols offered inside intercepted
	// tunnels, in order of preference.
	agentProtos []string
	// inflight counts requests between the pipeline and the end of their
	// response, including those inside hijacked tunnels, which
	// http.Server.Shutdown does not see.
	inflight atomic.Int64

	// The goroutine that emits due summaries, with Options.Summaries:
	// sumStop stops it, sumDone is closed when it has returned, and
	// sumMu makes sweeps take turns.
	sumStop chan struct{}
	sumDone chan struct{}
	sumMu   sync.Mutex
}

// New builds a Proxy.
func New(opts Options) (*Proxy, error) {
	switch {
	case opts.Verifier == nil:
		return nil, errors.New("proxy: a passport verifier is required")
	case opts.Injector == nil:
		return nil, errors.New("proxy: an injector is required")
	case opts.Audit == nil:
		return nil, errors.New("proxy: an audit log is required")
	case opts.CA == nil:
		return nil, errors.New("proxy: a MITM CA is required")
	case opts.Guard == nil:
		return nil, errors.New("proxy: an egress guard is required")
	}
	orDefault(&opts.MaxBodyScan, DefaultMaxBodyScan)
	orDefault(&opts.MaxHeaderBytes, DefaultMaxHeaderBytes)
	orDefault(&opts.DialTimeout, DefaultDialTimeout)
	orDefault(&opts.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout)
	orDefault(&opts.ResponseHeaderTimeout, DefaultResponseHeaderTimeout)
	orDefault(&opts.IdleConnTimeout, DefaultIdleConnTimeout)
	orDefault(&opts.MaxConnsPerHost, DefaultMaxConnsPerHost)
	orDefault(&opts.HandshakeTimeout, DefaultHandshakeTimeout)
	orDefault(&opts.IdleTimeout, DefaultIdleTimeout)
	orDefault(&opts.MaxConnections, DefaultMaxConnections)
	orDefault(&opts.MaxRequests, DefaultMaxRequests)
	p := &Proxy{opts: opts, log: opts.Log, metrics: opts.Metrics, now: opts.Now, leaves: opts.Leaves}
	// The server's order decides: an agent that offers both keeps
	// HTTP/1.1, the path docs/performance.md measures; one that speaks
	// only HTTP/2 (gRPC) gets it.
	p.agentProtos = []string{"http/1.1"}
	if !opts.DisableHTTP2 {
		p.agentProtos = append(p.agentProtos, "h2")
	}
	if p.log == nil {
		p.log = zap.NewNop()
	}
	if p.metrics == nil {
		p.metrics = NewMetrics()
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.leaves == nil {
		p.leaves = ca.NewLeafCache(ca.CacheOptions{})
	}

	// Our own transport: verified TLS against our roots, our dialer with the
	// egress guard, and never the environment's proxy settings.
	p.transport = &http.Transport{
		Proxy:       nil,
		DialContext: opts.Guard.DialContext,
		TLSClientConfig: &tls.Config{
			RootCAs:    opts.RootCAs,
			MinVersion: tls.VersionTLS12,
		},
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   opts.TLSHandshakeTimeout,
		ResponseHeaderTimeout: opts.ResponseHeaderTimeout,
		IdleConnTimeout:       opts.IdleConnTimeout,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		MaxConnsPerHost:       opts.MaxConnsPerHost,
		ExpectContinueTimeout: time.Second,
	}

	gp := goproxy.NewProxyHttpServer()
	gp.Tr = p.transport
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = func(req *http.Request, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(req.Context(), opts.DialTimeout)
		defer cancel()
		return opts.Guard.DialContext(ctx, network, addr)
	}
	gp.CertStore = p.leaves
	gp.Verbose = false
	gp.Logger = zapPrintf{p.log}
	gp.KeepHeader = false
	gp.KeepAcceptEncoding = true
	gp.AllowHTTP2 = !opts.DisableHTTP2
	gp.NonproxyHandler = http.HandlerFunc(p.serveNonProxy)
	gp.OnRequest().HandleConnectFunc(p.handleConnect)
	gp.OnRequest().DoFunc(p.handleRequest)
	gp.OnResponse().DoFunc(p.handleResponse)
	p.gp = gp
	if opts.Summaries != nil {
		p.sumStop, p.sumDone = make(chan struct{}), make(chan struct{})
		go p.summarize()
	}
	return p, nil
}

// orDefault sets *v to d when it is zero or less: Options' zero value
// means the default.
func orDefault[T int | int64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// NewServer returns the http.Server that serves p on a listener from
// p.Listener: it finds each request's agent connection, closes idle ones
// after IdleTimeout, and leaves header size to the proxy's own check,
// which answers with a reason (net/http's larger limit is only the
// backstop).
func (p *Proxy) NewServer(errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           p,
		ReadHeaderTimeout: p.opts.HandshakeTimeout,
		IdleTimeout:       p.opts.IdleTimeout,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          errorLog,
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateHijacked {
				if ac := agentConnOf(c); ac != nil {
					ac.hijacked()
				}
			}
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ac := agentConnOf(c); ac != nil {
				return context.WithValue(ctx, agentConnKey{}, ac)
			}
			return ctx
		},
	}
}

// ServeHTTP serves one proxy request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.gp.ServeHTTP(w, r) }

// Close drops idle upstream connections and, with Options.Summaries,
// stops summarizing and emits a summary of every signal still folded
// (call it before closing the audit log). It is idempotent.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.transport.CloseIdleConnections()
		if p.sumStop != nil {
			close(p.sumStop)
			<-p.sumDone
			p.sumMu.Lock()
			defer p.sumMu.Unlock()
			p.emitSummaries(p.opts.Summaries.Close())
		}
	})
	return nil
}

// Drain waits until every request in flight, including those inside
// intercepted tunnels, has finished its response, or ctx ends.
func (p *Proxy) Drain(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for p.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("proxy: %d requests still in flight: %w", p.inflight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// InFlight reports how many requests are between pipeline and response end.
func (p *Proxy) InFlight() int64 { return p.inflight.Load() }

// Metrics returns the proxy's metrics.
func (p *Proxy) Metrics() *Metrics { return p.metrics }

// connState is what a CONNECT established for the requests inside its
// tunnel.
type connState struct {
	// verified is the CONNECT's passport (its agent id already matched),
	// checked again on each request; when own, replaced by the sidecar's
	// refreshed passport once it stops verifying (HTTP/2 streams of one
	// connection race on it).
	verified atomic.Pointer[passport.Verified]
	// own: the tunnel runs on the sidecar's own passport (no
	// Proxy-Authorization on the CONNECT), which is refreshed while the
	// tunnel stays open.
	own bool
	// ac is the agent's connection, nil when not served through Listener.
	ac *agentConn
}

// reqState follows one request from the pipeline to its response.
type reqState struct {
	conn     *connState
	claims   *passport.Claims
	start    time.Time
	host     string
	method   string
	path     string
	injected []inject.Injected
	bytesIn  int64
	// bodyRead: the request has no body, or the pipeline read all of it.
	bodyRead bool
	denied   bool
	// local: the sidecar answered the request itself (HandoffHost).
	local    bool
	doneOnce sync.Once
	p        *Proxy
}

// done marks the request finished for Drain and its connection.
func (st *reqState) done() {
	st.doneOnce.Do(func() {
		st.p.inflight.Add(-1)
		if st.conn != nil && st.conn.ac != nil {
			st.conn.ac.end()
		}
	})
}

// identity finds the passport for a request: Proxy-Authorization (Basic
// with user = agent id and password = passport, or Bearer), else the
// sidecar's own passport source.
func (p *Proxy) identity(h http.Header) (token, agent string, d *denial) {
	if v := h.Get("Proxy-Authorization"); v != "" {
		scheme, cred, _ := strings.Cut(strings.TrimSpace(v), " ")
		cred = strings.TrimSpace(cred)
		switch strings.ToLower(scheme) {
		case "bearer":
			if cred == "" {
				return "", "", &denial{Status: http.StatusProxyAuthRequired, Reason: reason.PassportInvalid, Detail: "empty Bearer passport"}
			}
			return cred, "", nil
		case "basic":
			raw, err := base64.StdEncoding.DecodeString(cred)
			if err != nil {
				return "", "", &denial{Status: http.StatusProxyAuthRequired, Reason: reason.PassportInvalid, Detail: "Proxy-Authorization Basic is not valid base64"}
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok || pass == "" {
				return "", "", &denial{Status: http.StatusProxyAuthRequired, Reason: reason.PassportInvalid, Detail: "Proxy-Authorization Basic needs agent-id:passport"}
			}
			return pass, user, nil
		default:
			return "", "", &denial{Status: http.StatusProxyAuthRequired, Reason: reason.PassportInvalid, Detail: "Proxy-Authorization must be Basic (agent-id:passport) or Bearer"}
		}
	}
	if p.opts.Passports != nil {
		tok, err := p.opts.Passports.Passport()
		if err != nil {
			return "", "", &denial{Status: http.StatusProxyAuthRequired, Reason: reason.PassportMissing, Detail: "the sidecar has no passport of its own: " + err.Error()}
		}
		if tok != "" {
			return tok, "", nil
		}
	}
	return "", "", &denial{Status: http.StatusProxyAuthRequired, Reason: reason.PassportMissing, Detail: "send a passport in Proxy-Authorization (Basic agent-id:passport, or Bearer)"}
}

// verify checks a passport and, when the agent named itself, that the
// passport is its own.
func (p *Proxy) verify(token, agent string) (*passport.Verified, *denial) {
	if d := p.gate(); d != nil {
		return nil, d
	}
	vd, err := p.opts.Verifier.Check(token)
	if err != nil {
		return nil, verifyDenial(err)
	}
	if agent != "" && agent != vd.Claims().Subject {
		return nil, &denial{Status: http.StatusProxyAuthRequired, Reason: reason.PassportInvalid,
			Detail: fmt.Sprintf("agent id %q does not match the passport's subject", agent)}
	}
	return vd, nil
}

// recheck checks again the passport a request inside a tunnel runs on:
// the CONNECT's. When that was the sidecar's own and no longer verifies
// (expired, revoked), the passport the sidecar holds now takes its place:
// the sidecar refreshes it while long-lived connections stay open. The
// source is read only then, so the common case costs nothing more.
func (p *Proxy) recheck(cs *connState) (*passport.Claims, *denial) {
	vd := cs.verified.Load()
	claims, d := p.reverify(vd)
	if d == nil || !cs.own {
		return claims, d
	}
	tok, err := p.opts.Passports.Passport()
	if err != nil || tok == "" || tok == vd.Token() {
		return nil, d
	}
	nvd, nd := p.verify(tok, "")
	if nd != nil {
		return nil, nd
	}
	cs.verified.Store(nvd)
	return nvd.Claims(), nil
}

// gate asks Options.Gate whether the sidecar may serve at all.
func (p *Proxy) gate() *denial {
	if p.opts.Gate == nil {
		return nil
	}
	if err := p.opts.Gate(); err != nil {
		return &denial{Status: http.StatusServiceUnavailable, Reason: reason.ControlUnreachable, Detail: err.Error()}
	}
	return nil
}

// reverify checks a passport verify accepted again: a revocation applies
// to the very next request, even inside an open tunnel.
func (p *Proxy) reverify(vd *passport.Verified) (*passport.Claims, *denial) {
	if d := p.gate(); d != nil {
		return nil, d
	}
	claims, err := p.opts.Verifier.Recheck(vd)
	if err != nil {
		return nil, verifyDenial(err)
	}
	return claims, nil
}

func verifyDenial(err error) *denial {
	why := passport.Reason(err)
	status := http.StatusProxyAuthRequired
	if why == reason.PassportRevoked {
		status = http.StatusForbidden
	}
	// Expired and revoked passports are genuine: the record names them.
	// The error's first line names the problem without echoing the token.
	return &denial{Status: status, Reason: why, Detail: firstLine(err.Error()), claims: passport.ClaimsOf(err)}
}

// handleConnect runs identify and verify on the CONNECT, refuses hosts no
// grant names, and chooses interception or a plain tunnel.
func (p *Proxy) handleConnect(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	req := ctx.Req
	hostname := hostOnly(host)
	st := &reqState{start: p.now(), host: hostname, method: http.MethodConnect}
	reject := func(d *denial) (*goproxy.ConnectAction, string) {
		p.deny(req.Context(), st, d)
		resp := d.response(req)
		// goproxy closes the connection after a refused CONNECT: say so,
		// or a client retrying with credentials after a 407 (libcurl:
		// git, curl --proxy-anyauth) sends its retry into a dead socket.
		resp.Close = true
		resp.Header.Set("Connection", "close")
		ctx.Resp = resp
		return goproxy.RejectConnect, host
	}
	if d := p.checkHeaderSize(req); d != nil {
		return reject(d)
	}
	token, agent, d := p.identity(req.Header)
	if d != nil {
		return reject(d)
	}
	vd, d := p.verify(token, agent)
	if d != nil {
		return reject(d)
	}
	claims := vd.Claims()
	st.claims = claims
	if d := p.checkEgressLiteral(hostname); d != nil {
		return reject(d)
	}
	handoffs := hostname == HandoffHost
	if !handoffs && !scopeNamesHost(claims.Scope, hostname) {
		ev := &detect.Event{Time: p.now(), Direction: detect.Request, Agent: claims.Subject, PassportJTI: claims.ID,
			Mode: string(claims.Mode), Host: hostname, Method: http.MethodConnect,
			ScopeDenied: true, ScopeReason: "host not granted: " + hostname}
		p.runDetectors(req.Context(), ev, claims)
		return reject(&denial{Status: http.StatusForbidden, Reason: reason.ScopeDenied,
			Detail: "host not granted: " + hostname})
	}
	ac := agentConnFrom(req.Context())
	cs := &connState{ac: ac, own: req.Header.Get("Proxy-Authorization") == "" && p.opts.Passports != nil}
	cs.verified.Store(vd)
	ctx.UserData = cs
	if !handoffs && hostmatch.MatchAny(p.opts.TunnelHosts, hostname) {
		if ac != nil {
			ac.willHijack(modeTunnel)
		}
		p.metrics.Tunnels.WithLabelValues("tunnel").Inc()
		p.record(req.Context(), audit.Record{
			Action: audit.ActionRequest, AgentID: claims.Subject, PassportJTI: claims.ID,
			Host: hostname, Method: http.MethodConnect, Status: http.StatusOK,
			Detail: "tunnel without interception", DurationMS: p.now().Sub(st.start).Milliseconds(),
		})
		return goproxy.OkConnect, host
	}
	p.metrics.Tunnels.WithLabelValues("mitm").Inc()
	if ac != nil {
		ac.willHijack(modeHandshake)
	}
	return &goproxy.ConnectAction{
		Action: goproxy.ConnectMitm,
		TLSConfig: func(h string, _ *goproxy.ProxyCtx) (*tls.Config, error) {
			cfg := p.opts.CA.ServerConfig(p.leaves, h)
			cfg.NextProtos = p.agentProtos
			if ac != nil {
				cfg.VerifyConnection = func(tcs tls.ConnectionState) error {
					ac.handshakeDone(tcs.NegotiatedProtocol)
					return nil
				}
			}
			return cfg, nil
		},
	}, host
}

// handleRequest runs the pipeline on a plain proxy request or a request
// inside an intercepted tunnel.
func (p *Proxy) handleRequest(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	st := &reqState{start: p.now(), method: req.Method, path: req.URL.EscapedPath(), p: p}
	inflight := p.inflight.Add(1)
	st.host = hostOnly(req.URL.Host)
	if st.host == "" {
		st.host = hostOnly(req.Host)
	}
	if cs, ok := ctx.UserData.(*connState); ok {
		st.conn = cs
		if cs.ac != nil {
			cs.ac.begin(req.ProtoMajor == 2)
		}
	}
	ctx.UserData = st
	ctx.RoundTripper = goproxy.RoundTripperFunc(p.roundTrip)

	if inflight > int64(p.opts.MaxRequests) {
		// Shed load before doing any work for it: a refusal now beats
		// every agent waiting on a sidecar that has fallen over.
		d := &denial{Status: http.StatusServiceUnavailable, Reason: reason.Overloaded,
			Detail: fmt.Sprintf("%d requests in flight (proxy.max_requests); retry shortly", inflight-1)}
		p.deny(req.Context(), st, d)
		return req, d.response(req)
	}
	return req, p.pipeline(req, st)
}

// askDecodable narrows the agent's Accept-Encoding to the codings the
// response steps can decode, so that a compressed answer can still be
// scrubbed and scanned; a range of a compressed representation could not
// be decoded at all, so a range request asks for identity.
func askDecodable(h http.Header) {
	ae := h.Get("Accept-Encoding")
	if ae == "" {
		return
	}
	if h.Get("Range") != "" {
		h.Set("Accept-Encoding", "identity")
		return
	}
	if narrowed := coding.Accept(ae); narrowed != ae {
		if narrowed == "" {
			narrowed = "identity"
		}
		h.Set("Accept-Encoding", narrowed)
	}
}

// scanBody reads a request body for parameter constraints and detectors
// and puts it back: the whole body when it is at most MaxBodyScan bytes,
// else only its head (the detectors' window) with the rest streaming on
// unread. head is at most the scan window.
func (p *Proxy) scanBody(req *http.Request) (body, head []byte, d *denial) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil, nil
	}
	limit := p.opts.MaxBodyScan
	read := limit + 1
	if req.ContentLength > limit {
		read = int64(p.scanWindow())
	}
	buf, err := io.ReadAll(io.LimitReader(req.Body, read))
	if err != nil {
		return nil, nil, &denial{Status: http.StatusBadRequest, Reason: reason.BadRequest, Detail: "reading the request body failed"}
	}
	head = buf[:min(len(buf), p.scanWindow())]
	if int64(len(buf)) == read && (req.ContentLength > limit || int64(len(buf)) > limit) {
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
		return nil, head, nil
	}
	req.Body.Close()
	// The whole body is in hand: it goes upstream with its length, not
	// chunked, so that a Content-Length an AWS signature covers is sent.
	req.Body = io.NopCloser(bytes.NewReader(buf))
	if len(buf) == 0 {
		req.Body = http.NoBody
	}
	req.ContentLength = int64(len(buf))
	req.TransferEncoding = nil
	return buf, head, nil
}

// checkHeaderSize refuses a request whose request line and headers exceed
// MaxHeaderBytes.
func (p *Proxy) checkHeaderSize(req *http.Request) *denial {
	n := len(req.Method) + urlSize(req.URL) + len(req.Host) + 16
	for k, vs := range req.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
		if n > p.opts.MaxHeaderBytes {
			break
		}
	}
	if n > p.opts.MaxHeaderBytes {
		return &denial{Status: http.StatusRequestHeaderFieldsTooLarge, Reason: reason.HeaderTooLarge,
			Detail: fmt.Sprintf("request headers exceed %d bytes", p.opts.MaxHeaderBytes)}
	}
	return nil
}

// urlSize is about len(u.String()), counted without building it: the
// header size check runs on every request.
func urlSize(u *url.URL) int {
	n := len(u.Scheme) + len(u.Opaque) + len(u.Host) + len(u.EscapedPath()) + len(u.RawQuery) + len(u.EscapedFragment()) + 8
	if u.User != nil {
		n += len(u.User.Username()) + 1
		if pw, ok := u.User.Password(); ok {
			n += len(pw) + 1
		}
	}
	return n
}

// checkEgressLiteral refuses IP-literal hosts the egress guard refuses,
// before anything else happens; names are checked when dialled.
func (p *Proxy) checkEgressLiteral(host string) *denial {
	addr, ok := egress.ParseHost(host)
	if !ok {
		return nil
	}
	if err := p.opts.Guard.Check(addr); err != nil {
		return &denial{Status: http.StatusForbidden, Reason: reason.EgressDenied, Detail: egressDetail(err)}
	}
	return nil
}

func egressDetail(err error) string {
	var de *egress.DeniedError
	if errors.As(err, &de) {
		return fmt.Sprintf("destination %s is %s", de.Addr, de.Reason)
	}
	return "destination refused by the egress policy"
}

// roundTrip sends a request upstream and turns failures into answers the
// agent can act on, instead of a closed connection.
func (p *Proxy) roundTrip(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Response, error) {
	st, _ := ctx.UserData.(*reqState)
	start := p.now()
	if st != nil && st.conn != nil && st.conn.ac != nil && req.ProtoMajor < 2 && st.bodyRead {
		// Inside an HTTP/1.1 tunnel nothing reads the agent's connection
		// while the request waits: watch it, so that an agent that goes
		// away does not leave its request waiting upstream. (net/http
		// and the HTTP/2 server do this for their own requests; a body
		// still streaming is read by the upstream request itself.)
		// The response body streams on after this returns, so the
		// context ends with goproxy's own for the request, not here.
		rctx, cancel := context.WithCancel(req.Context())
		stop := st.conn.ac.watch(cancel)
		defer stop()
		req = req.WithContext(rctx)
	}
	resp, err := p.transport.RoundTrip(req)
	if err == nil {
		p.metrics.upstreamOK.Observe(p.now().Sub(start).Seconds())
		wrapUpstreamBody(resp)
		return resp, nil
	}
	p.metrics.UpstreamDuration.WithLabelValues("error").Observe(p.now().Sub(start).Seconds())
	d := upstreamDenial(err)
	if req.Context().Err() != nil {
		d = &denial{Status: statusClientClosed, Reason: reason.ClientClosed, Detail: "the agent went away before the upstream answered"}
	}
	if st != nil {
		p.deny(context.WithoutCancel(req.Context()), st, d)
	}
	p.log.Info("upstream failed", zap.String("host", req.URL.Host), zap.String("reason", d.Reason), zap.Error(err))
	return d.response(req), nil
}

func upstreamDenial(err error) *denial {
	var de *egress.DeniedError
	if errors.As(err, &de) {
		return &denial{Status: http.StatusForbidden, Reason: reason.EgressDenied, Detail: egressDetail(err)}
	}
	var (
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalid     x509.CertificateInvalidError
		verifyErr   *tls.CertificateVerificationError
		recErr      tls.RecordHeaderError
		alert       tls.AlertError
	)
	switch {
	case errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &invalid),
		errors.As(err, &verifyErr), errors.As(err, &recErr), errors.As(err, &alert):
		return &denial{Status: http.StatusBadGateway, Reason: reason.UpstreamTLS, Detail: "upstream TLS failed: " + tlsDetail(err)}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &denial{Status: http.StatusGatewayTimeout, Reason: reason.UpstreamTimeout, Detail: "upstream timed out: " + firstLine(err.Error())}
	}
	return &denial{Status: http.StatusBadGateway, Reason: reason.UpstreamUnreachable, Detail: "upstream unreachable: " + firstLine(err.Error())}
}

func tlsDetail(err error) string {
	var hostErr x509.HostnameError
	var unknownAuth x509.UnknownAuthorityError
	switch {
	case errors.As(err, &unknownAuth):
		return "certificate signed by an unknown authority"
	case errors.As(err, &hostErr):
		return "certificate is not valid for " + hostErr.Host
	}
	return firstLine(err.Error())
}

// firstLine keeps an error's first line, at most 200 bytes of it, for a
// refusal's detail.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// handleResponse scrubs injected secrets from the response and records
// the request when the body is done.
func (p *Proxy) handleResponse(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	st, ok := ctx.UserData.(*reqState)
	if !ok || resp == nil {
		return resp
	}
	if st.denied || st.local {
		st.done()
		return resp
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// A WebSocket (or other) upgrade: goproxy needs the raw
		// read-writer body to splice the two connections, so record the
		// upgrade now. With a credential injected, the upstream's frames
		// are scrubbed of it (see wsScrubber); an upgrade they cannot be
		// scrubbed on is refused.
		if len(st.injected) > 0 {
			rwc, ok := resp.Body.(io.ReadWriteCloser)
			if !ok || !isWebSocketUpgrade(resp.Header) || resp.Header.Get("Sec-WebSocket-Extensions") != "" {
				if resp.Body != nil {
					resp.Body.Close()
				}
				d := &denial{Status: http.StatusBadGateway, Reason: reason.UpgradeRefused, Credential: st.injected[0].Name,
					Detail: fmt.Sprintf("the upstream switched to %q with extensions %q on a request a credential was injected into; only a WebSocket without extensions can be scrubbed of it",
						resp.Header.Get("Upgrade"), resp.Header.Get("Sec-WebSocket-Extensions"))}
				p.deny(context.WithoutCancel(ctx.Req.Context()), st, d)
				st.done()
				return d.response(resp.Request)
			}
			resp.Body = newWSScrubber(rwc, st.injected)
		}
		st.done()
		p.metrics.allowed.Inc()
		p.record(ctx.Req.Context(), audit.Record{
			Action: audit.ActionRequest, AgentID: st.claims.Subject, PassportJTI: st.claims.ID,
			Host: st.host, Method: st.method, Path: st.path, Status: resp.StatusCode,
			DurationMS: p.now().Sub(st.start).Milliseconds(), CredentialID: injectedNames(st.injected),
			Detail: "protocol upgrade: " + resp.Header.Get("Upgrade"),
		})
		return resp
	}
	// Build on the upstream's own body, and put the result back inside
	// the value roundTrip returned (see upstreamBody).
	ub, _ := resp.Body.(*upstreamBody)
	if ub != nil {
		resp.Body = ub.src
	}
	rctx := context.WithoutCancel(ctx.Req.Context())
	if len(st.injected) > 0 || p.opts.Grid != nil {
		// Scrubbing and scanning read the body as the agent will: a
		// compressed one is decoded first.
		if d := p.decodeBody(resp); d != nil {
			p.deny(rctx, st, d)
			st.done()
			return d.response(resp.Request)
		}
	}
	if len(st.injected) > 0 {
		inject.RedactHeader(resp.Header, st.injected)
		if resp.Body != nil && resp.Body != http.NoBody {
			p.redactBody(resp, st.injected)
		}
	}
	if blocked := p.scanResponse(rctx, resp, st); blocked != nil {
		p.deny(rctx, st, blocked)
		st.done()
		return blocked.response(resp.Request)
	}
	finish := func(n int64) {
		defer st.done()
		if len(st.injected) > 0 && len(resp.Trailer) > 0 {
			// Trailers arrive with the end of the body, before they are
			// sent on (gRPC carries its error text in grpc-message).
			inject.RedactHeader(resp.Trailer, st.injected)
		}
		p.metrics.allowed.Inc()
		p.recordDone(rctx, audit.Record{
			Action: audit.ActionRequest, AgentID: st.claims.Subject, PassportJTI: st.claims.ID,
			Host: st.host, Method: st.method, Path: st.path, Status: resp.StatusCode,
			BytesIn: max(st.bytesIn, 0), BytesOut: n, DurationMS: p.now().Sub(st.start).Milliseconds(),
			CredentialID: injectedNames(st.injected),
		})
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		finish(0)
		return resp
	}
	resp.Body = ub.install(&countingBody{ReadCloser: resp.Body, want: resp.ContentLength, done: finish})
	return resp
}

func injectedNames(in []inject.Injected) string {
	if len(in) == 1 {
		return in[0].Name
	}
	names := make([]string, len(in))
	for i, x := range in {
		names[i] = x.Name
	}
	return strings.Join(names, ",")
}

// countingBody counts bytes read and calls done once: when the body
// ends, or is closed, or, for a body of known length (want >= 0), when its
// last bytes are read, before they are returned. The request's record is
// then written before the agent can have its whole answer: a chunked
// answer ends with the terminator sent after the final Read.
type countingBody struct {
	io.ReadCloser
	n    int64
	want int64
	once sync.Once
	done func(n int64)
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err != nil || b.n == b.want {
		b.once.Do(func() { b.done(b.n) })
	}
	return n, err
}

func (b *countingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.done(b.n) })
	return err
}

// record appends r; a failure is logged, since the request it describes
// has already been decided.
func (p *Proxy) record(ctx context.Context, r audit.Record) {
	if _, err := p.appendDurable(context.WithoutCancel(ctx), r); err != nil {
		p.log.Error("audit append failed", zap.String("action", r.Action), zap.Error(err))
	}
}

func (p *Proxy) appendDurable(ctx context.Context, r audit.Record) (uint64, error) {
	start := time.Now()
	seq, err := p.opts.Audit.Append(ctx, r)
	p.metrics.AuditAppend.Observe(time.Since(start).Seconds())
	return seq, err
}

// serveNonProxy answers requests addressed to the proxy itself.
func (p *Proxy) serveNonProxy(w http.ResponseWriter, r *http.Request) {
	d := &denial{Status: http.StatusBadRequest, Reason: reason.NotAProxyRequest,
		Detail: "this is the STACK proxy: set HTTPS_PROXY=http://" + r.Host + " in the agent's environment"}
	resp := d.response(r)
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(d.Status)
	io.Copy(w, resp.Body)
}

// ActionWouldDeny records a request a report-only passport let through
// that enforce mode would have refused.
const ActionWouldDeny = "would_deny"

// grantNaming returns the index of the first grant naming credential for
// host, or -1.
func grantNaming(s passport.Scope, host, credential string) int {
	for i, g := range s {
		if hostmatch.MatchAny(g.Hosts, host) && slices.Contains(g.Credentials, credential) {
			return i
		}
	}
	return -1
}

// scopeNamesHost reports whether any grant names host.
func scopeNamesHost(s passport.Scope, host string) bool {
	for _, g := range s {
		if hostmatch.MatchAny(g.Hosts, host) {
			return true
		}
	}
	return false
}

// hostOnly returns the host of host[:port] as hostmatch writes it. One
// hostmatch refuses is returned without its port, as sent: no grant or
// binding matches it, and the egress guard still judges an IP literal in
// a form hostmatch does not take (127.1).
func hostOnly(hostport string) string {
	h, err := hostmatch.Normalize(hostport)
	if err == nil {
		return h
	}
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// zapPrintf adapts zap to goproxy's logger, at debug level: goproxy logs
// per-connection noise only when Verbose is set.
type zapPrintf struct{ l *zap.Logger }

func (z zapPrintf) Printf(format string, v ...any) { z.l.Debug(fmt.Sprintf(format, v...)) }
