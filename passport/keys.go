package passport

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Wrapper encrypts the issuer's private keys at rest. The KMS of package
// vault/kms satisfies it.
type Wrapper interface {
	// Wrap encrypts plaintext bound to aad.
	Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	// Unwrap reverses Wrap; it fails when aad differs.
	Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error)
	// URI names the wrapping key; it is recorded in the key file.
	URI() string
}

// KeySet is the issuer's set of Ed25519 signing keys: one current key that
// signs new passports, older keys kept, public part published, until
// every passport they signed has expired, and possibly newer keys
// published but not signing yet, so that every verifier (and every
// replica of the issuer) has them before the first passport they sign.
// It is safe for concurrent use.
type KeySet struct {
	mu   sync.RWMutex
	keys []*issuerKey // oldest first; the last one is the newest
	// retired holds the public keys of keys dropped after their passports
	// expired: no longer in the JWKS, but still needed to verify what they
	// signed for the record, such as audit checkpoints.
	retired map[string]ed25519.PublicKey
}

type issuerKey struct {
	kid         string
	created     time.Time
	activeAt    time.Time // signs from then on; zero: from its creation
	retireAfter time.Time // zero while current
	priv        ed25519.PrivateKey
}

// KeyInfo describes one key of a KeySet (no key material).
type KeyInfo struct {
	KID         string    `json:"kid"`
	Created     time.Time `json:"created"`
	RetireAfter time.Time `json:"retire_after,omitzero"`
	// ActiveAt is when the key starts signing; zero: since its creation.
	ActiveAt time.Time `json:"active_at,omitzero"`
	// Current says the key signs new passports now; Pending that it is
	// published but signs from ActiveAt on.
	Current bool `json:"current"`
	Pending bool `json:"pending,omitempty"`
}

// GenerateKeySet returns a key set holding one fresh key created at now.
func GenerateKeySet(now time.Time) (*KeySet, error) {
	k, err := newIssuerKey(now)
	if err != nil {
		return nil, err
	}
	return &KeySet{keys: []*issuerKey{k}}, nil
}

func newIssuerKey(now time.Time) (*issuerKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate issuer key: %w", err)
	}
	kid, err := keyID(priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return &issuerKey{kid: kid, created: now.UTC(), priv: priv}, nil
}

