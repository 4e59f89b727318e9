package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/handoff"
	"github.com/stackctl/stack/passport"
)

// Revocations is the sidecar's local revocation set, where the feed's
// revocations are applied (*passport.RevocationStore).
type Revocations interface {
	Add(r passport.Revocation) error
	RevokeJTI(jti string, exp time.Time, reason string) (passport.Revocation, error)
}

// Messages of the link's log that operators and the failover drill read.
const (
	// LogRevocationApplied is logged at info for each revocation applied
	// from the feed, with its kind, id and rev.
	LogRevocationApplied = "revocation applied"
	// LogMoved is logged at info when the link moves to another replica,
	// with from, to and the error.
	LogMoved = "control plane replica unreachable; moving to another"
)

// Options configure New. URLs, Revocations, OnKeys and one of JoinToken
// and OIDCTokenFile are required.
type Options struct {
	// URLs are the control plane's replicas (https://host:port each), or
	// one URL naming a load balancer in front of them. The client talks
	// to one at a time and moves to the next, in order, when it stops
	// answering.
	URLs []string
	// RootCAs verify the control plane's certificate (its CA, from
	// `stack control ca export`); nil means the system roots.
	RootCAs *x509.CertPool
	// JoinToken is a one-time join token. It is spent on the first join;
	// later starts reuse the credential kept in StatePath.
	JoinToken string
	// OIDCTokenFile holds the workload's OIDC token (a Kubernetes
	// projected service-account token), re-read at every join.
	OIDCTokenFile string
	// Name says which sidecar this is in `stack control status`.
	Name string
	// StatePath keeps the sidecar credential and the feed revision across
	// restarts (mode 0600). Empty keeps them in memory only.
	StatePath   string
	Revocations Revocations
	// OnKeys receives the control plane's JWKS with each passport (the
	// verifier's UpdateJWKS).
	OnKeys func(jose.JSONWebKeySet) error
	// OnLeases receives the agent's credential leases each time they are
	// renewed, and nil when they are dropped (on revocation).
	OnLeases func([]control.Lease)
	// OnDetectorModes receives the detector modes the control plane sets
	// for the agent (detector → mode; empty: none, the configured modes
	// apply): at start, at every resync and at every change on the feed.
	// It keeps what it had when it cannot apply them.
	OnDetectorModes func(agent string, modes map[string]string)
	// MaxStaleness, when positive, is how long without contact with the
	// control plane the sidecar keeps serving; after it Gate refuses.
	MaxStaleness time.Duration
	// Heartbeat is the control plane's feed heartbeat: a feed silent for
	// three of them is taken for dead and reconnected.
	Heartbeat time.Duration
	// Timeout bounds each call other than the feed (default 10s).
	Timeout time.Duration
	// StartTimeout bounds Start's retries while the control plane cannot
	// be reached (zero: until ctx ends).
	StartTimeout time.Duration
	Log          *zap.Logger
	Now          func() time.Time
}

// Client is a joined sidecar's link to the control plane.
type Client struct {
	opts Options
	urls []string
	http *http.Client
	log  *zap.Logger
	now  func() time.Time
	// loops tracks the background loops Start begins (see Wait).
	loops sync.WaitGroup

	mu          sync.Mutex
	cur         int    // index in urls of the replica in use
	moves       uint64 // how many times it moved to another replica
	st          state
	token       string // the agent's passport
	jti         string
	issuedAt    time.Time // the passport's iat
	expiresAt   time.Time
	refreshAt   time.Time // 2/3 of its life, by our clock
	lastContact time.Time
	connected   bool
	revoked     string // why our passport or agent was revoked, if it was
	leaseExpiry time.Time
	// handoffKeys are the agent's handoff keys, from its last passport.
	handoffKeys *handoff.AgentKeys
	// leases are those last handed to OnLeases.
	leases []control.Lease
	// leaseMu makes lease hand-overs (OnLeases) one at a time, in the
	// order the client decided them; taken before mu.
	leaseMu sync.Mutex

	wakeLeases   chan struct{}
	wakePassport chan struct{}
	// wakeShip tells the audit shipper the feed is open again: the
	// control plane is back, no need to wait out its backoff.
	wakeShip chan struct{}
	forward  chan control.RevokeRequest
}

