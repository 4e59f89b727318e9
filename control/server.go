package control

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control/admission"
	"github.com/stackctl/stack/control/dropoff"
	"github.com/stackctl/stack/control/fleet"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/vault"
)

// Defaults of Options.
const (
	DefaultSidecarTTL   = time.Hour
	DefaultLeaseTTL     = 10 * time.Minute
	DefaultHeartbeat    = 2 * time.Second
	DefaultJoinTokenTTL = 10 * time.Minute
	// DefaultWorkloadJoinRate lets a fleet of a few hundred pods start at
	// once (with retries) while bounding key fetches from issuers.
	DefaultWorkloadJoinRate = 50
	MaxJoinTokenTTL         = 7 * 24 * time.Hour
	maxRequestBody          = 1 << 20
)

// Attester maps a workload's OIDC token to the agent it may act as
// (package control/workload implements it).
type Attester interface {
	Attest(ctx context.Context, token string) (agent, subject string, err error)
	// Reason is the machine reason of an Attest error.
	Reason(err error) string
}

// Auditor records what the control plane hands out; *audit.Log is one.
type Auditor interface {
	Append(ctx context.Context, r audit.Record) (uint64, error)
}

// Options configure New. Store, Keys and Token are required.
type Options struct {
	Store store.Store
	// Keys sign passports. The control plane is the only holder of the
	// private keys; sidecars get the JWKS.
	Keys *passport.KeySet
	// IssuerName, Audience, DefaultTTL and MaxTTL configure issuance
	// (the passport package's defaults when zero).
	IssuerName string
	Audience   string
	DefaultTTL time.Duration
	MaxTTL     time.Duration
	Leeway     time.Duration
	// Token authenticates operators (the CLI): Authorization: Bearer.
	Token string
	// Roles resolve `agent register --role`.
	Roles map[string]passport.Role
	// Vault holds the credentials leased to sidecars; nil leases nothing.
	Vault *vault.Vault
	// Mints holds the credentials minted from the vault's minting kinds
	// for leases; nil mints nothing (those credentials are reported
	// unavailable). The caller closes it.
	Mints *mint.Cache
	// Attester checks workload identity tokens; nil refuses OIDC joins.
	Attester Attester
	// WorkloadJoinRate bounds workload joins per second, a burst of twice
	// as many allowed (DefaultWorkloadJoinRate).
	WorkloadJoinRate float64
	// Audit records issuance, leases and revocations; nil records nothing.
	Audit Auditor
	// LoadKeys reads the issuer keys again (POST /v1/reload, after a
	// rotation); nil refuses reloads.
	LoadKeys func(ctx context.Context) (*passport.KeySet, error)
	// KeyWrapper, when set, shares the issuer keys through the store
	// (see SharedKeys): Keys and KeysRev are what SharedKeys returned,
	// WatchKeys serves every change, RotateKeys and Reload go through
	// the store, and LoadKeys is not used. It unwraps the private keys.
	KeyWrapper passport.Wrapper
	KeysRev    int64
	// KeyActivationDelay is how long a key rotated through the store is
	// published before it signs (DefaultKeyActivationDelay).
	KeyActivationDelay time.Duration
	// SidecarTTL is the life of a sidecar credential; LeaseTTL of a
	// lease; Heartbeat the interval of feed bookmarks.
	SidecarTTL time.Duration
	LeaseTTL   time.Duration
	Heartbeat  time.Duration
	Metrics    *Metrics
	Log        *zap.Logger
	Now        func() time.Time

	// Handoffs keeps sealed handoffs between agents; nil answers 503.
	Handoffs *dropoff.Box
	// Webhook, when set, is the Kubernetes admission webhook, served at
	// admission.Path without a token (the API server calls it).
	Webhook http.Handler
	// Fleet witnesses the sidecars' audit chains and appends them to the
	// fleet log; nil: this control plane does not serve the fleet audit
	// log, and shipped batches get 503. FleetLog proves what it holds,
	// FleetSize reads a checkpoint's size, FleetKey and FleetOrigin name
	// its public key and checkpoint origin.
	Fleet       *fleet.Witness
	FleetLog    FleetProver
	FleetSize   CheckpointSize
	FleetKey    string
	FleetOrigin string
	// RevokeOnIntegrity disables an agent, and revokes its passports,
	// when its sidecar ships audit records that contradict what the
	// control plane holds (control.audit_integrity: revoke).
	RevokeOnIntegrity bool

	// StoreTimeout is how long the store may go without answering
	// CheckStore before the replica stops serving (DefaultStoreTimeout).
	StoreTimeout time.Duration

	// DetectorGate is the rollout gate of per-agent detector modes: how
	// long a detector in alert must have been clean before it is
	// reported ready for block (DefaultDetectorGate).
	DetectorGate time.Duration
}