// keyID is the key's RFC 7638 JWK thumbprint (SHA-256, base64url): stable,
// derived from the public key, and checkable by anyone holding the JWKS.
func keyID(pub ed25519.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// Rotate makes a fresh key current at once. The previous current key
// stays published until now+keepFor (give it the maximum passport TTL plus
// the verifiers' leeway) and keys whose time has passed are pruned.
func (ks *KeySet) Rotate(now time.Time, keepFor time.Duration) (newKid string, err error) {
	return ks.RotateAfter(now, keepFor, 0)
}

// RotateAfter adds a fresh key that is published at once but signs only
// from now+delay: whoever serves the set (replicas of the issuer, caches
// of its JWKS) has delay to pick the key up before a passport it signed
// reaches a verifier. Until then the previous key signs; it stays
// published until now+delay+keepFor. Keys whose time has passed are
// pruned.
func (ks *KeySet) RotateAfter(now time.Time, keepFor, delay time.Duration) (newKid string, err error) {
	if delay < 0 || keepFor < 0 {
		return "", fmt.Errorf("rotate issuer key: negative delay %s or keep %s: %w", delay, keepFor, ErrInvalidRequest)
	}
	k, err := newIssuerKey(now)
	if err != nil {
		return "", err
	}
	activeAt := now.Add(delay).UTC()
	if delay > 0 {
		k.activeAt = activeAt
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for _, old := range ks.keys {
		if old.retireAfter.IsZero() {
			old.retireAfter = activeAt.Add(keepFor)
		}
	}
	ks.keys = append(ks.keys, k)
	ks.pruneLocked(now)
	return k.kid, nil
}

// Prune drops keys retired before now and reports how many went.
func (ks *KeySet) Prune(now time.Time) int {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.pruneLocked(now)
}

func (ks *KeySet) pruneLocked(now time.Time) int {
	kept := ks.keys[:0]
	for _, k := range ks.keys {
		if k.live(now) {
			kept = append(kept, k)
			continue
		}
		if ks.retired == nil {
			ks.retired = map[string]ed25519.PublicKey{}
		}
		ks.retired[k.kid] = k.priv.Public().(ed25519.PublicKey)
	}
	n := len(ks.keys) - len(kept)
	clear(ks.keys[len(kept):])
	ks.keys = kept
	return n
}

// AllPublicKeys returns every public key the set has held, retired ones
// included, by kid: for verifying old signatures such as audit checkpoints,
// never passports (use PublicKeys or JWKS for those).
func (ks *KeySet) AllPublicKeys() map[string]ed25519.PublicKey {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	out := make(map[string]ed25519.PublicKey, len(ks.keys)+len(ks.retired))
	for kid, pub := range ks.retired {
		out[kid] = pub
	}
	for _, k := range ks.keys {
		out[k.kid] = k.priv.Public().(ed25519.PublicKey)
	}
	return out
}

func (k *issuerKey) live(now time.Time) bool {
	return k.retireAfter.IsZero() || now.Before(k.retireAfter)
}

// Current returns the key that signs new passports at now: the newest
// key still published whose activation time has come.
func (ks *KeySet) Current(now time.Time) (kid string, priv ed25519.PrivateKey) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	if k := ks.currentLocked(now); k != nil {
		return k.kid, k.priv
	}
	return "", nil
}

func (ks *KeySet) currentLocked(now time.Time) *issuerKey {
	for i := len(ks.keys) - 1; i >= 0; i-- {
		k := ks.keys[i]
		if k.live(now) && !now.Before(k.activeAt) {
			return k
		}
	}
	return nil
}

// PublicKeys returns the public keys still published at now, by kid.
func (ks *KeySet) PublicKeys(now time.Time) map[string]ed25519.PublicKey {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	out := make(map[string]ed25519.PublicKey, len(ks.keys))
	for _, k := range ks.keys {
		if k.live(now) {
			out[k.kid] = k.priv.Public().(ed25519.PublicKey)
		}
	}
	return out
}

// JWKS returns the public keys still published at now as a JSON Web Key
// Set, newest first: keys pending activation are in it.
func (ks *KeySet) JWKS(now time.Time) jose.JSONWebKeySet {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	var set jose.JSONWebKeySet
	for i := len(ks.keys) - 1; i >= 0; i-- {
		k := ks.keys[i]
		if !k.live(now) {
			continue
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key:       k.priv.Public().(ed25519.PublicKey),
			KeyID:     k.kid,
			Algorithm: string(jose.EdDSA),
			Use:       "sig",
		})
	}
	return set
}

// Keys describes every key in the set as of now, oldest first.
func (ks *KeySet) Keys(now time.Time) []KeyInfo {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	cur := ks.currentLocked(now)
	out := make([]KeyInfo, len(ks.keys))
	for i, k := range ks.keys {
		out[i] = KeyInfo{KID: k.kid, Created: k.created, RetireAfter: k.retireAfter, ActiveAt: k.activeAt,
			Current: k == cur, Pending: now.Before(k.activeAt)}
	}
	return out
}

// keyFile is the serialized form of a KeySet (Marshal, the key file).
type keyFile struct {
	Version int          `json:"version"`
	Wrapper string       `json:"wrapper"`
	Keys    []keyFileKey `json:"keys"`
	// Retired are public keys (base64url) of dropped keys, by kid.
	Retired map[string]string `json:"retired,omitempty"`
}