// Health is what the sidecar reports of its link in /readyz and metrics.
type Health struct {
	// URL is the replica the sidecar talks to now.
	URL string `json:"url"`
	// Moves counts the moves to another replica since Start.
	Moves          uint64    `json:"moves"`
	Connected      bool      `json:"connected"`
	LastContact    time.Time `json:"last_contact,omitzero"`
	Rev            int64     `json:"rev"`
	Agent          string    `json:"agent"`
	SidecarID      string    `json:"sidecar_id"`
	PassportExpiry time.Time `json:"passport_expiry,omitzero"`
	Revoked        string    `json:"revoked,omitempty"`
	Stale          bool      `json:"stale"`
}

// New checks opts and builds a Client; Start joins.
func New(opts Options) (*Client, error) {
	urls, err := checkURLs(opts.URLs)
	switch {
	case err != nil:
		return nil, err
	case opts.Revocations == nil || opts.OnKeys == nil:
		return nil, errors.New("control client: Revocations and OnKeys are required")
	case opts.JoinToken == "" && opts.OIDCTokenFile == "" && opts.StatePath == "":
		return nil, errors.New("control client: give a join token (--join-token) or a workload token file (--oidc-token-file)")
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = control.DefaultHeartbeat
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	tr := &http.Transport{
		Proxy:               nil, // never through HTTPS_PROXY: that is us
		TLSClientConfig:     &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 4,
		// Every call shares one HTTP/2 connection with the feed: a
		// connection that stops answering pings is closed, so the next
		// call dials afresh instead of waiting on a dead peer.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 3 * opts.Heartbeat, PingTimeout: 2 * time.Second, WriteByteTimeout: 10 * time.Second},
	}
	return &Client{
		opts: opts, urls: urls, log: opts.Log, now: opts.Now,
		http:         &http.Client{Transport: tr},
		wakeLeases:   make(chan struct{}, 1),
		wakePassport: make(chan struct{}, 1),
		wakeShip:     make(chan struct{}, 1),
		forward:      make(chan control.RevokeRequest, 1024),
	}, nil
}

// checkURLs returns the replicas' base URLs without a trailing slash, or
// an error naming the first one that is not https://HOST:PORT.
func checkURLs(urls []string) ([]string, error) {
	if len(urls) == 0 {
		return nil, errors.New("control.url: give the control plane's URL (https://HOST:PORT), or its replicas' URLs")
	}
	out := make([]string, 0, len(urls))
	seen := map[string]bool{}
	for i, raw := range urls {
		u, err := url.Parse(raw)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			return nil, fmt.Errorf("control.url[%d] %q: want https://HOST:PORT", i, raw)
		case u.Scheme == "http":
			return nil, fmt.Errorf("control.url[%d] %q: the control plane is reached over HTTPS only", i, raw)
		case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
			return nil, fmt.Errorf("control.url[%d] %q: want https://HOST:PORT, with no path", i, raw)
		}
		base := strings.TrimRight(raw, "/")
		if seen[base] {
			return nil, fmt.Errorf("control.url[%d] %q: listed twice", i, raw)
		}
		seen[base] = true
		out = append(out, base)
	}
	return out, nil
}

// replica returns the replica in use and its index, for moveFrom.
func (c *Client) replica() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur, c.urls[c.cur]
}

// moveFrom moves to the next replica (in order, wrapping) after replica i
// failed, unless another call already moved off it: failures that
// several loops see at once of one replica make one move.
func (c *Client) moveFrom(i int, why error) {
	if len(c.urls) < 2 {
		return
	}
	c.mu.Lock()
	if c.cur != i {
		c.mu.Unlock()
		return
	}
	c.cur = (i + 1) % len(c.urls)
	c.moves++
	to := c.urls[c.cur]
	c.mu.Unlock()
	c.log.Info(LogMoved, zap.String("from", c.urls[i]), zap.String("to", to), zap.Error(why))
}

// replicaFailed says whether err, from a call to a replica made under
// ctx, is that replica's failure, which moving to another may cure: the
// network failed, the replica answered 5xx, or its feed went silent or
// ended. A refusal (4xx) is an answer about us, the same from every
// replica; the caller giving up (ctx) or a local failure is no one's.
func replicaFailed(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status/100 == 5
	}
	var le *localError
	return !errors.As(err, &le)
}

