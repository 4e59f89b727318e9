package passport

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Defaults of a Verifier and an Issuer.
const (
	DefaultIssuer    = "stack"
	DefaultAudience  = "stack-proxy"
	DefaultLeeway    = 30 * time.Second
	DefaultTTL       = 15 * time.Minute
	DefaultMaxTTL    = time.Hour
	DefaultCacheSize = 10000
)

// RevocationQuery names everything that, once revoked, revokes a passport.
type RevocationQuery struct {
	// JTI is the passport's own id.
	JTI string
	// Chain holds the jtis of its delegation ancestors.
	Chain []string
	// Agent is the passport's subject.
	Agent string
	// IssuedAt is the passport's iat: revoking an agent covers the
	// passports issued at or before the revocation.
	IssuedAt time.Time
	// Ancestors are the agents and issue times of the passports in Chain
	// (empty for passports that do not name them): revoking an agent also
	// covers what its passports delegated.
	Ancestors []Ancestor
}

// RevocationChecker answers whether a passport is revoked. It sits on the
// request path, so it must answer in O(1) per name without I/O.
// RevocationStore implements it.
type RevocationChecker interface {
	Revoked(q RevocationQuery) bool
}

// VerifierOptions configure NewVerifier. Zero values take the defaults.
type VerifierOptions struct {
	// Keys is the JWKS whose EdDSA keys verify passports. It may be left
	// empty and set later with UpdateJWKS or SetKeys.
	Keys jose.JSONWebKeySet
	// Audience must appear in aud (default DefaultAudience).
	Audience string
	// Issuer, when set, must equal iss.
	Issuer string
	// Leeway is the clock skew tolerated on exp, nbf and iat (default
	// DefaultLeeway; negative means none).
	Leeway time.Duration
	// MaxTTL is the longest lifetime, exp - iat, a passport may claim
	// (default DefaultMaxTTL). Give it the issuer's maximum: revocations
	// are kept only that long, so a longer-lived passport would outlive
	// its revocation.
	MaxTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Revocations is consulted on every Verify, cached or not; nil means
	// nothing is ever revoked.
	Revocations RevocationChecker
	// CacheSize bounds the cache of verified tokens (default
	// DefaultCacheSize; negative disables the cache).
	CacheSize int
	// KeyRefresh, when set, fetches the issuer's current JWKS when a token
	// names a kid the verifier does not know (a key rotated in at the
	// issuer): at most once per KeyRefreshInterval, one fetch at a time.
	// The keys it returns replace the verifier's.
	KeyRefresh func() (jose.JSONWebKeySet, error)
	// KeyRefreshInterval is the least time between two KeyRefresh calls
	// (default 10s): tokens with made-up kids cannot make the verifier
	// hammer the issuer.
	KeyRefreshInterval time.Duration
}

// Verifier checks passports offline against a JWKS. It is safe for
// concurrent use; keys can be replaced while it serves.
type Verifier struct {
	audience    string
	issuer      string
	leeway      time.Duration
	maxTTL      time.Duration
	now         func() time.Time
	revocations RevocationChecker
	keys        atomic.Pointer[map[string]ed25519.PublicKey]
	// keysGen counts key replacements: a Verified made under other keys
	// is verified afresh.
	keysGen atomic.Uint64
	cache   *tokenCache // nil when disabled

	refresh      func() (jose.JSONWebKeySet, error)
	refreshEvery time.Duration
	refreshMu    sync.Mutex
	lastRefresh  time.Time
}