// Server is the control plane's API.
type Server struct {
	opts   Options
	store  store.Store
	issuer *passport.Issuer
	keep   time.Duration // how long a revocation of unknown expiry is kept
	log    *zap.Logger
	now    func() time.Time

	// oidcJoins bounds workload joins (see join).
	oidcJoins *rate.Limiter

	mu    sync.Mutex
	live  map[string]*liveSidecar // by sidecar id: what the feed knows
	keyMu sync.RWMutex            // guards Keys against rotation while signing
	// keysRev is the store revision of the shared keys in force.
	keysRev int64
	// reloading makes Reloads one at a time, so the keys in force are
	// those of the last file read.
	reloading sync.Mutex

	health        health
	checkInterval time.Duration

	// signals are the newest detector signals per agent (detectors.go).
	signals *signalBook
}

// liveSidecar is what the control plane saw of a sidecar lately.
type liveSidecar struct {
	lastContact time.Time
	watching    int
	rev         int64
}

// New builds a Server.
func New(opts Options) (*Server, error) {
	switch {
	case opts.Store == nil:
		return nil, errors.New("control: a store is required")
	case opts.Keys == nil:
		return nil, errors.New("control: issuer keys are required")
	case len(opts.Token) < 32:
		return nil, errors.New("control: the operator token is missing or shorter than 32 characters")
	}
	if opts.SidecarTTL <= 0 {
		opts.SidecarTTL = DefaultSidecarTTL
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = DefaultStoreTimeout
	}
	if opts.WorkloadJoinRate <= 0 {
		opts.WorkloadJoinRate = DefaultWorkloadJoinRate
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = passport.DefaultMaxTTL
	}
	if opts.Leeway <= 0 {
		opts.Leeway = passport.DefaultLeeway
	}
	if opts.DetectorGate <= 0 {
		opts.DetectorGate = DefaultDetectorGate
	}
	if opts.KeyActivationDelay <= 0 {
		opts.KeyActivationDelay = DefaultKeyActivationDelay
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	s := &Server{
		opts: opts, store: opts.Store, log: opts.Log, now: opts.Now,
		keep:      opts.MaxTTL + opts.Leeway,
		keysRev:   opts.KeysRev,
		live:      map[string]*liveSidecar{},
		signals:   newSignalBook(),
		oidcJoins: rate.NewLimiter(rate.Limit(opts.WorkloadJoinRate), max(int(opts.WorkloadJoinRate)*2, 1)),
	}
	s.checkInterval = min(maxStoreCheckInterval, opts.StoreTimeout/3)
	s.health.init()
	s.issuer = &passport.Issuer{
		Keys: opts.Keys, Name: opts.IssuerName, Audience: opts.Audience,
		DefaultTTL: opts.DefaultTTL, MaxTTL: opts.MaxTTL, Now: opts.Now,
	}
	opts.Metrics.watchers = s.watchers
	if opts.Fleet != nil {
		if err := opts.Metrics.Registry.Register(fleetLag{w: opts.Fleet, now: s.now}); err != nil {
			return nil, fmt.Errorf("control: fleet metrics: %w", err)
		}
	}
	return s, nil
}

// SetKeys replaces the issuer keys (after a rotation): passports are
// signed with the new current key, and the JWKS serves every key still
// live, so sidecars that meet the new kid fetch it.
func (s *Server) SetKeys(ks *passport.KeySet) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	s.setKeysLocked(ks)
}

// setKeysLocked makes ks the keys that sign and are published; keyMu is
// held.
func (s *Server) setKeysLocked(ks *passport.KeySet) {
	s.opts.Keys = ks
	s.issuer.Keys = ks
}

