package vault

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/hostmatch"
	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/vault/kms"
)

// Defaults of Options.
const (
	DefaultCacheTTL    = 60 * time.Second
	DefaultCacheSize   = 1024
	DefaultOpenTimeout = time.Second
)

// vaultFormat is stored under meta/format; a vault of another format is
// refused rather than misread.
const vaultFormat = "1"

// saltAAD binds the wrapped fingerprint salt to its purpose.
var saltAAD = []byte("stack-vault/v1/fingerprint-salt")

// FingerprintSaltName is the CheckResult name of the vault's fingerprint
// salt (not a valid credential name, so it cannot collide with one).
const FingerprintSaltName = "(fingerprint-salt)"

// Options configure Open and OpenStore.
type Options struct {
	// CacheTTL is how long a decrypted secret is served from memory.
	// Zero means DefaultCacheTTL; negative turns the cache off.
	CacheTTL time.Duration
	// CacheSize bounds the number of cached secrets. Zero means
	// DefaultCacheSize; negative turns the cache off.
	CacheSize int
	// Now is the clock for cache expiry and creation times; nil means
	// time.Now.
	Now func() time.Time
	// OpenTimeout bounds the wait for the file lock another process holds.
	// Zero means DefaultOpenTimeout. OpenStore does not use it.
	OpenTimeout time.Duration
	// ReadOnly opens the file with a shared lock (the file must exist);
	// changes fail with ErrReadOnly.
	ReadOnly bool
}

// Credential describes one credential. It never holds the secret.
type Credential struct {
	// Name identifies the credential; agents see the placeholder stk_ph_NAME.
	Name string `json:"name"`
	// Hosts are the normalized hosts the secret may be sent to.
	Hosts []string `json:"hosts"`
	// Render is how the secret goes into a request.
	Render Render `json:"render"`
	// Version counts from 1 and grows with each Rotate.
	Version int `json:"version"`
	// Created is when this version was stored.
	Created time.Time `json:"created"`
	// Fingerprint identifies the secret in logs and audit records without
	// revealing it (see the package doc). For a minting kind, the secret
	// is the root material.
	Fingerprint string `json:"fingerprint"`
	// Kind is static (the secret is what is injected) or a minting kind
	// (the secret is root material short-lived credentials are minted
	// from; see package mint).
	Kind string `json:"kind"`
	// Params are a minting kind's parameters, as package mint normalized
	// them; never secret.
	Params json.RawMessage `json:"params,omitempty"`
}

// sameAs reports whether c describes the stored record r.
func (c *Credential) sameAs(r *record) bool {
	return c.Version == r.Version && c.Fingerprint == r.Fingerprint && c.Created.Equal(r.Created) &&
		c.Render.String() == r.Render && slices.Equal(c.Hosts, r.Hosts) &&
		c.Kind == kindName(r.Kind) && bytes.Equal(c.Params, r.Params)
}

func (c *Credential) clone() *Credential {
	d := *c
	d.Hosts = slices.Clone(c.Hosts)
	d.Params = bytes.Clone(c.Params)
	return &d
}

// Minted reports whether the credential mints short-lived credentials
// from its secret rather than injecting the secret itself.
func (c *Credential) Minted() bool { return mint.Minted(c.Kind) }

// BoundTo reports whether the secret may be sent to host (as a request
// names it, port and all).
func (c *Credential) BoundTo(host string) bool {
	return hostmatch.MatchAny(c.Hosts, host)
}

// PutOptions are a new credential's attributes besides its secret.
type PutOptions struct {
	// Hosts the secret may be sent to, as hostmatch patterns
	// (api.stripe.com, *.stripe.com); at least one.
	Hosts []string
	// Render is how the secret goes into a request. A minting kind's may
	// be left zero: aws-sts then re-signs (sigv4), the others send a
	// bearer token.
	Render Render
	// Kind is the credential's kind; "" is static. A minting kind's
	// secret is its root material, checked with Params by mint.Check.
	Kind string
	// Params are a minting kind's parameters (see package mint).
	Params json.RawMessage
}