// localError is a failure on the sidecar's side of the link.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// Start joins (or resumes with the credential in StatePath), obtains the
// agent's passport, the revocation set and the leases, then keeps them
// current in the background until ctx ends. It retries until ctx ends
// while the control plane cannot be reached, and fails at once on a
// refusal (a spent join token, an unknown agent).
func (c *Client) Start(ctx context.Context) error {
	st, err := c.loadState()
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.st = st
	c.mu.Unlock()
	sctx := ctx
	if c.opts.StartTimeout > 0 {
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(ctx, c.opts.StartTimeout)
		defer cancel()
	}
	if err := c.start(sctx); err != nil {
		return err
	}
	for _, loop := range []func(context.Context){c.credentialLoop, c.passportLoop, c.watchLoop, c.leaseLoop, c.forwardLoop} {
		c.loops.Go(func() { loop(ctx) })
	}
	return nil
}

// Wait returns once the background loops of Start have returned, which
// they do after Start's ctx ends: after it, the client writes nothing
// more to StatePath or the revocation store.
func (c *Client) Wait() { c.loops.Wait() }

func (c *Client) start(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := c.bootstrap(ctx)
		if err == nil {
			return nil
		}
		var ae *APIError
		if errors.As(err, &ae) && ae.Status/100 == 4 && ae.Status != http.StatusTooManyRequests {
			return err
		}
		// A certificate the roots do not verify is a configuration
		// problem (control.ca), not an outage: say so at once.
		var hn x509.HostnameError
		if errors.As(err, &hn) {
			return fmt.Errorf("the control plane's certificate does not cover %s: start it with --host %s (control.hosts): %w", hn.Host, hn.Host, err)
		}
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			return fmt.Errorf("the control plane's certificate is not trusted (is control.ca its CA, from `stack control ca export`?): %w", err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("control plane %s: %w", strings.Join(c.urls, ", "), err)
		}
		c.log.Warn("control plane not reachable yet; retrying", zap.Strings("urls", c.urls), zap.Error(err))
		if !sleep(ctx, backoff(attempt, time.Second, 10*time.Second)) {
			return fmt.Errorf("control plane %s: %w", strings.Join(c.urls, ", "), err)
		}
	}
}

func (c *Client) loadState() (state, error) {
	if c.opts.StatePath == "" {
		return state{}, nil
	}
	st, err := loadState(c.opts.StatePath)
	if err != nil {
		return state{}, fmt.Errorf("control state %s: %w", c.opts.StatePath, err)
	}
	if !st.overlaps(c.urls) {
		// Another control plane's credential and revision mean nothing
		// here. Replicas share theirs, so a list that still names one of
		// the URLs the state was earned with keeps it.
		return state{}, nil
	}
	st.URL, st.URLs = "", c.urls
	return st, nil
}

func (c *Client) bootstrap(ctx context.Context) error {
	c.mu.Lock()
	have := c.st.Token != "" && c.now().Before(c.st.ExpiresAt)
	c.mu.Unlock()
	if !have {
		if err := c.join(ctx); err != nil {
			return err
		}
	}
	if err := c.refreshPassport(ctx); err != nil {
		return err
	}
	if err := c.resync(ctx); err != nil {
		return err
	}
	return c.renewLeases(ctx)
}

// join spends the join token or presents the workload token.
func (c *Client) join(ctx context.Context) error {
	req := control.JoinRequest{Name: c.opts.Name}
	switch {
	case c.opts.OIDCTokenFile != "":
		b, err := os.ReadFile(c.opts.OIDCTokenFile)
		if err != nil {
			return &localError{fmt.Errorf("workload token: %w", err)}
		}
		req.OIDCToken = strings.TrimSpace(string(b))
	case c.opts.JoinToken != "":
		req.JoinToken = c.opts.JoinToken
	default:
		return errors.New("the sidecar credential kept in the control state expired and no join token or workload token was given: join again with a new --join-token")
	}
	var cred control.Credential
	if err := c.call(ctx, http.MethodPost, control.PathJoin, "", req, &cred); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	c.mu.Lock()
	c.st = state{URLs: c.urls, SidecarID: cred.SidecarID, Agent: cred.Agent, Token: cred.Token, ExpiresAt: cred.ExpiresAt}
	c.mu.Unlock()
	c.log.Info("joined the control plane", zap.String("sidecar", cred.SidecarID), zap.String("agent", cred.Agent))
	return c.save()
}

