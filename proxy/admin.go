package proxy

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
	"github.com/stackctl/stack/vault"
)

// Admin API paths. Everything but /metrics, /healthz and /readyz needs
// the admin token: the agent shares the pod's network namespace and so
// reaches this port too.
// The paths and bodies shared with the control plane's API are its, so
// the CLI speaks to either the same way.
const (
	AdminRevoke        = control.PathRevoke
	AdminRevocations   = "/v1/passport/revocations/snapshot"
	AdminVaultPut      = control.PathVaultPut
	AdminVaultRotate   = control.PathVaultRotate
	AdminVaultReplace  = control.PathVaultReplace
	AdminVaultRemove   = control.PathVaultRemove
	AdminVaultSnapshot = control.PathVaultSnapshot
	AdminAuditSnapshot = control.PathAuditSnapshot
	AdminReload        = "/v1/reload"
	AdminStatus        = "/v1/status"
	// AdminPprof serves Go's runtime profiles (CPU, heap, goroutines,
	// execution trace) to diagnose a slow or growing sidecar. Behind the
	// token: a CPU profile costs CPU and traces show request timing.
	AdminPprof          = "/debug/pprof/"
	maxAdminRequestBody = 1 << 20
)

// AdminOptions wire the admin API to the running sidecar's state.
type AdminOptions struct {
	// Token authenticates state-changing and secret-adjacent endpoints.
	// It must not be empty.
	Token   string
	Metrics *Metrics
	Ready   func() bool
	// ReadyDetail, when set, adds a line to /readyz (the control plane
	// link of a joined sidecar).
	ReadyDetail func() string
	Revocations *passport.RevocationStore
	Store       *VaultStore
	Audit       *audit.Log
	// Reload re-reads the detector policy and the issuer keys (SIGHUP
	// does the same).
	Reload func(ctx context.Context) error
	// Home is the data directory, reported by /v1/status so a CLI can tell
	// it reached its own sidecar.
	Home string
	Log  *zap.Logger
}

// NewAdminHandler returns the admin listener's handler.
func NewAdminHandler(opts AdminOptions) (http.Handler, error) {
	if len(opts.Token) < 16 {
		return nil, errors.New("proxy: admin token missing or too short")
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	a := &admin{opts: opts}
	mux := http.NewServeMux()
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Metrics.Registry, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		detail := ""
		if opts.ReadyDetail != nil {
			detail = opts.ReadyDetail() + "\n"
		}
		if opts.Ready != nil && !opts.Ready() {
			http.Error(w, "not ready\n"+detail, http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n"+detail)
	})
	mux.Handle("GET "+AdminStatus, a.auth(a.status))
	mux.Handle("POST "+AdminRevoke, a.auth(a.revoke))
	mux.Handle("GET "+AdminRevocations, a.auth(a.revocationsSnapshot))
	mux.Handle("POST "+AdminVaultPut, a.auth(a.vaultPut))
	mux.Handle("POST "+AdminVaultRotate, a.auth(a.vaultRotate))
	mux.Handle("POST "+AdminVaultReplace, a.auth(a.vaultReplace))
	mux.Handle("POST "+AdminVaultRemove, a.auth(a.vaultRemove))
	mux.Handle("GET "+AdminVaultSnapshot, a.auth(a.vaultSnapshot))
	mux.Handle("GET "+AdminAuditSnapshot, a.auth(a.auditSnapshot))
	mux.Handle("POST "+AdminReload, a.auth(a.reload))
	mux.Handle("GET "+AdminPprof, a.auth(pprof.Index))
	mux.Handle("GET "+AdminPprof+"profile", a.auth(pprof.Profile))
	mux.Handle("GET "+AdminPprof+"trace", a.auth(pprof.Trace))
	return mux, nil
}

type admin struct{ opts AdminOptions }

type adminError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func adminFail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, adminError{Error: msg})
}

func (a *admin) auth(h http.HandlerFunc) http.Handler {
	want := []byte("Bearer " + a.opts.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stack-admin"`)
			adminFail(w, http.StatusUnauthorized, "admin token required (Authorization: Bearer <contents of admin.token>)")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxAdminRequestBody)
		h(w, r)
	})
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		adminFail(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	return true
}

// Status is the answer of /v1/status.
type Status struct {
	Home    string    `json:"home"`
	Started time.Time `json:"started,omitzero"`
}

func (a *admin) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, Status{Home: a.opts.Home})
}

// RevokeRequest is the body of /v1/passport/revoke: exactly one of JTI
// and Agent.
type RevokeRequest = control.RevokeRequest