type keyFileKey struct {
	KID         string    `json:"kid"`
	Created     time.Time `json:"created"`
	RetireAfter time.Time `json:"retire_after,omitzero"`
	// ActiveAt is absent in files written before keys could be pending:
	// such keys are active.
	ActiveAt    time.Time `json:"active_at,omitzero"`
	Public      string    `json:"public"`       // base64url Ed25519 public key
	WrappedSeed string    `json:"wrapped_seed"` // base64url, wrapped Ed25519 seed
}

const keyFileVersion = 1

func keyAAD(kid string) []byte { return []byte("stack/issuer-key/" + kid) }

// Marshal returns the key set in the key file's format, each private key
// wrapped by w with the key's kid as additional data: the bytes hold no
// plaintext key and can be stored anywhere the public keys may be read.
func (ks *KeySet) Marshal(ctx context.Context, w Wrapper) ([]byte, error) {
	// Snapshot under the lock: Rotate changes retireAfter in place.
	ks.mu.RLock()
	keys := make([]issuerKey, len(ks.keys))
	for i, k := range ks.keys {
		keys[i] = *k
	}
	f := keyFile{Version: keyFileVersion, Wrapper: w.URI()}
	for kid, pub := range ks.retired {
		if f.Retired == nil {
			f.Retired = map[string]string{}
		}
		f.Retired[kid] = base64.RawURLEncoding.EncodeToString(pub)
	}
	ks.mu.RUnlock()
	if len(keys) == 0 {
		return nil, ErrNoKey
	}
	for _, k := range keys {
		wrapped, err := w.Wrap(ctx, k.priv.Seed(), keyAAD(k.kid))
		if err != nil {
			return nil, fmt.Errorf("wrap %s: %w", k.kid, err)
		}
		f.Keys = append(f.Keys, keyFileKey{
			KID:         k.kid,
			Created:     k.created,
			RetireAfter: k.retireAfter,
			ActiveAt:    k.activeAt,
			Public:      base64.RawURLEncoding.EncodeToString(k.priv.Public().(ed25519.PublicKey)),
			WrappedSeed: base64.RawURLEncoding.EncodeToString(wrapped),
		})
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Save writes the key set to path atomically (temporary file, fsync,
// rename; mode 0600) in Marshal's format.
func (ks *KeySet) Save(ctx context.Context, path string, w Wrapper) error {
	b, err := ks.Marshal(ctx, w)
	if err != nil {
		return fmt.Errorf("save issuer keys: %w", err)
	}
	if err := writeFileAtomic(path, b, 0o600); err != nil {
		return fmt.Errorf("save issuer keys: %w", err)
	}
	return nil
}

// LoadKeySet reads a key set written by Save (see ParseKeySet).
func LoadKeySet(ctx context.Context, path string, w Wrapper) (*KeySet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load issuer keys: %w", err)
	}
	ks, err := ParseKeySet(ctx, b, w)
	if err != nil {
		return nil, fmt.Errorf("load issuer keys %s: %w", path, err)
	}
	return ks, nil
}

// ParseKeySet reads a key set in Marshal's format, unwrapping each private
// key with w and checking it against its recorded public key and kid. Bad
// bytes are ErrKeyFile, a set without a key that can sign ErrNoKey.
func ParseKeySet(ctx context.Context, b []byte, w Wrapper) (*KeySet, error) {
	var f keyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrKeyFile)
	}
	if f.Version != keyFileVersion {
		return nil, fmt.Errorf("version %d, want %d: %w", f.Version, keyFileVersion, ErrKeyFile)
	}
	if len(f.Keys) == 0 {
		return nil, ErrNoKey
	}
	ks := &KeySet{}
	for kid, enc := range f.Retired {
		pub, err := base64.RawURLEncoding.DecodeString(enc)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("retired key %s: %w", kid, ErrKeyFile)
		}
		if ks.retired == nil {
			ks.retired = map[string]ed25519.PublicKey{}
		}
		ks.retired[kid] = pub
	}
	for _, fk := range f.Keys {
		wrapped, err := base64.RawURLEncoding.DecodeString(fk.WrappedSeed)
		if err != nil {
			return nil, fmt.Errorf("key %s: %v: %w", fk.KID, err, ErrKeyFile)
		}
		seed, err := w.Unwrap(ctx, wrapped, keyAAD(fk.KID))
		if err != nil {
			hint := ""
			if f.Wrapper != w.URI() {
				hint = fmt.Sprintf(" (wrapped by %s, unwrapping with %s)", f.Wrapper, w.URI())
			}
			return nil, fmt.Errorf("unwrap %s%s: %w", fk.KID, hint, err)
		}
		if len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("key %s: seed of %d bytes: %w", fk.KID, len(seed), ErrKeyFile)
		}
		priv := ed25519.NewKeyFromSeed(seed)
		clear(seed)
		pub := priv.Public().(ed25519.PublicKey)
		if base64.RawURLEncoding.EncodeToString(pub) != fk.Public {
			return nil, fmt.Errorf("key %s: public key mismatch: %w", fk.KID, ErrKeyFile)
		}
		kid, err := keyID(pub)
		if err != nil {
			return nil, err
		}
		if kid != fk.KID {
			return nil, fmt.Errorf("key %s: kid is not the key's thumbprint: %w", fk.KID, ErrKeyFile)
		}
		ks.keys = append(ks.keys, &issuerKey{kid: kid, created: fk.Created, activeAt: fk.ActiveAt, retireAfter: fk.RetireAfter, priv: priv})
	}
	// The newest key is the newest one still unretired; keep file order
	// otherwise.
	sort.SliceStable(ks.keys, func(i, j int) bool {
		return !ks.keys[i].retireAfter.IsZero() && ks.keys[j].retireAfter.IsZero()
	})
	if !ks.keys[len(ks.keys)-1].retireAfter.IsZero() {
		return nil, fmt.Errorf("every key is retired: %w", ErrNoKey)
	}
	return ks, nil
}