func (c *Client) save() error {
	if c.opts.StatePath == "" {
		return nil
	}
	c.mu.Lock()
	st := c.st
	c.mu.Unlock()
	if err := saveState(c.opts.StatePath, st); err != nil {
		return fmt.Errorf("control state %s: %w", c.opts.StatePath, err)
	}
	return nil
}

// authed calls the API with the sidecar credential; a credential the
// control plane no longer knows is replaced by joining again when a
// workload token can do so.
func (c *Client) authed(ctx context.Context, method, path string, in, out any) error {
	c.mu.Lock()
	tok := c.st.Token
	c.mu.Unlock()
	err := c.call(ctx, method, path, tok, in, out)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized && c.opts.OIDCTokenFile != "" {
		if jerr := c.join(ctx); jerr != nil {
			return jerr
		}
		c.mu.Lock()
		tok = c.st.Token
		c.mu.Unlock()
		err = c.call(ctx, method, path, tok, in, out)
	}
	return err
}

// APIError is a refusal from the control plane.
type APIError struct {
	Status int
	Reason string
	Msg    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("control plane: %s (HTTP %d, %s)", e.Msg, e.Status, e.Reason)
}

// call makes one API call to the replica in use, and moves off it when
// the call shows it failed.
func (c *Client) call(ctx context.Context, method, path, token string, in, out any) error {
	i, base := c.replica()
	err := c.callAt(ctx, base, method, path, token, in, out)
	if replicaFailed(ctx, err) {
		c.moveFrom(i, err)
	}
	return err
}

func (c *Client) callAt(ctx context.Context, base, method, path, token string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 5 {
		// A replica that answers 5xx (cut off from the store, say)
		// tells us nothing current: not contact for max_staleness.
		c.contact()
	}
	if resp.StatusCode/100 != 2 {
		var e control.Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return &APIError{Status: resp.StatusCode, Reason: e.Reason, Msg: e.Error}
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out)
}

func (c *Client) contact() {
	c.mu.Lock()
	c.lastContact = c.now()
	c.mu.Unlock()
}

// FetchKeys returns the control plane's current JWKS, for a verifier
// that meets a passport signed with a key it does not know yet.
func (c *Client) FetchKeys() (jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := c.call(ctx, http.MethodGet, control.PathJWKS, "", nil, &set)
	return set, err
}

// refreshPassport obtains a new passport for the agent.
func (c *Client) refreshPassport(ctx context.Context) error {
	var pr control.PassportResponse
	if err := c.authed(ctx, http.MethodPost, control.PathIssue, nil, &pr); err != nil {
		return fmt.Errorf("passport: %w", err)
	}
	if err := c.opts.OnKeys(pr.JWKS); err != nil {
		return fmt.Errorf("passport: the control plane's keys: %w", err)
	}
	var hkeys *handoff.AgentKeys
	if len(pr.HandoffKeys) > 0 {
		hkeys = new(handoff.AgentKeys)
		if err := json.Unmarshal(pr.HandoffKeys, hkeys); err != nil {
			return fmt.Errorf("passport: the agent's handoff keys: %w", err)
		}
	}
	iat := pr.IssuedAt
	now := c.now()
	life := pr.ExpiresAt.Sub(iat)
	if iat.IsZero() || life <= 0 {
		life = pr.ExpiresAt.Sub(now)
	}
	// At 2/3 of its life: counted from when it arrived, but never later
	// than a third of its life before exp, which can come up to a second
	// sooner than issuance plus TTL (iat is whole seconds).
	wait := min(life*2/3, pr.ExpiresAt.Sub(now)-life/3)
	c.mu.Lock()
	c.token, c.jti, c.issuedAt, c.expiresAt = pr.Passport, pr.JTI, iat, pr.ExpiresAt
	c.handoffKeys = hkeys
	c.refreshAt = now.Add(max(wait, 0))
	// A new passport was issued: the agent is no longer revoked (it was
	// enabled again), and may have its credentials back.
	wasRevoked := c.revoked != ""
	c.revoked = ""
	c.mu.Unlock()
	if wasRevoked {
		select {
		case c.wakeLeases <- struct{}{}:
		default:
		}
	}
	c.log.Debug("passport refreshed", zap.String("jti", pr.JTI), zap.Time("expires", pr.ExpiresAt))
	return nil
}