// Reload reads the issuer keys again with Options.LoadKeys, or from the
// store when they are shared, and once they have loaded, serves them
// (SIGHUP and POST /v1/reload). A failure leaves
// the keys in force as they were. It returns the current key's kid.
func (s *Server) Reload(ctx context.Context) (kid string, err error) {
	if s.opts.KeyWrapper != nil {
		return s.reloadShared(ctx)
	}
	if s.opts.LoadKeys == nil {
		return "", fail(http.StatusNotImplemented, ReasonUnavailable, "this control plane cannot reload its keys")
	}
	s.reloading.Lock()
	defer s.reloading.Unlock()
	ks, err := s.opts.LoadKeys(ctx)
	if err != nil {
		s.log.Error("reload of the issuer keys failed; keeping the running ones", zap.Error(err))
		return "", err
	}
	s.SetKeys(ks)
	kid, _ = ks.Current(s.now())
	s.log.Info("reloaded the issuer keys", zap.String("current", kid))
	return kid, nil
}

func (s *Server) reload(r *http.Request) (any, error) {
	kid, err := s.Reload(r.Context())
	if err != nil {
		return nil, err
	}
	return map[string]string{"current_kid": kid}, nil
}

// Handler serves the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.opts.Metrics.handler())
	mux.HandleFunc("GET "+PathJWKS, s.jwks)

	mux.HandleFunc("POST "+PathJoin, s.handle(s.join))
	mux.HandleFunc("POST "+PathRenew, s.sidecar(s.renew))
	mux.HandleFunc("POST "+PathIssue, s.sidecar(s.issuePassport))
	mux.HandleFunc("POST "+PathLeases, s.sidecar(s.leases))
	mux.HandleFunc("GET "+PathWatch, s.either(s.watch))
	mux.HandleFunc("GET "+PathRevokes, s.either(s.revocations))
	mux.HandleFunc("POST "+PathRevoke, s.either(s.revoke))

	mux.HandleFunc("POST "+PathAgents, s.operator(s.registerAgent))
	mux.HandleFunc("GET "+PathAgents, s.operator(s.listAgents))
	mux.HandleFunc("GET "+PathAgents+"/{name}", s.operator(s.showAgent))
	mux.HandleFunc("POST "+PathAgents+"/{name}/disable", s.operator(s.disableAgent))
	mux.HandleFunc("POST "+PathAgents+"/{name}/enable", s.operator(s.enableAgent))
	mux.HandleFunc("GET "+PathAgents+"/{name}"+PathAgentDetectors, s.either(s.agentDetectors))
	mux.HandleFunc("POST "+PathAgents+"/{name}"+PathAgentDetectors, s.operator(s.setAgentDetector))
	mux.HandleFunc("POST "+PathTokens, s.operator(s.joinToken))
	mux.HandleFunc("GET "+PathStatus, s.operator(s.status))
	mux.HandleFunc("POST "+PathReload, s.operator(s.reload))
	mux.HandleFunc("POST "+PathKeysRotate, s.operator(s.rotateKeys))

	mux.HandleFunc("POST "+PathVaultPut, s.operator(s.vaultPut))
	mux.HandleFunc("POST "+PathVaultReplace, s.operator(s.vaultReplace))
	mux.HandleFunc("POST "+PathVaultRotate, s.operator(s.vaultRotate))
	mux.HandleFunc("POST "+PathVaultRemove, s.operator(s.vaultRemove))
	mux.HandleFunc("GET "+PathVaultSnapshot, s.operator(s.vaultSnapshot))
	mux.HandleFunc("GET "+PathVaultList, s.operator(s.vaultList))
	mux.HandleFunc("GET "+PathAuditSnapshot, s.operator(s.auditSnapshot))
	mux.HandleFunc("POST "+PathAuditShip, s.sidecar(s.shipAudit))
	mux.HandleFunc("GET "+PathFleetKey, s.fleetKey)
	mux.HandleFunc("GET "+PathFleetCheckpoint, s.operator(s.fleetCheckpoint))
	mux.HandleFunc("GET "+PathFleetProve, s.operator(s.fleetProve))
	mux.HandleFunc("GET "+PathFleetConsistency, s.operator(s.fleetConsistency))
	mux.HandleFunc("GET "+PathFleetExport, s.operator(s.fleetExport))
	mux.HandleFunc("GET "+PathFleetStreams, s.operator(s.fleetStreams))
	mux.HandleFunc("POST "+PathHandoffs, s.sidecar(s.depositHandoff))
	mux.HandleFunc("GET "+PathHandoffs, s.sidecar(s.listHandoffs))
	mux.HandleFunc("POST "+PathHandoffFetch, s.sidecar(s.fetchHandoff))
	mux.HandleFunc("GET "+PathHandoffsAll, s.operator(s.allHandoffs))
	mux.HandleFunc("POST "+PathHandoffSchemas, s.operator(s.putHandoffSchema))
	mux.HandleFunc("GET "+PathHandoffKeys+"/{agent}", s.sidecar(s.handoffKeys))
	mux.HandleFunc("GET "+PathHandoffSchemas, s.authed(s.listHandoffSchemas, true, true))
	mux.HandleFunc("POST "+PathOperatorCall, s.operator(s.operatorCall))
	if s.opts.Webhook != nil {
		mux.Handle("POST "+admission.Path, s.opts.Webhook)
	}
	return mux
}