// NewVerifier builds a Verifier.
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	v := &Verifier{
		audience:     opts.Audience,
		issuer:       opts.Issuer,
		leeway:       opts.Leeway,
		maxTTL:       opts.MaxTTL,
		now:          opts.Now,
		revocations:  opts.Revocations,
		refresh:      opts.KeyRefresh,
		refreshEvery: opts.KeyRefreshInterval,
	}
	if v.refreshEvery <= 0 {
		v.refreshEvery = 10 * time.Second
	}
	if v.audience == "" {
		v.audience = DefaultAudience
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	if v.maxTTL <= 0 {
		v.maxTTL = DefaultMaxTTL
	}
	if v.now == nil {
		v.now = time.Now
	}
	switch size := opts.CacheSize; {
	case size == 0:
		v.cache = newTokenCache(DefaultCacheSize)
	case size > 0:
		v.cache = newTokenCache(size)
	}
	empty := map[string]ed25519.PublicKey{}
	v.keys.Store(&empty)
	if len(opts.Keys.Keys) > 0 {
		if err := v.UpdateJWKS(opts.Keys); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// UpdateJWKS replaces the verification keys with the Ed25519 signing keys
// of set. Keys of other types or algorithms are ignored; a set with no
// usable key, or one holding private keys, is refused. Tokens verified
// under the old keys are dropped from the cache.
func (v *Verifier) UpdateJWKS(set jose.JSONWebKeySet) error {
	keys := make(map[string]ed25519.PublicKey, len(set.Keys))
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return fmt.Errorf("update jwks: key %q is private: %w", k.KeyID, ErrKeyFile)
		}
		pub, ok := k.Key.(ed25519.PublicKey)
		if !ok || k.KeyID == "" || (k.Algorithm != "" && k.Algorithm != string(jose.EdDSA)) || (k.Use != "" && k.Use != "sig") {
			continue
		}
		keys[k.KeyID] = pub
	}
	if len(keys) == 0 {
		return fmt.Errorf("update jwks: no Ed25519 signing key with a kid: %w", ErrUnknownKey)
	}
	v.SetKeys(keys)
	return nil
}

// SetKeys replaces the verification keys (kid to public key). The map is
// copied. Tokens verified under the old keys are dropped from the cache.
func (v *Verifier) SetKeys(keys map[string]ed25519.PublicKey) {
	cp := make(map[string]ed25519.PublicKey, len(keys))
	for kid, k := range keys {
		cp[kid] = k
	}
	v.keys.Store(&cp)
	v.keysGen.Add(1)
	if v.cache != nil {
		v.cache.purge()
	}
}

// Verify checks a passport's size, structure, algorithm, signature, dates,
// audience, issuer, scope and revocation, and returns its claims. A token
// seen before is answered from the cache (dates and revocation are still
// checked). Errors wrap the package's sentinels; Reason maps them.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("verify passport: %d bytes, limit %d: %w", len(token), MaxTokenSize, ErrTooLarge)
	}
	now := v.now()
	var sum [sha256.Size]byte
	if v.cache != nil {
		sum = tokenSum(token)
		if c, ok := v.cache.get(sum, now); ok {
			if err := v.checkDynamic(c, now); err != nil {
				cp := *c
				return nil, &VerifiedError{Claims: &cp, Err: err}
			}
			cp := *c
			return &cp, nil
		}
	}
	c, err := v.verifyFresh(token, now)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(sum, c, c.Expiry.Add(v.leeway))
	}
	cp := *c
	return &cp, nil
}

// VerifyAt checks a passport as Verify does, but its dates as they were
// at a past time: whether it was valid when it vouched for something (a
// handoff it sealed). Revocation is checked as of now. Nothing is cached.
func (v *Verifier) VerifyAt(token string, at time.Time) (*Claims, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("verify passport: %d bytes, limit %d: %w", len(token), MaxTokenSize, ErrTooLarge)
	}
	return v.verifyFresh(token, at)
}

// Verified is a passport Verify accepted, held by a caller that presents
// the same token again and again (the requests inside one proxied
// connection) so Recheck can skip what cannot have changed.
type Verified struct {
	token  string
	claims *Claims
	gen    uint64
}

// Claims returns the passport's claims. They are shared by every Recheck
// of vd: callers must not modify them.
func (vd *Verified) Claims() *Claims { return vd.claims }

// Token returns the passport vd was made from.
func (vd *Verified) Token() string { return vd.token }

// Check verifies token as Verify does and returns it as a Verified.
func (v *Verifier) Check(token string) (*Verified, error) {
	gen := v.keysGen.Load()
	c, err := v.Verify(token)
	if err != nil {
		return nil, err
	}
	return &Verified{token: token, claims: c, gen: gen}, nil
}

// Recheck answers as Verify(token) would for the token vd was made from,
// without hashing or parsing it again: its signature and fixed claims
// were checked under the current keys, so only the checks whose answer
// can change (dates, revocation) run. After the keys were replaced the
// token is verified afresh.
func (v *Verifier) Recheck(vd *Verified) (*Claims, error) {
	if vd.gen != v.keysGen.Load() {
		return v.Verify(vd.token)
	}
	if err := v.checkDynamic(vd.claims, v.now()); err != nil {
		cp := *vd.claims
		return nil, &VerifiedError{Claims: &cp, Err: err}
	}
	return vd.claims, nil
}