// passportLoop refreshes the passport at 2/3 of its lifetime, retrying
// failures until it expires and after (the sidecar then refuses with
// passport_expired: a passport is never extended).
func (c *Client) passportLoop(ctx context.Context) {
	attempt := 0
	for {
		c.mu.Lock()
		wait := c.refreshAt.Sub(c.now())
		c.mu.Unlock()
		if attempt > 0 {
			wait = backoff(attempt-1, time.Second, 30*time.Second)
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-c.wakePassport:
			t.Stop()
			attempt = max(attempt, 1)
		}
		if err := c.refreshPassport(ctx); err != nil {
			attempt++
			c.log.Warn("passport refresh failed; retrying", zap.Int("attempt", attempt), zap.Error(err))
			continue
		}
		attempt = 0
	}
}

// credentialLoop renews the sidecar credential at 2/3 of its lifetime.
func (c *Client) credentialLoop(ctx context.Context) {
	attempt := 0
	for {
		c.mu.Lock()
		wait := c.st.ExpiresAt.Sub(c.now()) * 2 / 3
		c.mu.Unlock()
		if attempt > 0 {
			wait = backoff(attempt-1, time.Second, 30*time.Second)
		}
		if !sleep(ctx, wait) {
			return
		}
		var cred control.Credential
		if err := c.authed(ctx, http.MethodPost, control.PathRenew, nil, &cred); err != nil {
			attempt++
			c.log.Warn("sidecar credential renewal failed; retrying", zap.Int("attempt", attempt), zap.Error(err))
			continue
		}
		attempt = 0
		c.mu.Lock()
		c.st.Token, c.st.ExpiresAt = cred.Token, cred.ExpiresAt
		c.mu.Unlock()
		if err := c.save(); err != nil {
			c.log.Warn("control state not saved", zap.Error(err))
		}
	}
}

// Passport implements proxy.PassportSource: the agent's current passport.
func (c *Client) Passport() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == "" {
		return "", errors.New("no passport from the control plane yet")
	}
	return c.token, nil
}

// StaleError refuses requests once the control plane has been away for
// longer than control.max_staleness.
type StaleError struct{ Since time.Time }

func (e *StaleError) Error() string {
	return "no contact with the control plane since " + e.Since.UTC().Format(time.RFC3339) + " (control.max_staleness)"
}

// Gate refuses every request once the control plane has been away for
// longer than MaxStaleness; nil otherwise.
func (c *Client) Gate() error {
	if c.opts.MaxStaleness <= 0 {
		return nil
	}
	c.mu.Lock()
	last := c.lastContact
	c.mu.Unlock()
	if c.now().Sub(last) > c.opts.MaxStaleness {
		return &StaleError{Since: last}
	}
	return nil
}

// Health reports the link's state.
func (c *Client) Health() Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := Health{URL: c.urls[c.cur], Moves: c.moves, Connected: c.connected, LastContact: c.lastContact, Rev: c.st.Rev, Agent: c.st.Agent,
		SidecarID: c.st.SidecarID, PassportExpiry: c.expiresAt, Revoked: c.revoked}
	h.Stale = c.opts.MaxStaleness > 0 && c.now().Sub(c.lastContact) > c.opts.MaxStaleness
	return h
}

// RevokeJTI revokes a passport at once in this sidecar and forwards the
// revocation to the control plane, which pushes it to every sidecar (a
// detector's revoke action). The forward is retried in the background
// while the control plane is away.
func (c *Client) RevokeJTI(jti string, exp time.Time, reason string) (passport.Revocation, error) {
	rv, err := c.opts.Revocations.RevokeJTI(jti, exp, reason)
	if err != nil {
		return rv, err
	}
	c.noteRevoked(rv)
	select {
	case c.forward <- control.RevokeRequest{JTI: jti, Expiry: exp, Reason: reason}:
	default:
		c.log.Error("revocation not forwarded to the control plane: queue full", zap.String("jti", jti))
	}
	return rv, nil
}

