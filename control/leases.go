package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/vault"
)

// leases hands the calling sidecar every credential its agent's scope
// grants, each for LeaseTTL; every lease is an audit record.
func (s *Server) leases(r *http.Request) (any, error) {
	c := callerOf(r)
	ctx := r.Context()
	a, err := s.checkSidecar(ctx, c.sidecar)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, g := range a.Scope {
		names = append(names, g.Credentials...)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	out := LeasesResponse{Leases: []Lease{}}
	if s.opts.Vault == nil {
		out.Missing = names
		return out, nil
	}
	exp := s.now().UTC().Add(s.opts.LeaseTTL)
	for _, n := range names {
		cred, secret, err := s.opts.Vault.Get(ctx, n)
		if errors.Is(err, vault.ErrNotFound) {
			out.Missing = append(out.Missing, n)
			continue
		}
		if err != nil {
			for _, l := range out.Leases {
				clear(l.Secret)
			}
			if errors.Is(err, vault.ErrKMSUnavailable) {
				return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
			}
			return nil, err
		}
		out.Leases = append(out.Leases, Lease{Name: cred.Name, Hosts: cred.Hosts, Render: cred.Render,
			Fingerprint: cred.Fingerprint, Secret: secret, ExpiresAt: exp})
		s.opts.Metrics.leases.Inc()
		s.audit(ctx, audit.Record{Action: "credential_leased", AgentID: a.Name, CredentialID: cred.Name,
			CredentialFingerprint: cred.Fingerprint,
			Detail:                fmt.Sprintf("sidecar %s, ttl %s", c.sidecar.ID, s.opts.LeaseTTL)})
	}
	return out, nil
}

// VaultWriteRequest is the body of the vault endpoints (the sidecar
// admin API's too).
type VaultWriteRequest struct {
	Name   string   `json:"name"`
	Secret []byte   `json:"secret,omitempty"`
	Hosts  []string `json:"hosts,omitempty"`
	Render string   `json:"render,omitempty"`
}

func (s *Server) vaultPut(r *http.Request) (any, error) {
	return s.vaultStore(r, (*vault.Vault).Put)
}

func (s *Server) vaultReplace(r *http.Request) (any, error) {
	return s.vaultStore(r, (*vault.Vault).Replace)
}

func (s *Server) vaultStore(r *http.Request,
	put func(*vault.Vault, context.Context, string, []byte, vault.PutOptions) (*vault.Credential, error)) (any, error) {
	var req VaultWriteRequest
	if err := s.vaultRequest(r, &req); err != nil {
		return nil, err
	}
	defer clear(req.Secret)
	render, err := vault.ParseRender(req.Render)
	if err != nil {
		return nil, badRequest(err.Error())
	}
	c, err := put(s.opts.Vault, r.Context(), req.Name, req.Secret, vault.PutOptions{Hosts: req.Hosts, Render: render})
	return s.afterVaultWrite(r.Context(), c, err)
}

func (s *Server) vaultRotate(r *http.Request) (any, error) {
	var req VaultWriteRequest
	if err := s.vaultRequest(r, &req); err != nil {
		return nil, err
	}
	defer clear(req.Secret)
	c, err := s.opts.Vault.Rotate(r.Context(), req.Name, req.Secret)
	return s.afterVaultWrite(r.Context(), c, err)
}

func (s *Server) vaultRemove(r *http.Request) (any, error) {
	var req VaultWriteRequest
	if err := s.vaultRequest(r, &req); err != nil {
		return nil, err
	}
	err := s.opts.Vault.Delete(req.Name)
	return s.afterVaultWrite(r.Context(), &vault.Credential{Name: req.Name}, err)
}

func (s *Server) vaultRequest(r *http.Request, req *VaultWriteRequest) error {
	if s.opts.Vault == nil {
		return fail(http.StatusServiceUnavailable, ReasonUnavailable, "this control plane has no vault")
	}
	return decode(r, req)
}

// afterVaultWrite tells the feed the credential changed, so sidecars
// holding a lease of it renew it at once.
func (s *Server) afterVaultWrite(ctx context.Context, c *vault.Credential, err error) (any, error) {
	if err != nil {
		switch {
		case errors.Is(err, vault.ErrNotFound):
			return nil, fail(http.StatusNotFound, ReasonNotFound, err.Error())
		case errors.Is(err, vault.ErrExists):
			return nil, fail(http.StatusConflict, ReasonConflict, err.Error())
		case errors.Is(err, vault.ErrKMSUnavailable):
			return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
		}
		return nil, badRequest(err.Error())
	}
	if _, err := s.store.Put(ctx, prefixVault+c.Name, []byte(fmt.Sprintf(`{"changed":%q}`, s.now().UTC().Format(time.RFC3339Nano)))); err != nil {
		return nil, err
	}
	return c, nil
}

func (s *Server) vaultSnapshot(r *http.Request) (any, error) {
	if s.opts.Vault == nil {
		return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, "this control plane has no vault")
	}
	w := r.Context().Value(writerKey{}).(http.ResponseWriter)
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := s.opts.Vault.WriteSnapshot(w); err != nil {
		// The client gets a short file, which fails its checks.
		s.log.Warn("vault snapshot failed", zap.Error(err))
	}
	return streamed, nil
}

// vaultList lists the vault's credentials, never their secrets.
func (s *Server) vaultList(*http.Request) (any, error) {
	if s.opts.Vault == nil {
		return []*vault.Credential{}, nil
	}
	creds, err := s.opts.Vault.List()
	if err != nil {
		return nil, err
	}
	if creds == nil {
		creds = []*vault.Credential{}
	}
	return creds, nil
}
