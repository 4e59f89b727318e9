package proxy

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/stackctl/stack/inject"
	"github.com/stackctl/stack/vault"
)

// VaultStore serves the injector from a vault: credential metadata from an
// in-memory index (rebuilt by Reload, so a credential added while the proxy
// runs applies without a restart), secrets through the vault's cache and
// KMS.
type VaultStore struct {
	v     *vault.Vault
	index atomic.Pointer[storeIndex]
	// OnReload, when set, runs after each Reload that succeeded, for what
	// else depends on the vault's contents (the exfiltration detector's
	// index of secrets). Set it before the store is shared.
	OnReload func()
}

// NewVaultStore indexes v's credentials.
func NewVaultStore(v *vault.Vault) (*VaultStore, error) {
	s := &VaultStore{v: v}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload rebuilds the index from the vault.
func (s *VaultStore) Reload() error {
	creds, err := s.v.List()
	if err != nil {
		return fmt.Errorf("proxy: index vault: %w", err)
	}
	idx := &storeIndex{byName: make(map[string]inject.Credential, len(creds))}
	for _, c := range creds {
		idx.byName[c.Name] = toInject(c)
	}
	s.index.Store(idx)
	if s.OnReload != nil {
		s.OnReload()
	}
	return nil
}

// Vault returns the underlying vault.
func (s *VaultStore) Vault() *vault.Vault { return s.v }

// Credential implements inject.Store.
func (s *VaultStore) Credential(name string) (inject.Credential, bool) {
	c, ok := s.index.Load().byName[name]
	return c, ok
}

// Secret implements inject.Store.
func (s *VaultStore) Secret(ctx context.Context, name string) ([]byte, error) {
	return s.v.Secret(ctx, name)
}

// BoundCredentials implements inject.Store. The answer for a host is
// computed once per index: every request to a host asks for it.
func (s *VaultStore) BoundCredentials(host string) []inject.Credential {
	idx := s.index.Load()
	if v, ok := idx.bound.Load(host); ok {
		return v.([]inject.Credential)
	}
	var out []inject.Credential
	for _, c := range idx.byName {
		if c.BoundTo(host) {
			out = append(out, c)
		}
	}
	// Bounded: hosts come from requests.
	if idx.boundHosts.Add(1) <= maxBoundHosts {
		idx.bound.Store(host, out)
	}
	return out
}

// storeIndex is the vault's credentials as of the last Reload.
type storeIndex struct {
	byName map[string]inject.Credential
	// bound memoizes BoundCredentials by host, for at most maxBoundHosts
	// hosts.
	bound      sync.Map
	boundHosts atomic.Int64
}

const maxBoundHosts = 4096

func toInject(c *vault.Credential) inject.Credential {
	r := inject.Render{Name: c.Render.Name, Template: c.Render.Template}
	switch c.Render.Kind {
	case vault.RenderBearer:
		r.Kind = inject.Bearer
	case vault.RenderBasic:
		r.Kind = inject.Basic
	case vault.RenderHeader:
		r.Kind = inject.Header
	case vault.RenderQuery:
		r.Kind = inject.Query
	}
	return inject.Credential{Name: c.Name, Hosts: c.Hosts, Render: r, Fingerprint: c.Fingerprint}
}

// Bound returns the hosts credential name is bound to, for the
// exfiltration detector.
func (s *VaultStore) Bound(name string) ([]string, bool) {
	c, ok := s.Credential(name)
	return c.Hosts, ok
}