func (c *Client) forwardLoop(ctx context.Context) {
	for {
		var req control.RevokeRequest
		select {
		case <-ctx.Done():
			return
		case req = <-c.forward:
		}
		for attempt := 0; ; attempt++ {
			err := c.authed(ctx, http.MethodPost, control.PathRevoke, req, nil)
			if err == nil {
				break
			}
			var ae *APIError
			if errors.As(err, &ae) && ae.Status/100 == 4 {
				c.log.Error("the control plane refused a revocation", zap.String("jti", req.JTI), zap.Error(err))
				break
			}
			if !sleep(ctx, backoff(attempt, 200*time.Millisecond, 10*time.Second)) {
				return
			}
		}
	}
}

// resync loads the whole revocation set, for a first start or when the
// feed's history no longer reaches back to our revision.
func (c *Client) resync(ctx context.Context) error {
	var list control.RevocationList
	if err := c.authed(ctx, http.MethodGet, control.PathRevokes, nil, &list); err != nil {
		return fmt.Errorf("revocations: %w", err)
	}
	for _, rv := range list.Revocations {
		if err := c.apply(rv); err != nil {
			return err
		}
	}
	c.log.Info("revocation set loaded", zap.Int("revocations", len(list.Revocations)), zap.Int64("rev", list.Rev))
	// Read after the list: a change made since comes on the feed, which
	// resumes from the list's revision.
	if err := c.loadDetectorModes(ctx); err != nil {
		return err
	}
	// The set's revision replaces ours even when lower: a store restored
	// from a backup counts from where the backup was, and the feed must
	// resume from there. Revocations already applied stay applied.
	c.mu.Lock()
	c.st.Rev = list.Rev
	c.mu.Unlock()
	if err := c.save(); err != nil {
		c.log.Warn("control state not saved", zap.Error(err))
	}
	return nil
}

// loadDetectorModes reads the agent's detector modes and hands them over.
// A control plane without per-agent modes (an older version, answering
// 404 without a reason) has none to hand over.
func (c *Client) loadDetectorModes(ctx context.Context) error {
	if c.opts.OnDetectorModes == nil {
		return nil
	}
	c.mu.Lock()
	agent := c.st.Agent
	c.mu.Unlock()
	var ad control.AgentDetectors
	err := c.authed(ctx, http.MethodGet, control.DetectorsPath(agent), nil, &ad)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound && ae.Reason == "" {
		c.log.Warn("the control plane sets no detector modes per agent (an older version?); the configured modes apply")
		return nil
	}
	if err != nil {
		return fmt.Errorf("detector modes: %w", err)
	}
	modes := map[string]string{}
	for _, d := range ad.Detectors {
		if d.Override {
			modes[d.Detector] = d.Mode
		}
	}
	c.detectorModes(ad.Agent, modes)
	return nil
}

// detectorModes hands the agent's detector modes to OnDetectorModes; the
// modes of any other agent are not ours to apply.
func (c *Client) detectorModes(agent string, modes map[string]string) {
	c.mu.Lock()
	ours := agent == c.st.Agent
	c.mu.Unlock()
	if !ours || c.opts.OnDetectorModes == nil {
		return
	}
	if modes == nil {
		modes = map[string]string{}
	}
	c.opts.OnDetectorModes(agent, modes)
}

func (c *Client) apply(rv passport.Revocation) error {
	if err := c.opts.Revocations.Add(rv); err != nil {
		return &localError{fmt.Errorf("apply revocation %s %s: %w", rv.Kind, rv.ID, err)}
	}
	c.noteRevoked(rv)
	return nil
}

