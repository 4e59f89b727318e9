package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/vault"
)

// leases hands the calling sidecar every credential its agent's scope
// grants: a static credential's secret for LeaseTTL, a minting kind's
// credential minted for the agent under each grant's narrowing, until it
// expires. Every lease is an audit record.
func (s *Server) leases(r *http.Request) (any, error) {
	c := callerOf(r)
	ctx := r.Context()
	a, err := s.checkSidecar(ctx, c.sidecar)
	if err != nil {
		return nil, err
	}
	var req LeasesRequest
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return nil, err
		}
	}
	out := LeasesResponse{Leases: []Lease{}}
	missing := func(name string) {
		if !slices.Contains(out.Missing, name) {
			out.Missing = append(out.Missing, name)
		}
	}
	abort := func(err error) (any, error) {
		for _, l := range out.Leases {
			clear(l.Secret)
		}
		if errors.Is(err, vault.ErrKMSUnavailable) {
			return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
		}
		return nil, err
	}
	exp := s.now().UTC().Add(s.opts.LeaseTTL)
	done := map[string]bool{}
	for _, w := range grantedCredentials(a.Scope) {
		if s.opts.Vault == nil {
			missing(w.name)
			continue
		}
		// One read: the kind decided on is the kind of the secret read.
		cred, secret, err := s.opts.Vault.Get(ctx, w.name)
		if errors.Is(err, vault.ErrNotFound) {
			missing(w.name)
			continue
		}
		if err != nil {
			return abort(err)
		}
		switch {
		case !cred.Minted():
			if done[w.name] {
				clear(secret)
				continue
			}
			done[w.name] = true
			out.Leases = append(out.Leases, Lease{Name: cred.Name, Hosts: cred.Hosts, Render: cred.Render,
				Fingerprint: cred.Fingerprint, Secret: secret, ExpiresAt: exp})
			s.leased(ctx, a.Name, c.sidecar.ID, cred, fmt.Sprintf("ttl %s", s.opts.LeaseTTL))
		case !req.Minted:
			// A sidecar that cannot tell narrowings apart could inject
			// one grant's token under another's.
			clear(secret)
			missing(w.name)
		default:
			l, err := s.mintLease(ctx, a.Name, cred, secret, w.narrow)
			clear(secret)
			switch {
			case errors.Is(err, mint.ErrNarrow):
				// The grant asks for more than the entry allows: never
				// mintable, so not retried soon, and refused as scope.
				// The refusal names only what the grant asked for.
				out.Leases = append(out.Leases, Lease{Name: cred.Name, Hosts: cred.Hosts, Render: cred.Render,
					Fingerprint: cred.Fingerprint, Kind: cred.Kind, Narrow: w.narrow.Key(), Refused: err.Error(), ExpiresAt: exp})
			case err != nil:
				// The issuer, or root material or parameters that do not
				// work: the detail is for the log, not the sidecar. The
				// others are still leased; the sidecar keeps what it holds
				// of this one until it expires, and asks again.
				s.log.Warn("credential not minted for a lease", zap.String("agent", a.Name),
					zap.String("credential", cred.Name), zap.String("kind", cred.Kind), zap.Error(err))
				out.Unavailable = append(out.Unavailable, LeaseKey{Name: cred.Name, Narrow: w.narrow.Key()})
			default:
				out.Leases = append(out.Leases, l)
				s.leased(ctx, a.Name, c.sidecar.ID, cred, fmt.Sprintf("minted %s, expires %s", cred.Kind, l.ExpiresAt.UTC().Format(time.RFC3339)))
			}
		}
	}
	return out, nil
}

// mintLease mints cred (whose root material is root) for agent under
// narrow, through the mint cache.
func (s *Server) mintLease(ctx context.Context, agent string, cred *vault.Credential, root []byte, narrow *passport.Narrowing) (Lease, error) {
	if s.opts.Mints == nil {
		return Lease{}, errors.New("this control plane does not mint")
	}
	key := mint.Key{Credential: cred.Name, Version: cred.Version, Created: cred.Created.UnixNano(), Agent: agent, Narrow: narrow.Key()}
	tok, err := s.opts.Mints.GetFresh(ctx, key, func(context.Context) (mint.Request, error) {
		return mint.Request{Kind: cred.Kind, Params: cred.Params, Root: bytes.Clone(root), Agent: agent, Narrow: narrow}, nil
	})
	if err != nil {
		return Lease{}, err
	}
	return Lease{Name: cred.Name, Hosts: cred.Hosts, Render: cred.Render, Fingerprint: cred.Fingerprint,
		Kind: cred.Kind, Narrow: key.Narrow, Secret: tok.Value, AWS: tok.AWS, ExpiresAt: tok.Expiry.UTC()}, nil
}

// leased counts and audits one lease.
func (s *Server) leased(ctx context.Context, agent, sidecar string, cred *vault.Credential, detail string) {
	s.opts.Metrics.leases.Inc()
	s.audit(ctx, audit.Record{Action: "credential_leased", AgentID: agent, CredentialID: cred.Name,
		CredentialFingerprint: cred.Fingerprint, Detail: fmt.Sprintf("sidecar %s, %s", sidecar, detail)})
}

// grantedCredential is one credential a scope grants, under one grant's
// narrowing.
type grantedCredential struct {
	name   string
	narrow *passport.Narrowing
}

// grantedCredentials lists the credentials scope grants, by name, once
// per distinct narrowing.
func grantedCredentials(scope passport.Scope) []grantedCredential {
	var out []grantedCredential
	seen := map[string]bool{}
	for _, g := range scope {
		for _, n := range g.Credentials {
			k := n + "\x00" + g.Narrow.Key()
			if !seen[k] {
				seen[k] = true
				out = append(out, grantedCredential{n, g.Narrow})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b grantedCredential) int { return strings.Compare(a.name, b.name) })
	return out
}

// VaultWriteRequest is the body of the vault endpoints (the sidecar
// admin API's too).
type VaultWriteRequest struct {
	Name   string   `json:"name"`
	Secret []byte   `json:"secret,omitempty"`
	Hosts  []string `json:"hosts,omitempty"`
	Render string   `json:"render,omitempty"`
	// Kind and Params describe a minting kind (see package mint); an
	// empty Kind is static.
	Kind   string          `json:"kind,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
}

// PutOptions are the vault's options the request carries, its render
// parsed.
func (r *VaultWriteRequest) PutOptions() (vault.PutOptions, error) {
	opts := vault.PutOptions{Hosts: r.Hosts, Kind: r.Kind, Params: r.Params}
	if r.Render == "" {
		return opts, nil // the kind's default, or refused by the vault
	}
	render, err := vault.ParseRender(r.Render)
	if err != nil {
		return vault.PutOptions{}, err
	}
	opts.Render = render
	return opts, nil
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
	opts, err := req.PutOptions()
	if err != nil {
		return nil, badRequest(err.Error())
	}
	c, err := put(s.opts.Vault, r.Context(), req.Name, req.Secret, opts)
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
	if s.opts.Mints != nil {
		s.opts.Mints.Drop(c.Name)
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
