package proxy

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/inject"
	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/vault"
)

// VaultStore serves the injector from a vault: credential metadata from an
// in-memory index (rebuilt by Reload, so a credential added while the proxy
// runs applies without a restart), secrets through the vault's cache and
// KMS, and short-lived credentials minted from a minting kind's root
// material through a mint cache.
type VaultStore struct {
	v     *vault.Vault
	mints *mint.Cache
	// reloading makes Reloads one at a time, so that a Reload that read
	// the vault before a write cannot replace the index of one that read
	// it after.
	reloading sync.Mutex
	index     atomic.Pointer[vaultIndex]
	// OnReload, when set, runs after each Reload that succeeded, for what
	// else depends on the vault's contents (the exfiltration detector's
	// index of secrets). Set it before the store is shared.
	OnReload func()
}

// vaultIndex is the vault's credentials as of the last Reload.
type vaultIndex struct {
	storeIndex
	creds map[string]*vault.Credential
}

// NewVaultStore indexes v's credentials; mints holds what is minted from
// them (nil: minting kinds are unavailable). The caller keeps ownership
// of both.
func NewVaultStore(v *vault.Vault, mints *mint.Cache) (*VaultStore, error) {
	s := &VaultStore{v: v, mints: mints}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload rebuilds the index from the vault.
func (s *VaultStore) Reload() error {
	s.reloading.Lock()
	defer s.reloading.Unlock()
	creds, err := s.v.List()
	if err != nil {
		return fmt.Errorf("proxy: index vault: %w", err)
	}
	idx := &vaultIndex{storeIndex: storeIndex{byName: make(map[string]inject.Credential, len(creds))},
		creds: make(map[string]*vault.Credential, len(creds))}
	for _, c := range creds {
		idx.byName[c.Name] = toInject(c)
		idx.creds[c.Name] = c
	}
	old := s.index.Swap(idx)
	if old != nil && s.mints != nil {
		// What was minted from a changed or removed version goes now,
		// not when it expires.
		for name, c := range old.creds {
			if n := idx.creds[name]; n == nil || n.Version != c.Version || !n.Created.Equal(c.Created) {
				s.mints.Drop(name)
			}
		}
	}
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

// Secret implements inject.Store: a static credential's secret, or a
// credential minted for the grant from a minting kind's root material
// (cached until shortly before it expires).
func (s *VaultStore) Secret(ctx context.Context, name string, g inject.Grant) (mint.Token, error) {
	c := s.index.Load().creds[name]
	if c == nil {
		return mint.Token{}, fmt.Errorf("proxy: credential %s: %w", name, vault.ErrNotFound)
	}
	if !c.Minted() {
		// The vault refuses a credential changed to a minting kind since
		// the index was built: root material is never injected.
		b, err := s.v.Secret(ctx, name)
		return mint.Token{Value: b}, err
	}
	if s.mints == nil {
		return mint.Token{}, fmt.Errorf("proxy: credential %s of kind %s: this sidecar does not mint", name, c.Kind)
	}
	key := mint.Key{Credential: name, Version: c.Version, Created: c.Created.UnixNano(), Agent: g.Agent, Narrow: g.Narrow.Key()}
	return s.mints.Get(ctx, key, func(ctx context.Context) (mint.Request, error) {
		vc, root, err := s.v.Get(ctx, name)
		if err != nil {
			return mint.Request{}, err
		}
		if vc.Version != c.Version || !vc.Created.Equal(c.Created) {
			// Cached under the version the index names: mint from that
			// one only.
			clear(root)
			return mint.Request{}, fmt.Errorf("proxy: credential %s changed; the index is being rebuilt", name)
		}
		return mint.Request{Kind: vc.Kind, Params: vc.Params, Root: root, Agent: g.Agent, Narrow: g.Narrow}, nil
	})
}

// BoundCredentials implements inject.Store.
func (s *VaultStore) BoundCredentials(host string) []inject.Credential {
	return s.index.Load().boundTo(host)
}

// boundTo lists the credentials bound to host. The answer for a host is
// computed once per index: every request to a host asks for it.
func (idx *storeIndex) boundTo(host string) []inject.Credential {
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
	case vault.RenderSigV4:
		r.Kind = inject.SigV4
	}
	return inject.Credential{Name: c.Name, Hosts: c.Hosts, Render: r, Fingerprint: c.Fingerprint, Kind: c.Kind}
}

// Bound returns the hosts credential name is bound to, for the
// exfiltration detector.
func (s *VaultStore) Bound(name string) ([]string, bool) {
	c, ok := s.Credential(name)
	return c.Hosts, ok
}

// LeaseStore serves the injector from the credentials a control plane
// leased to this sidecar: held in memory only, each usable until its
// lease expires, all dropped at once on revocation (Set(nil)).
type LeaseStore struct {
	index atomic.Pointer[leaseIndex]
	now   func() time.Time
	// OnReload, when set, runs after each Set, for what else depends on
	// the credentials (the exfiltration detector's index of secrets).
	OnReload func(secrets map[string][]byte)
}

type leaseIndex struct {
	storeIndex
	// leases holds each credential's leases: one for a static
	// credential, one per narrowing for a minted one.
	leases map[string][]control.Lease
	count  int
}

// NewLeaseStore returns an empty store; now is the clock (nil: time.Now).
func NewLeaseStore(now func() time.Time) *LeaseStore {
	if now == nil {
		now = time.Now
	}
	s := &LeaseStore{now: now}
	s.Set(nil)
	return s
}

// Set replaces every lease.
func (s *LeaseStore) Set(leases []control.Lease) {
	idx := &leaseIndex{storeIndex: storeIndex{byName: make(map[string]inject.Credential, len(leases))},
		leases: make(map[string][]control.Lease, len(leases))}
	secrets := make(map[string][]byte, len(leases))
	for _, l := range leases {
		idx.byName[l.Name] = toInject(&vault.Credential{Name: l.Name, Hosts: l.Hosts, Render: l.Render, Fingerprint: l.Fingerprint, Kind: l.KindName()})
		idx.leases[l.Name] = append(idx.leases[l.Name], l)
		if l.Refused == "" {
			idx.count++
		}
		if !mint.Minted(l.Kind) {
			// A minted token is never the agent's to hold: only a
			// static secret can leak from the agent's side.
			secrets[l.Name] = l.Secret
		}
	}
	s.index.Store(idx)
	if s.OnReload != nil {
		s.OnReload(secrets)
	}
}

// Len is the number of leases held (a refused narrowing holds none).
func (s *LeaseStore) Len() int { return s.index.Load().count }

// Credential implements inject.Store.
func (s *LeaseStore) Credential(name string) (inject.Credential, bool) {
	c, ok := s.index.Load().byName[name]
	return c, ok
}

// Secret implements inject.Store: the leased secret or minted credential
// for the grant's narrowing, until its lease expires.
func (s *LeaseStore) Secret(_ context.Context, name string, g inject.Grant) (mint.Token, error) {
	var l *control.Lease
	// The narrowing's key costs a hash: only a minted lease needs it.
	narrow, keyed := "", false
	leases := s.index.Load().leases[name]
	for i := range leases {
		if mint.Minted(leases[i].Kind) {
			if !keyed {
				narrow, keyed = g.Narrow.Key(), true
			}
			if leases[i].Narrow != narrow {
				continue
			}
		}
		l = &leases[i]
		break
	}
	if l == nil {
		return mint.Token{}, fmt.Errorf("proxy: no lease of credential %s for this grant: %w", name, vault.ErrNotFound)
	}
	if l.Refused != "" {
		return mint.Token{}, fmt.Errorf("proxy: credential %s: %w: %s", name, mint.ErrNarrow, l.Refused)
	}
	if !s.now().Before(l.ExpiresAt) {
		return mint.Token{}, fmt.Errorf("proxy: the lease of credential %s expired at %s and the control plane has not renewed it",
			name, l.ExpiresAt.UTC().Format(time.RFC3339))
	}
	tok := mint.Token{Value: l.Secret, AWS: l.AWS}
	if mint.Minted(l.Kind) {
		tok.Expiry = l.ExpiresAt
	}
	return tok, nil
}

// BoundCredentials implements inject.Store.
func (s *LeaseStore) BoundCredentials(host string) []inject.Credential {
	return s.index.Load().boundTo(host)
}

// Bound returns the hosts credential name is bound to, for the
// exfiltration detector.
func (s *LeaseStore) Bound(name string) ([]string, bool) {
	c, ok := s.Credential(name)
	return c.Hosts, ok
}