// noteRevoked drops the leases when the revocation is of our own agent
// or passport: nothing is injected for it any more.
func (c *Client) noteRevoked(rv passport.Revocation) {
	// leaseMu first: a renewal in flight hands its leases over before
	// this drops them, never after.
	c.leaseMu.Lock()
	c.mu.Lock()
	ours := (rv.Kind == passport.RevokeAgent && rv.ID == c.st.Agent && !c.issuedAt.After(rv.RevokedAt)) ||
		(rv.Kind == passport.RevokeJTI && rv.ID == c.jti)
	if ours {
		c.revoked = fmt.Sprintf("%s %s", rv.Kind, rv.ID)
		if rv.Reason != "" {
			c.revoked += ": " + rv.Reason
		}
		c.leaseExpiry = time.Time{}
		c.leases = nil
	}
	c.mu.Unlock()
	if ours && c.opts.OnLeases != nil {
		c.opts.OnLeases(nil)
	}
	c.leaseMu.Unlock()
	if ours {
		c.log.Warn("this sidecar's passport was revoked; credentials dropped", zap.String("kind", string(rv.Kind)), zap.String("id", rv.ID), zap.String("reason", rv.Reason))
		// Keep asking for a passport (with backoff): refused while the
		// agent is disabled, issued as soon as it is enabled again.
		select {
		case c.wakePassport <- struct{}{}:
		default:
		}
	}
}

func (c *Client) setRev(rev int64) {
	c.mu.Lock()
	changed := rev > c.st.Rev
	if changed {
		c.st.Rev = rev
	}
	c.mu.Unlock()
	if changed {
		if err := c.save(); err != nil {
			c.log.Warn("control state not saved", zap.Error(err))
		}
	}
}

// watchRetryMax caps the wait between two attempts to reopen the feed: a
// sidecar hears of revocations at most this long after its control plane
// is back. Jitter spreads a fleet's reconnections over it.
const watchRetryMax = time.Second

// watchLoop keeps a feed watch open, reconnecting with backoff.
func (c *Client) watchLoop(ctx context.Context) {
	attempt := 0
	for ctx.Err() == nil {
		i, base := c.replica()
		got, err := c.watchOnce(ctx, base)
		if replicaFailed(ctx, err) {
			c.moveFrom(i, err)
		}
		c.mu.Lock()
		c.connected = false
		c.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if got {
			attempt = 0
		}
		c.log.Info("control feed interrupted; reconnecting", zap.Error(err))
		if !sleep(ctx, backoff(attempt, 100*time.Millisecond, watchRetryMax)) {
			return
		}
		attempt++
	}
}

// watchOnce follows the feed until it breaks; got says whether any line
// arrived.
func (c *Client) watchOnce(ctx context.Context, base string) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	rev, tok := c.st.Rev, c.st.Token
	c.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+control.PathWatch+"?rev="+strconv.FormatInt(rev, 10), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	// A feed quiet for three heartbeats is dead, or half-open: only a
	// deadline tells.
	idle := 3*c.opts.Heartbeat + time.Second
	watchdog := time.AfterFunc(idle+c.opts.Timeout, cancel)
	defer watchdog.Stop()
	resp, err := c.http.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e control.Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		json.Unmarshal(b, &e)
		err := &APIError{Status: resp.StatusCode, Reason: e.Reason, Msg: e.Error}
		if resp.StatusCode == http.StatusUnauthorized && c.opts.OIDCTokenFile != "" {
			if jerr := c.join(ctx); jerr != nil {
				return false, jerr
			}
		}
		return false, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		watchdog.Reset(idle)
		got = true
		var ev control.WatchEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return got, fmt.Errorf("feed: %w", err)
		}
		c.mu.Lock()
		was := c.connected
		c.connected = true
		c.lastContact = c.now()
		c.mu.Unlock()
		if !was {
			select {
			case c.wakeShip <- struct{}{}:
			default:
			}
		}
		switch ev.Type {
		case control.EventRevoked:
			if ev.Revocation == nil {
				continue
			}
			if err := c.apply(*ev.Revocation); err != nil {
				// Not applied, so not acknowledged: the next watch
				// starts before it.
				return got, err
			}
			c.log.Info(LogRevocationApplied, zap.String("kind", string(ev.Revocation.Kind)),
				zap.String("id", ev.Revocation.ID), zap.Int64("rev", ev.Rev))
			c.setRev(ev.Rev)
		case control.EventCredentials:
			c.setRev(ev.Rev)
			select {
			case c.wakeLeases <- struct{}{}:
			default:
			}
		case control.EventDetectors:
			c.detectorModes(ev.Agent, ev.Detectors)
			c.setRev(ev.Rev)
		case control.EventBookmark:
			c.setRev(ev.Rev)
		case control.EventResync:
			c.log.Info("control feed history gone; loading the whole revocation set")
			return got, c.resync(ctx)
		}
	}
	if err := sc.Err(); err != nil {
		return got, err
	}
	return got, io.ErrUnexpectedEOF
}