// CheckResult is the outcome of checking one record.
type CheckResult struct {
	// Name is the credential, or FingerprintSaltName.
	Name string
	// Version is the credential's version (0 for the salt or an
	// undecodable record).
	Version int
	// Err is nil when the record unwraps and its secret authenticates.
	Err error
}

// Vault stores credentials, each secret encrypted under its own data key
// wrapped by a KMS, in a bbolt file (Open) or a control store shared by
// replicas (OpenStore). It is safe for concurrent use.
type Vault struct {
	recs records
	opts Options
	// shared is set when other processes write the same records (a
	// control store): the cache is then checked against what is stored.
	shared bool
	cache  *cache

	// mu guards kms: Rewrap holds it exclusively so that no Put, Rotate
	// or uncached Get runs with a KMS the records no longer match.
	mu  sync.RWMutex
	kms kms.KMS

	saltMu sync.Mutex
	salt   []byte

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating unless opts.ReadOnly) the vault at path, whose
// records are wrapped by k. The caller keeps ownership of k.
func Open(path string, k kms.KMS, opts Options) (*Vault, error) {
	if k == nil {
		return nil, vaultErr("open", "", errors.New("no KMS"))
	}
	opts = opts.withDefaults()
	recs, err := openBolt(path, opts.OpenTimeout, opts.ReadOnly)
	if err != nil {
		return nil, vaultErr("open", "", err)
	}
	return newVault(recs, k, opts), nil
}

// OpenStore opens the vault kept in s under StorePrefix, whose records are
// wrapped by k, creating it unless opts.ReadOnly. Every Vault opened on
// one store (a replica of the control plane each) reads and writes the
// same records; changes are compare-and-swaps, so none is lost to another
// replica's. The caller keeps ownership of s and k.
func OpenStore(ctx context.Context, s store.Store, k kms.KMS, opts Options) (*Vault, error) {
	switch {
	case s == nil:
		return nil, vaultErr("open", "", errors.New("no store"))
	case k == nil:
		return nil, vaultErr("open", "", errors.New("no KMS"))
	}
	opts = opts.withDefaults()
	recs, err := openStoreRecords(ctx, s, opts.ReadOnly)
	if err != nil {
		return nil, vaultErr("open", "", fmt.Errorf("control store %s: %w", StorePrefix, err))
	}
	v := newVault(recs, k, opts)
	v.shared = true
	return v, nil
}

func (o Options) withDefaults() Options {
	if o.CacheTTL == 0 {
		o.CacheTTL = DefaultCacheTTL
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = DefaultOpenTimeout
	}
	return o
}

func newVault(recs records, k kms.KMS, opts Options) *Vault {
	return &Vault{recs: recs, opts: opts, kms: k, cache: newCache(opts.CacheTTL, opts.CacheSize, opts.Now)}
}

// KMS returns the KMS the vault's records are wrapped under (the one given
// to Open, or to the last successful Rewrap).
func (v *Vault) KMS() kms.KMS {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.kms
}

// Path returns the vault's file, or "" for a vault in a control store.
func (v *Vault) Path() string { return v.recs.path() }

func (v *Vault) usable(write bool) error {
	if v.closed.Load() {
		return ErrClosed
	}
	if write && v.opts.ReadOnly {
		return ErrReadOnly
	}
	return nil
}