// Run removes expired join tokens, sessions, issue records, revocations
// and handoffs every interval until ctx ends. Meanwhile it writes the
// detector signals noted from shipped audit records to the store, each
// agent's at most once a minute, and what is left when ctx ends.
func (s *Server) Run(ctx context.Context, interval time.Duration) error {
	persisted := make(chan struct{})
	go func() {
		defer close(persisted)
		s.persistSignals(ctx)
	}()
	defer func() { <-persisted }()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.collect(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("removing expired control-plane state", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// collect deletes what has expired. A delete that races a change loses
// (compare-and-swap) and waits for the next round.
//
// Join tokens and sessions expire in the store itself (Store.Create).
// They are still collected here for those that a store holds from before
// it could expire keys, or that a binary without expiry wrote to a bbolt
// file.
func (s *Server) collect(ctx context.Context) error {
	now := s.now()
	var errs []error
	if err := s.expireHandoffs(ctx); err != nil {
		errs = append(errs, err)
	}
	for _, prefix := range []string{prefixTokens, prefixSessions, prefixSidecars, prefixIssued, prefixRevocations} {
		kvs, _, err := s.store.List(ctx, prefix)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			var e struct {
				ExpiresAt time.Time `json:"expires_at"`
			}
			if json.Unmarshal(kv.Value, &e) != nil || e.ExpiresAt.IsZero() || now.Before(e.ExpiresAt) {
				continue
			}
			if _, err := s.store.CompareAndSwap(ctx, kv.Key, kv.ModRev, nil); err != nil && !errors.Is(err, store.ErrConflict) {
				errs = append(errs, err)
			}
		}
	}
	// Forget what the feed knew of sidecars that are gone.
	kvs, _, err := s.store.List(ctx, prefixSidecars)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	known := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		known[strings.TrimPrefix(kv.Key, prefixSidecars)] = true
	}
	s.mu.Lock()
	for id, l := range s.live {
		if !known[id] && l.watching == 0 {
			delete(s.live, id)
		}
	}
	s.mu.Unlock()
	return errors.Join(errs...)
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	// The keys a stale replica holds may be older than the store's.
	_, release, err := s.fresh(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	release()
	w.Header().Set("Cache-Control", "max-age=60")
	writeJSON(w, http.StatusOK, s.publicKeys())
}

// handler is an API endpoint: it returns its answer or an error.
type handler func(r *http.Request) (any, error)

func (s *Server) handle(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// Every endpoint that reads or writes state comes through here,
		// so this is where a stale replica refuses, and where what it was
		// doing when it went stale ends (a feed at once).
		ctx, release, err := s.fresh(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		defer release()
		limit := int64(maxRequestBody)
		if r.URL.Path == PathAuditShip {
			limit = maxAuditBatchBody
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		out, err := h(r.WithContext(context.WithValue(ctx, writerKey{}, w)))
		if out == streamed {
			return
		}
		if err != nil && errors.Is(context.Cause(ctx), errStale) {
			err = staleError(s.sinceLastAnswer())
		}
		if err != nil {
			ae := asAPIError(err)
			if ae.status >= 500 {
				s.log.Error("control API", zap.String("path", r.URL.Path), zap.Error(err))
			}
			writeJSON(w, ae.status, Error{Error: ae.msg, Reason: ae.reason})
			return
		}
		if out == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

type ctxKey struct{}

// caller is who sent a request: an operator, or a joined sidecar.
type caller struct {
	operator bool
	sidecar  *sidecarRecord
}

func callerOf(r *http.Request) *caller { return r.Context().Value(ctxKey{}).(*caller) }

func (s *Server) operator(h handler) http.HandlerFunc {
	return s.authed(h, true, false)
}

func (s *Server) sidecar(h handler) http.HandlerFunc {
	return s.authed(h, false, true)
}

func (s *Server) either(h handler) http.HandlerFunc {
	return s.authed(h, true, true)
}

func (s *Server) authed(h handler, operators, sidecars bool) http.HandlerFunc {
	return s.handle(func(r *http.Request) (any, error) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		tok = strings.TrimSpace(tok)
		if !ok || tok == "" {
			return nil, fail(http.StatusUnauthorized, ReasonUnauthorized, "send Authorization: Bearer with the control token or a sidecar credential")
		}
		var c *caller
		if strings.HasPrefix(tok, sidecarTokenPrefix) {
			if !sidecars {
				return nil, fail(http.StatusForbidden, ReasonUnauthorized, "operators only: use the control token")
			}
			rec, err := s.authSidecar(r.Context(), tok)
			if err != nil {
				return nil, err
			}
			c = &caller{sidecar: rec}
			s.touch(rec.ID, 0)
		} else {
			if subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.Token)) != 1 {
				return nil, fail(http.StatusUnauthorized, ReasonUnauthorized, "the control token is not valid")
			}
			if !operators {
				return nil, fail(http.StatusForbidden, ReasonUnauthorized, "sidecars only")
			}
			c = &caller{operator: true}
		}
		return h(r.WithContext(context.WithValue(r.Context(), ctxKey{}, c)))
	})
}

// writeError writes a refusal's status and JSON body.
func writeError(w http.ResponseWriter, err error) {
	ae := asAPIError(err)
	writeJSON(w, ae.status, Error{Error: ae.msg, Reason: ae.reason})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("bad request body: " + err.Error())
	}
	return nil
}

// hashed is how secrets handed out (join tokens, sidecar credentials)
// are keyed in the store: a leaked store does not leak them.
func hashed(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// getJSON reads key into v and returns its revision.
func (s *Server) getJSON(ctx context.Context, key string, v any) (int64, error) {
	kv, err := s.store.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return 0, fmt.Errorf("control: %s: %w", key, err)
	}
	return kv.ModRev, nil
}

// auditSnapshot serves a consistent copy of the audit log's file, for
// `stack audit verify|tail|export` while the control plane holds it.
func (s *Server) auditSnapshot(r *http.Request) (any, error) {
	snap, ok := s.opts.Audit.(interface{ WriteSnapshot(io.Writer) error })
	if !ok {
		return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, "this control plane keeps no audit log file")
	}
	w := r.Context().Value(writerKey{}).(http.ResponseWriter)
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := snap.WriteSnapshot(w); err != nil {
		s.log.Warn("audit snapshot failed", zap.Error(err))
	}
	return streamed, nil
}

func (s *Server) audit(ctx context.Context, r audit.Record) {
	if s.opts.Audit == nil {
		return
	}
	if _, err := s.opts.Audit.Append(ctx, r); err != nil {
		s.log.Error("control audit append failed", zap.String("action", r.Action), zap.Error(err))
	}
}

// liveLocked returns what the feed knows of sidecar id, making the entry
// if needed. s.mu is held.
func (s *Server) liveLocked(id string) *liveSidecar {
	l := s.live[id]
	if l == nil {
		l = &liveSidecar{}
		s.live[id] = l
	}
	return l
}

// touch notes contact with a sidecar; rev > 0 is what its feed delivered.
func (s *Server) touch(id string, rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.liveLocked(id)
	l.lastContact = s.now()
	if rev > l.rev {
		l.rev = rev
	}
}

func (s *Server) watchers() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.live {
		if l.watching > 0 {
			n++
		}
	}
	return float64(n)
}