// renewLeases fetches the agent's leases.
func (c *Client) renewLeases(ctx context.Context) error {
	var lr control.LeasesResponse
	if err := c.authed(ctx, http.MethodPost, control.PathLeases, control.LeasesRequest{Minted: true}, &lr); err != nil {
		return fmt.Errorf("leases: %w", err)
	}
	if len(lr.Missing) > 0 {
		c.log.Warn("credentials the passport grants are not in the control plane's vault", zap.Strings("missing", lr.Missing))
	}
	// leaseMu orders this hand-over with a revocation's (noteRevoked);
	// mu is held only to read and write the client's state, so requests
	// asking for the passport do not wait for OnLeases.
	c.leaseMu.Lock()
	defer c.leaseMu.Unlock()
	now := c.now()
	c.mu.Lock()
	leases := lr.Leases
	if len(lr.Unavailable) > 0 {
		// Keep what is held of what could not be minted now, until it
		// expires: one lease per credential and narrowing.
		for _, l := range c.leases {
			k := control.LeaseKey{Name: l.Name, Narrow: l.Narrow}
			if slices.Contains(lr.Unavailable, k) && now.Before(l.ExpiresAt) {
				leases = append(leases, l)
			}
		}
	}
	exp := time.Time{}
	for _, l := range leases {
		if exp.IsZero() || l.ExpiresAt.Before(exp) {
			exp = l.ExpiresAt
		}
	}
	if len(lr.Unavailable) > 0 {
		// Ask again soon for what could not be minted, whatever the
		// others' expiry.
		if retry := now.Add(unavailableRetry); exp.IsZero() || retry.Before(exp) {
			exp = retry
		}
	}
	if c.revoked != "" {
		// Revoked while the request was out: hold nothing.
		leases, exp = nil, time.Time{}
	}
	c.leases = leases
	c.leaseExpiry = exp
	c.mu.Unlock()
	if len(lr.Unavailable) > 0 {
		c.log.Warn("the control plane could not mint credentials now; keeping the leases held until they expire", zap.Any("unavailable", lr.Unavailable))
	}
	if c.opts.OnLeases != nil {
		c.opts.OnLeases(leases)
	}
	return nil
}

// unavailableRetry is how soon leases are asked for again when the control
// plane could not mint one; minLeaseWait is the least wait between two
// renewals, so that a lease about to expire is not asked for in a loop.
const (
	unavailableRetry = 10 * time.Second
	minLeaseWait     = time.Second
)

// leaseLoop renews the leases at 2/3 of their lifetime, or at once when
// the feed says a credential changed.
func (c *Client) leaseLoop(ctx context.Context) {
	attempt := 0
	lease := time.Duration(0)
	c.mu.Lock()
	if !c.leaseExpiry.IsZero() {
		lease = c.leaseExpiry.Sub(c.now())
	}
	c.mu.Unlock()
	for {
		wait := max(lease*2/3, minLeaseWait)
		if lease <= 0 {
			wait = control.DefaultLeaseTTL * 2 / 3
		}
		if attempt > 0 {
			wait = backoff(attempt-1, time.Second, 30*time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-c.wakeLeases:
			t.Stop()
		}
		if err := c.renewLeases(ctx); err != nil {
			attempt++
			c.log.Warn("lease renewal failed; retrying", zap.Int("attempt", attempt), zap.Error(err))
			continue
		}
		attempt = 0
		c.mu.Lock()
		lease = c.leaseExpiry.Sub(c.now())
		c.mu.Unlock()
	}
}

// backoff is base·2^attempt, capped, with jitter so that a fleet does not
// reconnect in step.
func backoff(attempt int, base, limit time.Duration) time.Duration {
	d := base << min(attempt, 20)
	if d > limit || d <= 0 {
		d = limit
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