// RewrapKeyFile writes the key set at path to newPath (replacing it) with
// every private key unwrapped by from and wrapped by to, then loads
// newPath back with to and checks that it holds the same keys, retired
// ones included. path is not changed; newPath is removed when the check
// fails.
func RewrapKeyFile(ctx context.Context, path, newPath string, from, to Wrapper) error {
	ks, err := LoadKeySet(ctx, path, from)
	if err != nil {
		return err
	}
	if err := ks.Save(ctx, newPath, to); err != nil {
		return err
	}
	back, err := LoadKeySet(ctx, newPath, to)
	if err == nil && !sameKeys(ks, back) {
		err = fmt.Errorf("rewrap issuer keys %s: %s holds other keys: %w", path, newPath, ErrKeyFile)
	}
	if err != nil {
		_ = os.Remove(newPath)
		return err
	}
	return nil
}

// sameKeys reports whether a and b hold the same keys with the same
// lifetimes. Private keys need no comparison: LoadKeySet checks each
// against its public key.
func sameKeys(a, b *KeySet) bool {
	// Any instant will do: Keys(now) differs only in Current and Pending,
	// which follow from the times compared.
	var epoch time.Time
	ak, bk := a.Keys(epoch), b.Keys(epoch)
	if len(ak) != len(bk) {
		return false
	}
	for i := range ak {
		if ak[i].KID != bk[i].KID || !ak[i].ActiveAt.Equal(bk[i].ActiveAt) ||
			!ak[i].Created.Equal(bk[i].Created) || !ak[i].RetireAfter.Equal(bk[i].RetireAfter) {
			return false
		}
	}
	ap, bp := a.AllPublicKeys(), b.AllPublicKeys()
	if len(ap) != len(bp) {
		return false
	}
	for kid, pub := range ap {
		if !pub.Equal(bp[kid]) {
			return false
		}
	}
	return true
}

// writeFileAtomic replaces path with data so that a crash leaves either
// the old or the new file, never a torn one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Make the rename itself durable.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err = d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