// checkDynamic repeats the checks whose answer can change while a token
// sits in the cache: dates and revocation.
func (v *Verifier) checkDynamic(c *Claims, now time.Time) error {
	if !now.Before(c.Expiry.Add(v.leeway)) {
		return fmt.Errorf("verify passport %s: expired at %s: %w", c.ID, c.Expiry.Format(time.RFC3339), ErrExpired)
	}
	if !c.NotBefore.IsZero() && now.Add(v.leeway).Before(c.NotBefore) {
		return fmt.Errorf("verify passport %s: not before %s: %w", c.ID, c.NotBefore.Format(time.RFC3339), ErrNotYetValid)
	}
	if now.Add(v.leeway).Before(c.IssuedAt) {
		return fmt.Errorf("verify passport %s: issued in the future (%s): %w", c.ID, c.IssuedAt.Format(time.RFC3339), ErrNotYetValid)
	}
	if v.revocations != nil && v.revocations.Revoked(RevocationQuery{JTI: c.ID, Chain: c.Delegation, Agent: c.Subject, IssuedAt: c.IssuedAt, Ancestors: c.Ancestors}) {
		return fmt.Errorf("verify passport %s (agent %s): %w", c.ID, c.Subject, ErrRevoked)
	}
	return nil
}

// tokenSum hashes token for the cache. A passport is hashed on every
// request; copying it into a stack buffer first spares the heap copy the
// conversion to []byte would make (the hash does not keep its input).
func tokenSum(token string) [sha256.Size]byte {
	var buf [4096]byte
	if len(token) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], token)])
	}
	return sha256.Sum256([]byte(token))
}

var strictB64 = base64.RawURLEncoding.Strict()

func (v *Verifier) verifyFresh(token string, now time.Time) (*Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("verify passport: want 3 dot-separated parts, got %d: %w", len(parts), ErrMalformed)
	}
	kid, err := checkHeader(parts[0])
	if err != nil {
		return nil, err
	}
	// go-jose decodes leniently; insist on canonical base64url so one
	// signature has exactly one spelling.
	if _, err := strictB64.DecodeString(parts[1]); err != nil {
		return nil, fmt.Errorf("verify passport: payload: %v: %w", err, ErrMalformed)
	}
	if _, err := strictB64.DecodeString(parts[2]); err != nil {
		return nil, fmt.Errorf("verify passport: signature: %v: %w", err, ErrMalformed)
	}
	pub, ok := (*v.keys.Load())[kid]
	if !ok && v.refreshKeys() {
		pub, ok = (*v.keys.Load())[kid]
	}
	if !ok {
		return nil, fmt.Errorf("verify passport: kid %q: %w", truncate(kid), ErrUnknownKey)
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return nil, fmt.Errorf("verify passport: %v: %w", err, ErrMalformed)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		return nil, fmt.Errorf("verify passport: kid %q: %w", kid, ErrBadSignature)
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("verify passport: claims: %v: %w", err, ErrMalformed)
	}
	if err := v.checkStatic(&c); err != nil {
		return nil, err
	}
	if err := v.checkDynamic(&c, now); err != nil {
		err = &VerifiedError{Claims: &c, Err: err}
		return nil, err
	}
	return &c, nil
}

// refreshKeys fetches the keys again, unless that was done lately; it
// reports whether the keys were replaced.
func (v *Verifier) refreshKeys() bool {
	if v.refresh == nil {
		return false
	}
	v.refreshMu.Lock()
	defer v.refreshMu.Unlock()
	now := v.now()
	if !v.lastRefresh.IsZero() && now.Sub(v.lastRefresh) < v.refreshEvery {
		return false
	}
	v.lastRefresh = now
	set, err := v.refresh()
	if err != nil {
		return false
	}
	return v.UpdateJWKS(set) == nil
}