// Put stores a new credential at version 1. The name must not exist
// (ErrExists; use Rotate).
func (v *Vault) Put(ctx context.Context, name string, secret []byte, opts PutOptions) (*Credential, error) {
	const op = "put"
	if err := v.usable(true); err != nil {
		return nil, vaultErr(op, name, err)
	}
	if err := ValidateName(name); err != nil {
		return nil, vaultErr(op, name, err)
	}
	hosts, params, err := checkPut(secret, &opts)
	if err != nil {
		return nil, vaultErr(op, name, err)
	}
	// Fail before any KMS call when the name is taken.
	if _, _, err := v.recs.get(ctx, name); err == nil {
		return nil, vaultErr(op, name, ErrExists)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, vaultErr(op, name, err)
	}

	v.mu.RLock()
	defer v.mu.RUnlock()
	r := &record{Name: name, Version: 1, Hosts: hosts, Render: opts.Render.String(), Kind: storedKind(opts.Kind), Params: params}
	if err := v.build(ctx, r, secret); err != nil {
		return nil, vaultErr(op, name, err)
	}
	data, err := r.encode()
	if err != nil {
		return nil, vaultErr(op, name, err)
	}
	err = v.recs.apply(ctx, []change{{name: name, rev: 0, data: data}})
	if errors.Is(err, ErrConflict) {
		err = ErrExists // created meanwhile, by another replica or call
	}
	if err != nil {
		return nil, vaultErr(op, name, err)
	}
	v.cache.remove(name)
	return r.credential(), nil
}

// checkPut checks what Put and Replace store besides the name, and
// returns the hosts and a minting kind's parameters normalized.
func checkPut(secret []byte, opts *PutOptions) ([]string, json.RawMessage, error) {
	hosts, err := NormalizeHosts(opts.Hosts)
	if err != nil {
		return nil, nil, err
	}
	if opts.Render.IsZero() {
		opts.Render = defaultRender(kindName(opts.Kind))
	}
	if err := opts.Render.Validate(); err != nil {
		return nil, nil, err
	}
	params, err := checkMaterial(kindName(opts.Kind), opts.Params, secret, opts.Render)
	if err != nil {
		return nil, nil, err
	}
	return hosts, params, nil
}

// defaultRender is a minting kind's render when none is given: aws-sts
// re-signs, the others send a bearer token. A static credential has none.
func defaultRender(kind string) Render {
	switch {
	case kind == mint.KindAWS:
		return Render{Kind: RenderSigV4}
	case mint.Minted(kind):
		return Render{Kind: RenderBearer}
	}
	return Render{}
}

// checkMaterial checks a secret against its kind: a static secret must
// render safely; a minting kind's root material and parameters are its
// kind's to check (mint.Check), which returns the parameters normalized.
func checkMaterial(kind string, params json.RawMessage, secret []byte, render Render) (json.RawMessage, error) {
	if !mint.Known(kind) {
		return nil, invalid("unknown kind %q: want one of %v", kind, mint.Kinds)
	}
	if !mint.Minted(kind) {
		if err := checkKind(kind, params, render); err != nil {
			return nil, err
		}
		return nil, validateSecret(secret, render)
	}
	switch {
	case len(secret) == 0:
		return nil, invalid("empty root material")
	case len(secret) > maxSecret:
		return nil, invalid("root material longer than %d bytes", maxSecret)
	}
	norm, err := mint.Check(kind, params, secret)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if err := checkKind(kind, norm, render); err != nil {
		return nil, err
	}
	return norm, nil
}

// Replace stores a new version (version+1) of an existing credential with
// a new secret, hosts and render form, checked as Put checks them. As with
// Rotate, the previous version's data key and ciphertext are deleted in
// the same transaction. A missing name is ErrNotFound.
func (v *Vault) Replace(ctx context.Context, name string, secret []byte, opts PutOptions) (*Credential, error) {
	const op = "replace"
	if err := v.usable(true); err != nil {
		return nil, vaultErr(op, name, err)
	}
	hosts, params, err := checkPut(secret, &opts)
	if err != nil {
		return nil, vaultErr(op, name, err)
	}
	return v.nextVersion(ctx, op, name, secret, func(old *record) (*record, error) {
		return &record{Name: name, Version: old.Version + 1, Hosts: hosts, Render: opts.Render.String(),
			Kind: storedKind(opts.Kind), Params: params}, nil
	})
}