func (a *admin) revoke(w http.ResponseWriter, r *http.Request) {
	if a.opts.Revocations == nil {
		adminFail(w, http.StatusServiceUnavailable, "no revocation store")
		return
	}
	var req RevokeRequest
	if !decode(w, r, &req) {
		return
	}
	var (
		rev passport.Revocation
		err error
	)
	switch {
	case (req.JTI == "") == (req.Agent == ""):
		adminFail(w, http.StatusBadRequest, "give exactly one of jti and agent")
		return
	case req.JTI != "":
		rev, err = a.opts.Revocations.RevokeJTI(req.JTI, req.Expiry, req.Reason)
	default:
		rev, err = a.opts.Revocations.RevokeAgent(req.Agent, req.Reason)
	}
	if err != nil {
		adminFail(w, http.StatusBadRequest, err.Error())
		return
	}
	if a.opts.Audit != nil {
		rec := audit.Record{Action: audit.ActionPassportRevoked, Reason: reason.RevokedByAdmin, Detail: req.Reason}
		if req.JTI != "" {
			rec.PassportJTI = req.JTI
		} else {
			rec.AgentID = req.Agent
		}
		if _, err := a.opts.Audit.Append(r.Context(), rec); err != nil {
			a.opts.Log.Error("audit append failed", zap.Error(err))
		}
	}
	writeJSON(w, http.StatusOK, rev)
}

// VaultWriteRequest is the body of /v1/vault/put, /v1/vault/replace,
// /v1/vault/rotate and /v1/vault/rm.
type VaultWriteRequest = control.VaultWriteRequest

func (a *admin) vaultPut(w http.ResponseWriter, r *http.Request) {
	a.vaultStore(w, r, (*vault.Vault).Put)
}

func (a *admin) vaultReplace(w http.ResponseWriter, r *http.Request) {
	a.vaultStore(w, r, (*vault.Vault).Replace)
}

// vaultStore serves put and replace: a secret with its hosts and render.
func (a *admin) vaultStore(w http.ResponseWriter, r *http.Request,
	store func(*vault.Vault, context.Context, string, []byte, vault.PutOptions) (*vault.Credential, error)) {
	var req VaultWriteRequest
	if a.opts.Store == nil || !decode(w, r, &req) {
		if a.opts.Store == nil {
			adminFail(w, http.StatusServiceUnavailable, "no vault")
		}
		return
	}
	opts, err := req.PutOptions()
	if err != nil {
		adminFail(w, http.StatusBadRequest, err.Error())
		return
	}
	c, err := store(a.opts.Store.Vault(), r.Context(), req.Name, req.Secret, opts)
	clear(req.Secret)
	a.afterVaultWrite(w, c, err)
}

func (a *admin) vaultRotate(w http.ResponseWriter, r *http.Request) {
	var req VaultWriteRequest
	if a.opts.Store == nil || !decode(w, r, &req) {
		if a.opts.Store == nil {
			adminFail(w, http.StatusServiceUnavailable, "no vault")
		}
		return
	}
	c, err := a.opts.Store.Vault().Rotate(r.Context(), req.Name, req.Secret)
	clear(req.Secret)
	a.afterVaultWrite(w, c, err)
}

func (a *admin) vaultRemove(w http.ResponseWriter, r *http.Request) {
	var req VaultWriteRequest
	if a.opts.Store == nil || !decode(w, r, &req) {
		if a.opts.Store == nil {
			adminFail(w, http.StatusServiceUnavailable, "no vault")
		}
		return
	}
	err := a.opts.Store.Vault().Delete(req.Name)
	a.afterVaultWrite(w, &vault.Credential{Name: req.Name}, err)
}

func (a *admin) afterVaultWrite(w http.ResponseWriter, c *vault.Credential, err error) {
	if err != nil {
		status := http.StatusBadRequest
		switch {
		case errors.Is(err, vault.ErrNotFound):
			status = http.StatusNotFound
		case errors.Is(err, vault.ErrExists):
			status = http.StatusConflict
		case errors.Is(err, vault.ErrKMSUnavailable):
			status = http.StatusServiceUnavailable
		}
		adminFail(w, status, err.Error())
		return
	}
	if err := a.opts.Store.Reload(); err != nil {
		adminFail(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *admin) vaultSnapshot(w http.ResponseWriter, _ *http.Request) {
	if a.opts.Store == nil {
		adminFail(w, http.StatusServiceUnavailable, "no vault")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := a.opts.Store.Vault().WriteSnapshot(w); err != nil {
		a.opts.Log.Warn("vault snapshot failed", zap.Error(err))
	}
}

func (a *admin) revocationsSnapshot(w http.ResponseWriter, _ *http.Request) {
	if a.opts.Revocations == nil {
		adminFail(w, http.StatusServiceUnavailable, "no revocation store")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := a.opts.Revocations.WriteSnapshot(w); err != nil {
		a.opts.Log.Warn("revocations snapshot failed", zap.Error(err))
	}
}

func (a *admin) auditSnapshot(w http.ResponseWriter, _ *http.Request) {
	if a.opts.Audit == nil {
		adminFail(w, http.StatusServiceUnavailable, "no audit log")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := a.opts.Audit.WriteSnapshot(w); err != nil {
		a.opts.Log.Warn("audit snapshot failed", zap.Error(err))
	}
}

func (a *admin) reload(w http.ResponseWriter, r *http.Request) {
	if a.opts.Reload == nil {
		adminFail(w, http.StatusNotImplemented, "reload not supported")
		return
	}
	if err := a.opts.Reload(r.Context()); err != nil {
		adminFail(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
}