// checkHeader accepts exactly {"alg":"EdDSA","kid":...,"typ":"passport+jwt"}
// and returns the kid. Any other parameter (crit, jwk, jku, x5u, b64...)
// is refused rather than half-understood.
func checkHeader(part string) (string, error) {
	raw, err := strictB64.DecodeString(part)
	if err != nil {
		return "", fmt.Errorf("verify passport: header: %v: %w", err, ErrMalformed)
	}
	var h map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&h); err != nil || h == nil {
		return "", fmt.Errorf("verify passport: header is not a JSON object: %w", ErrMalformed)
	}
	str := func(name string) (string, bool) {
		var s string
		r, ok := h[name]
		if !ok || json.Unmarshal(r, &s) != nil {
			return "", false
		}
		return s, true
	}
	alg, ok := str("alg")
	if !ok {
		return "", fmt.Errorf("verify passport: header without a string alg: %w", ErrMalformed)
	}
	if alg != string(jose.EdDSA) {
		return "", fmt.Errorf("verify passport: alg %q, only EdDSA is accepted: %w", truncate(alg), ErrUnsupportedAlgorithm)
	}
	if typ, ok := str("typ"); !ok || typ != TokenType {
		return "", fmt.Errorf("verify passport: typ is not %s: %w", TokenType, ErrMalformed)
	}
	kid, ok := str("kid")
	if !ok || kid == "" {
		return "", fmt.Errorf("verify passport: header without a kid: %w", ErrMalformed)
	}
	for name := range h {
		if name != "alg" && name != "typ" && name != "kid" {
			return "", fmt.Errorf("verify passport: header parameter %q not accepted: %w", truncate(name), ErrMalformed)
		}
	}
	return kid, nil
}

// checkStatic checks what cannot change once a token verified: required
// claims, lifetime, issuer, audience, mode, chain depth and scope.
func (v *Verifier) checkStatic(c *Claims) error {
	var missing []string
	if c.Subject == "" {
		missing = append(missing, "sub")
	}
	if c.ID == "" {
		missing = append(missing, "jti")
	}
	if c.IssuedAt.IsZero() {
		missing = append(missing, "iat")
	}
	if c.Expiry.IsZero() {
		missing = append(missing, "exp")
	}
	if len(missing) > 0 {
		return fmt.Errorf("verify passport: missing claims %s: %w", strings.Join(missing, ", "), ErrMalformed)
	}
	// The lifetime counts from iat, not nbf: revoking an agent covers the
	// passports issued up to then and is kept max_ttl (plus leeway) past
	// it, so exp - iat is what must fit. A later nbf does not shorten it,
	// and iat cannot be left out (it is required above).
	if life := c.Expiry.Sub(c.IssuedAt); life > v.maxTTL {
		return fmt.Errorf("verify passport %s: lifetime %s (exp - iat) exceeds max_ttl %s: %w", c.ID, life, v.maxTTL, ErrTTLTooLong)
	}
	if v.issuer != "" && c.Issuer != v.issuer {
		return fmt.Errorf("verify passport %s: iss %q, want %q: %w", c.ID, truncate(c.Issuer), v.issuer, ErrWrongIssuer)
	}
	if !contains(c.Audience, v.audience) {
		return fmt.Errorf("verify passport %s: aud does not include %q: %w", c.ID, v.audience, ErrWrongAudience)
	}
	if c.Mode == "" {
		c.Mode = ModeEnforce
	}
	if _, err := ParseMode(string(c.Mode)); err != nil {
		return fmt.Errorf("verify passport %s: mode %q: %w", c.ID, truncate(string(c.Mode)), ErrMalformed)
	}
	if len(c.Delegation) > MaxDelegationDepth {
		return fmt.Errorf("verify passport %s: %d delegation hops, limit %d: %w", c.ID, len(c.Delegation), MaxDelegationDepth, ErrChainTooDeep)
	}
	if len(c.Ancestors) != 0 && len(c.Ancestors) != len(c.Delegation) {
		return fmt.Errorf("verify passport %s: del_sub names %d ancestors for %d in del: %w", c.ID, len(c.Ancestors), len(c.Delegation), ErrMalformed)
	}
	if err := c.Scope.Validate(); err != nil {
		return fmt.Errorf("verify passport %s: %w: %w", c.ID, ErrMalformed, err)
	}
	return nil
}

// truncate keeps attacker-chosen strings short in error messages.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// VerifiedError is a refusal of a passport whose signature and claims
// checked out but which is expired, not yet valid or revoked: Claims are
// genuine, so logs and audit records may name its agent and jti. It wraps
// the sentinel (ErrExpired, ErrNotYetValid, ErrRevoked).
type VerifiedError struct {
	Claims *Claims
	Err    error
}

func (e *VerifiedError) Error() string { return e.Err.Error() }
func (e *VerifiedError) Unwrap() error { return e.Err }

// ClaimsOf returns the genuine claims of a passport err refused after
// checking its signature, or nil.
func ClaimsOf(err error) *Claims {
	var ve *VerifiedError
	if errors.As(err, &ve) {
		return ve.Claims
	}
	return nil
}