// Rotate replaces a credential's secret with a new version (version+1),
// keeping its hosts, render form, kind and parameters (a minting kind's
// new root material is checked against them). The previous version is
// dropped: its
// data key and ciphertext are deleted in the same transaction, so a
// rotated-out secret cannot be read back from the vault.
func (v *Vault) Rotate(ctx context.Context, name string, secret []byte) (*Credential, error) {
	const op = "rotate"
	if err := v.usable(true); err != nil {
		return nil, vaultErr(op, name, err)
	}
	return v.nextVersion(ctx, op, name, secret, func(old *record) (*record, error) {
		render, _ := ParseRender(old.Render)
		params, err := checkMaterial(kindName(old.Kind), old.Params, secret, render)
		if err != nil {
			return nil, err
		}
		return &record{Name: name, Version: old.Version + 1, Hosts: old.Hosts, Render: old.Render,
			Kind: old.Kind, Params: params}, nil
	})
}

// maxVersionTries bounds how often nextVersion starts again after another
// writer changed the credential first; each try costs a KMS call.
const maxVersionTries = 16

// nextVersion stores the record next makes from name's current one, with
// secret. When another change to name comes in between (another call, or
// another replica on the same store), it starts again from that change, so
// that every Rotate and Replace gets a version of its own and none is
// lost; after maxVersionTries it gives up with ErrConflict. The previous
// version's data key and ciphertext are replaced in the same write.
func (v *Vault) nextVersion(ctx context.Context, op, name string, secret []byte, next func(old *record) (*record, error)) (*Credential, error) {
	for try := 1; ; try++ {
		c, err := v.tryNextVersion(ctx, name, secret, next)
		if errors.Is(err, ErrConflict) && try < maxVersionTries && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return nil, vaultErr(op, name, err)
		}
		return c, nil
	}
}

func (v *Vault) tryNextVersion(ctx context.Context, name string, secret []byte, next func(old *record) (*record, error)) (*Credential, error) {
	old, rev, err := v.readRecord(ctx, name)
	if err != nil {
		return nil, err
	}
	r, err := next(old)
	if err != nil {
		return nil, err
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	if err := v.build(ctx, r, secret); err != nil {
		return nil, err
	}
	data, err := r.encode()
	if err != nil {
		return nil, err
	}
	err = v.recs.apply(ctx, []change{{name: name, rev: rev, data: data}})
	if errors.Is(err, ErrConflict) {
		// Gone meanwhile: say so rather than try again.
		if _, _, gerr := v.recs.get(ctx, name); errors.Is(gerr, ErrNotFound) {
			err = ErrNotFound
		}
	}
	if err != nil {
		return nil, err
	}
	v.cache.remove(name)
	return r.credential(), nil
}

// build fills r's creation time, fingerprint, wrapped data key and
// ciphertext. The caller holds v.mu for reading.
func (v *Vault) build(ctx context.Context, r *record, secret []byte) error {
	salt, err := v.fingerprintSalt(ctx)
	if err != nil {
		return err
	}
	r.Format = recordFormat
	r.Created = v.opts.Now().UTC().Round(0)
	r.Fingerprint = fingerprint(salt, secret)
	r.KMS = v.kms.URI()

	dek := make([]byte, dekSize+nonceSize)
	if _, err := rand.Read(dek); err != nil {
		return err
	}
	defer clear(dek)
	key, nonce := dek[:dekSize], bytes.Clone(dek[dekSize:])
	wrapped, err := v.kms.Wrap(ctx, key, dekAAD(r.Name, r.Version))
	if err != nil {
		return err
	}
	r.WrappedKey = wrapped
	return r.seal(key, nonce, secret)
}

// fingerprint is "hmac-sha256:" and the first 12 bytes of
// HMAC-SHA256(salt, secret), hex.
func fingerprint(salt, secret []byte) string {
	m := hmac.New(sha256.New, salt)
	m.Write(secret)
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil)[:12])
}

// Fingerprint computes the fingerprint secret would have in this vault,
// e.g. to recognise a leaked secret in an audit record. It needs the KMS
// once to unwrap the vault's fingerprint salt.
func (v *Vault) Fingerprint(ctx context.Context, secret []byte) (string, error) {
	if err := v.usable(false); err != nil {
		return "", vaultErr("fingerprint", "", err)
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	salt, err := v.fingerprintSalt(ctx)
	if err != nil {
		return "", vaultErr("fingerprint", "", err)
	}
	return fingerprint(salt, secret), nil
}

type saltRecord struct {
	Format  int    `json:"format"`
	KMS     string `json:"kms"`
	Wrapped []byte `json:"wrapped"`
}

// fingerprintSalt returns the vault's salt, creating it on first use. The
// caller holds v.mu for reading.
func (v *Vault) fingerprintSalt(ctx context.Context) ([]byte, error) {
	v.saltMu.Lock()
	defer v.saltMu.Unlock()
	if v.salt != nil {
		return v.salt, nil
	}
	for {
		stored, _, err := v.recs.meta(ctx, metaSalt)
		if err != nil {
			return nil, err
		}
		if stored != nil {
			salt, err := v.unwrapSalt(ctx, v.kms, stored)
			if err != nil {
				return nil, err
			}
			v.salt = salt
			return salt, nil
		}
		if v.opts.ReadOnly {
			return nil, ErrReadOnly
		}
		salt := make([]byte, 32)
		if _, err := rand.Read(salt); err != nil {
			return nil, err
		}
		wrapped, err := v.kms.Wrap(ctx, salt, saltAAD)
		if err != nil {
			return nil, err
		}
		data, err := json.Marshal(saltRecord{Format: recordFormat, KMS: v.kms.URI(), Wrapped: wrapped})
		if err != nil {
			return nil, err
		}
		err = v.recs.apply(ctx, []change{{meta: true, name: metaSalt, rev: 0, data: data}})
		if errors.Is(err, ErrConflict) {
			// Another replica made one meanwhile: every fingerprint must
			// come from one salt, so use that one.
			clear(salt)
			continue
		}
		if err != nil {
			return nil, err
		}
		v.salt = salt
		return salt, nil
	}
}

func (v *Vault) unwrapSalt(ctx context.Context, k kms.KMS, stored []byte) ([]byte, error) {
	var sr saltRecord
	if err := json.Unmarshal(stored, &sr); err != nil || sr.Format != recordFormat || len(sr.Wrapped) == 0 {
		return nil, corrupt("fingerprint salt record undecodable")
	}
	salt, err := k.Unwrap(ctx, sr.Wrapped, saltAAD)
	if err != nil {
		return nil, fmt.Errorf("fingerprint salt (wrapped under %s): %w", sr.KMS, err)
	}
	if len(salt) != 32 {
		return nil, corrupt("fingerprint salt of %d bytes", len(salt))
	}
	return salt, nil
}

// validateSecret refuses secrets that could not be rendered safely:
// control characters would let a stored secret split an HTTP header.
func validateSecret(secret []byte, render Render) error {
	switch {
	case len(secret) == 0:
		return invalid("empty secret")
	case len(secret) > maxSecret:
		return invalid("secret longer than %d bytes", maxSecret)
	}
	for _, c := range secret {
		if c < 0x20 || c == 0x7f {
			return invalid("secret contains a control character (newline, NUL...)")
		}
	}
	if render.Kind == RenderBasic && !bytes.Contains(secret, []byte(":")) {
		return invalid("render basic needs a secret of the form user:password")
	}
	return nil
}

// readRecord reads and decodes the record stored under name, and returns
// its revision.
func (v *Vault) readRecord(ctx context.Context, name string) (*record, int64, error) {
	data, rev, err := v.recs.get(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	r, err := decodeRecord(name, data)
	if err != nil {
		return nil, 0, err
	}
	return r, rev, nil
}

// Get returns a credential and its secret. A secret decrypted within the
// last CacheTTL is served from memory without the KMS, even while the KMS
// is down; any other fails closed with ErrKMSUnavailable naming the KMS
// URI. The returned secret is a copy the caller may clear.
//
// A vault in a control store reads the record on every Get, since another
// replica may have changed it, and uses the cached secret only while it is
// that record's: a rotation through any replica is seen at once.
func (v *Vault) Get(ctx context.Context, name string) (*Credential, []byte, error) {
	const op = "get"
	if err := v.usable(false); err != nil {
		return nil, nil, vaultErr(op, name, err)
	}
	if !v.shared {
		if cred, secret, ok := v.cache.get(name); ok {
			return cred, secret, nil
		}
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	r, _, err := v.readRecord(ctx, name)
	if err != nil {
		v.cache.remove(name)
		return nil, nil, vaultErr(op, name, err)
	}
	if v.shared {
		if cred, secret, ok := v.cache.get(name); ok {
			if cred.sameAs(r) {
				return cred, secret, nil
			}
			clear(secret)
			v.cache.remove(name)
		}
	}
	secret, err := v.decrypt(ctx, v.kms, r)
	if err != nil {
		return nil, nil, vaultErr(op, name, err)
	}
	cred := r.credential()
	v.cache.put(cred, secret)
	return cred, secret, nil
}

// Secret returns the secret of the static credential name, as Get does,
// without its metadata. The root material of a minting kind is never
// injected as it is: asking for it here is an error (Get has it, for
// minting).
func (v *Vault) Secret(ctx context.Context, name string) ([]byte, error) {
	if err := v.usable(false); err != nil {
		return nil, vaultErr("get", name, err)
	}
	if !v.shared {
		if secret, kind, ok := v.cache.secret(name); ok {
			if mint.Minted(kind) {
				clear(secret)
				return nil, vaultErr("get", name, invalid("kind %s: its secret is root material, never injected", kind))
			}
			return secret, nil
		}
	}
	cred, secret, err := v.Get(ctx, name)
	if err == nil && cred.Minted() {
		clear(secret)
		return nil, vaultErr("get", name, invalid("kind %s: its secret is root material, never injected", cred.Kind))
	}
	return secret, err
}

// decrypt unwraps r's data key with k and opens the secret.
func (v *Vault) decrypt(ctx context.Context, k kms.KMS, r *record) ([]byte, error) {
	dek, err := v.unwrapKey(ctx, k, r)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	return r.open(dek)
}

func (v *Vault) unwrapKey(ctx context.Context, k kms.KMS, r *record) ([]byte, error) {
	dek, err := k.Unwrap(ctx, r.WrappedKey, dekAAD(r.Name, r.Version))
	if err != nil {
		if errors.Is(err, kms.ErrUnwrap) && r.KMS != k.URI() {
			return nil, fmt.Errorf("data key was wrapped under %s: %w", r.KMS, err)
		}
		return nil, fmt.Errorf("data key: %w", err)
	}
	return dek, nil
}

// noCtxTimeout bounds the store calls of List and Delete, which take no
// context: an unreachable control store fails them rather than hang.
const noCtxTimeout = 30 * time.Second

// List returns every credential, sorted by name, without secrets and
// without the KMS. A record that cannot be decoded fails the listing with
// ErrCorrupt naming it (Check reports every record; Delete removes one).
func (v *Vault) List() ([]*Credential, error) {
	const op = "list"
	if err := v.usable(false); err != nil {
		return nil, vaultErr(op, "", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), noCtxTimeout)
	defer cancel()
	recs, _, err := v.recs.list(ctx)
	if err != nil {
		return nil, vaultErr(op, "", err)
	}
	var out []*Credential
	for _, s := range recs {
		r, err := decodeRecord(s.name, s.data)
		if err != nil {
			return nil, vaultErr(op, s.name, err)
		}
		out = append(out, r.credential())
	}
	return out, nil
}

// Delete removes a credential and every trace of its secret from the
// vault (freed bbolt pages may keep the ciphertext, never the plaintext).
func (v *Vault) Delete(name string) error {
	const op = "delete"
	if err := v.usable(true); err != nil {
		return vaultErr(op, name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), noCtxTimeout)
	defer cancel()
	err := v.recs.delete(ctx, name)
	v.cache.remove(name)
	if err != nil {
		return vaultErr(op, name, err)
	}
	return nil
}

// Rewrap re-wraps every data key (and the fingerprint salt) under to.
// Secrets' ciphertexts are not touched; each is authenticated with its
// data key before the key is rewrapped, so a damaged record aborts the
// rewrap before anything is written. The records are written in one
// transaction: either every record is rewrapped or none is. On success
// the vault uses to from then on; the caller keeps ownership of both
// KMSes. It returns the number of credentials rewrapped. A vault in a
// control store is refused (errShared): its replicas would have to switch
// KMS keys at the same instant.
func (v *Vault) Rewrap(ctx context.Context, to kms.KMS) (int, error) {
	const op = "rewrap"
	if err := v.usable(true); err != nil {
		return 0, vaultErr(op, "", err)
	}
	if to == nil {
		return 0, vaultErr(op, "", errors.New("no target KMS"))
	}
	if v.shared {
		return 0, vaultErr(op, "", errShared)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	from := v.kms
	recs, meta, err := v.recs.list(ctx)
	if err != nil {
		return 0, vaultErr(op, "", err)
	}
	changes := make([]change, 0, len(recs)+1)
	for _, s := range recs {
		r, err := decodeRecord(s.name, s.data)
		if err != nil {
			return 0, vaultErr(op, s.name, err)
		}
		if err := v.rewrapRecord(ctx, from, to, r); err != nil {
			return 0, vaultErr(op, s.name, err)
		}
		data, err := r.encode()
		if err != nil {
			return 0, vaultErr(op, s.name, err)
		}
		changes = append(changes, change{name: s.name, rev: s.rev, data: data})
	}
	if s, ok := meta[metaSalt]; ok {
		data, err := v.rewrapSalt(ctx, from, to, s.data)
		if err != nil {
			return 0, vaultErr(op, "", err)
		}
		changes = append(changes, change{meta: true, name: metaSalt, rev: s.rev, data: data})
	}
	if err := v.recs.apply(ctx, changes); err != nil {
		return 0, vaultErr(op, "", err)
	}
	v.kms = to
	return len(recs), nil
}

// rewrapSalt returns the stored fingerprint salt wrapped under to.
func (v *Vault) rewrapSalt(ctx context.Context, from, to kms.KMS, stored []byte) ([]byte, error) {
	salt, err := v.unwrapSalt(ctx, from, stored)
	if err != nil {
		return nil, err
	}
	defer clear(salt)
	wrapped, err := to.Wrap(ctx, salt, saltAAD)
	if err != nil {
		return nil, fmt.Errorf("fingerprint salt: %w", err)
	}
	return json.Marshal(saltRecord{Format: recordFormat, KMS: to.URI(), Wrapped: wrapped})
}

// RewrapCopy writes a copy of the vault to path with every data key and
// the fingerprint salt rewrapped under to, as Rewrap does, then checks the
// copy as Check does: every record must unwrap under to and its secret
// authenticate. The vault itself is not changed and keeps its KMS. path
// must not exist; on error nothing is left there. It returns the number
// of credentials in the copy.
func (v *Vault) RewrapCopy(ctx context.Context, path string, to kms.KMS) (int, error) {
	const op = "rewrap"
	if err := v.usable(false); err != nil {
		return 0, vaultErr(op, "", err)
	}
	if to == nil {
		return 0, vaultErr(op, "", errors.New("no target KMS"))
	}
	if v.recs.path() == "" {
		return 0, vaultErr(op, "", errShared)
	}
	if err := v.copyTo(path); err != nil {
		return 0, vaultErr(op, "", err)
	}
	n, err := rewrapFile(ctx, path, v.KMS(), to, v.opts.Now)
	if err != nil {
		_ = os.Remove(path)
		return 0, err
	}
	return n, nil
}

// copyTo writes a consistent copy of the file to path, durably.
func (v *Vault) copyTo(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = v.WriteSnapshot(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}

// rewrapFile rewraps the vault file at path from one KMS to another and
// checks every record under the new one.
func rewrapFile(ctx context.Context, path string, from, to kms.KMS, now func() time.Time) (n int, err error) {
	c, err := Open(path, from, Options{CacheTTL: -1, CacheSize: -1, Now: now})
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}()
	if n, err = c.Rewrap(ctx, to); err != nil {
		return 0, err
	}
	for _, r := range c.Check(ctx) {
		if r.Err != nil {
			return 0, r.Err
		}
	}
	return n, nil
}

func (v *Vault) rewrapRecord(ctx context.Context, from, to kms.KMS, r *record) error {
	dek, err := v.unwrapKey(ctx, from, r)
	if err != nil {
		return err
	}
	defer clear(dek)
	secret, err := r.open(dek)
	if err != nil {
		return err
	}
	clear(secret)
	wrapped, err := to.Wrap(ctx, dek, dekAAD(r.Name, r.Version))
	if err != nil {
		return fmt.Errorf("data key: %w", err)
	}
	r.WrappedKey = wrapped
	r.KMS = to.URI()
	return nil
}

// Check unwraps every record through the KMS (bypassing the cache) and
// authenticates its secret, reporting each; secrets are discarded. The
// fingerprint salt, when the vault has one, is reported first under
// FingerprintSaltName. A failure to read the file is reported as a single
// result with an empty Name.
func (v *Vault) Check(ctx context.Context) []CheckResult {
	const op = "check"
	if err := v.usable(false); err != nil {
		return []CheckResult{{Err: vaultErr(op, "", err)}}
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	items, meta, err := v.recs.list(ctx)
	if err != nil {
		return []CheckResult{{Err: vaultErr(op, "", err)}}
	}
	var out []CheckResult
	if salt, ok := meta[metaSalt]; ok {
		res := CheckResult{Name: FingerprintSaltName}
		if s, err := v.unwrapSalt(ctx, v.kms, salt.data); err != nil {
			res.Err = vaultErr(op, FingerprintSaltName, err)
		} else {
			clear(s)
		}
		out = append(out, res)
	}
	for _, it := range items {
		res := CheckResult{Name: it.name}
		r, err := decodeRecord(it.name, it.data)
		if err == nil {
			res.Version = r.Version
			var secret []byte
			secret, err = v.decrypt(ctx, v.kms, r)
			clear(secret)
		}
		if err != nil {
			res.Err = vaultErr(op, it.name, err)
		}
		out = append(out, res)
	}
	return out
}

// Close zeroes the cache and closes the file. It is idempotent. The KMS is
// the caller's to close.
func (v *Vault) Close() error {
	v.closeOnce.Do(func() {
		v.closed.Store(true)
		v.cache.purge()
		v.saltMu.Lock()
		clear(v.salt)
		v.salt = nil
		v.saltMu.Unlock()
		if err := v.recs.close(); err != nil {
			v.closeErr = vaultErr("close", "", err)
		}
	})
	return v.closeErr
}

// WriteSnapshot writes a consistent copy of the vault file to w, for a
// CLI that cannot open the file while a running sidecar holds it. The copy
// holds only what the file holds: wrapped keys and ciphertexts. A vault in
// a control store writes a vault file made from its records as of one
// revision, which Open reads; a backup of the store itself is the store's
// own (etcdctl snapshot save).
func (v *Vault) WriteSnapshot(w io.Writer) error {
	if err := v.usable(false); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), noCtxTimeout)
	defer cancel()
	return v.recs.writeSnapshot(ctx, w)
}
