package passport

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Issuer signs passports with the current key of a KeySet. Zero fields
// take the defaults; set them before the first Issue and leave them.
type Issuer struct {
	// Keys signs passports (required).
	Keys *KeySet
	// Name is the iss claim (default DefaultIssuer).
	Name string
	// Audience is the aud claim when the request names none (default
	// DefaultAudience).
	Audience string
	// DefaultTTL is the lifetime of a request without TTL (default
	// DefaultTTL).
	DefaultTTL time.Duration
	// MaxTTL is the longest lifetime allowed (default DefaultMaxTTL).
	MaxTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Parents verifies the parent passport of a delegation request. Give it
	// the revocation store so a revoked parent cannot delegate. When nil, a
	// verifier over Keys' public keys (with default leeway and no
	// revocation) is used; a child of a revoked parent is still refused at
	// verification, since its del chain names the parent.
	Parents *Verifier
}

// IssueRequest asks for one passport.
type IssueRequest struct {
	// Agent is the sub claim: the agent the passport is for (required).
	Agent string
	// Scope is what the passport allows (required, validated).
	Scope Scope
	// TTL is the lifetime; zero means the issuer's DefaultTTL. A delegated
	// passport never outlives its parent: its exp is clamped to the
	// parent's.
	TTL time.Duration
	// Mode is enforce (default), alert or shadow. A delegated passport
	// inherits its parent's mode and may only make it stricter.
	Mode Mode
	// Parent, when set, is the token of the passport this one is delegated
	// from: the child's scope must be a subset of it.
	Parent string
	// Audience overrides the aud claim; a delegated passport keeps its
	// parent's audience.
	Audience string
	// Confirmation, when set, binds the passport to a holder key (cnf).
	Confirmation *Confirmation
}

// Issue signs a passport for req and returns the token and its claims.
func (is *Issuer) Issue(ctx context.Context, req IssueRequest) (string, *Claims, error) {
	if err := ctx.Err(); err != nil {
		return "", nil, fmt.Errorf("issue passport: %w", err)
	}
	if is.Keys == nil {
		return "", nil, fmt.Errorf("issue passport: %w", ErrNoKey)
	}
	now := is.now()
	if !validAgent(req.Agent) {
		return "", nil, fmt.Errorf("issue passport: agent %q: want 1-256 letters, digits or -_.@/+ (no ':'): %w", truncate(req.Agent), ErrInvalidRequest)
	}
	if err := req.Scope.Validate(); err != nil {
		return "", nil, fmt.Errorf("issue passport for %s: %w", req.Agent, err)
	}
	mode, err := ParseMode(string(req.Mode))
	if err != nil {
		return "", nil, fmt.Errorf("issue passport for %s: %w", req.Agent, err)
	}
	ttl := req.TTL
	switch maxTTL := is.maxTTL(); {
	case ttl < 0:
		return "", nil, fmt.Errorf("issue passport for %s: negative ttl %s: %w", req.Agent, ttl, ErrInvalidRequest)
	case ttl == 0:
		ttl = min(is.defaultTTL(), maxTTL)
	case ttl > maxTTL:
		return "", nil, fmt.Errorf("issue passport for %s: ttl %s over %s: %w", req.Agent, ttl, maxTTL, ErrTTLTooLong)
	}
	if req.Confirmation != nil && req.Confirmation.JKT == "" {
		return "", nil, fmt.Errorf("issue passport for %s: cnf without jkt: %w", req.Agent, ErrInvalidRequest)
	}

	jti, err := newJTI()
	if err != nil {
		return "", nil, fmt.Errorf("issue passport for %s: %w", req.Agent, err)
	}
	aud := req.Audience
	if aud == "" {
		aud = is.audience()
	}
	c := &Claims{
		Issuer:       is.name(),
		Subject:      req.Agent,
		Audience:     []string{aud},
		IssuedAt:     now.UTC().Truncate(time.Second),
		NotBefore:    now.UTC().Truncate(time.Second),
		Expiry:       now.Add(ttl).UTC().Truncate(time.Second),
		ID:           jti,
		Scope:        req.Scope,
		Mode:         mode,
		Confirmation: req.Confirmation,
	}

	if req.Parent != "" {
		if err := is.delegate(c, req, now); err != nil {
			return "", nil, err
		}
	}

	token, err := is.sign(c, now)
	if err != nil {
		return "", nil, fmt.Errorf("issue passport for %s: %w", req.Agent, err)
	}
	if len(token) > MaxTokenSize {
		return "", nil, fmt.Errorf("issue passport for %s: token of %d bytes, limit %d: %w", req.Agent, len(token), MaxTokenSize, ErrTooLarge)
	}
	return token, c, nil
}

// delegate checks the parent and narrows c to it.
func (is *Issuer) delegate(c *Claims, req IssueRequest, now time.Time) error {
	v := is.Parents
	if v == nil {
		var err error
		v, err = NewVerifier(VerifierOptions{Audience: is.audience(), MaxTTL: is.maxTTL(), Now: is.now, CacheSize: -1})
		if err != nil {
			return err
		}
		v.SetKeys(is.Keys.PublicKeys(now))
	}
	parent, err := v.Verify(req.Parent)
	if err != nil {
		return fmt.Errorf("issue passport for %s: parent: %w", req.Agent, err)
	}
	if len(parent.Delegation)+1 > MaxDelegationDepth {
		return fmt.Errorf("issue passport for %s: parent %s is already %d hops deep, limit %d: %w",
			req.Agent, parent.ID, len(parent.Delegation), MaxDelegationDepth, ErrChainTooDeep)
	}
	if err := parent.Scope.Covers(c.Scope); err != nil {
		return fmt.Errorf("issue passport for %s: delegated from %s: %w", req.Agent, parent.ID, err)
	}
	if req.Mode == "" {
		c.Mode = parent.Mode
	} else if c.Mode.strictness() < parent.Mode.strictness() {
		return fmt.Errorf("issue passport for %s: mode %s is looser than the parent's %s: %w", req.Agent, c.Mode, parent.Mode, ErrScopeNotSubset)
	}
	if req.Audience != "" && !(len(parent.Audience) == 1 && parent.Audience[0] == req.Audience) {
		return fmt.Errorf("issue passport for %s: audience %q differs from the parent's: %w", req.Agent, req.Audience, ErrScopeNotSubset)
	}
	c.Audience = append([]string(nil), parent.Audience...)
	if parent.Expiry.Before(c.Expiry) {
		c.Expiry = parent.Expiry
	}
	if !c.Expiry.After(now) {
		return fmt.Errorf("issue passport for %s: parent %s expires at %s: %w", req.Agent, parent.ID, parent.Expiry.Format(time.RFC3339), ErrExpired)
	}
	c.Delegation = append(append([]string(nil), parent.Delegation...), parent.ID)
	if len(parent.Ancestors) == len(parent.Delegation) {
		c.Ancestors = append(append([]Ancestor(nil), parent.Ancestors...), Ancestor{Agent: parent.Subject, IssuedAt: parent.IssuedAt})
	}
	return nil
}

func (is *Issuer) sign(c *Claims, now time.Time) (string, error) {
	kid, priv := is.Keys.Current(now)
	if priv == nil {
		return "", ErrNoKey
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(jose.EdDSA)}},
		(&jose.SignerOptions{}).WithType(TokenType),
	)
	if err != nil {
		return "", fmt.Errorf("signer: %w", err)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("claims: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return jws.CompactSerialize()
}

func newJTI() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ValidAgent reports whether s may name an agent (the sub claim): 1 to
// 256 letters, digits and - _ . @ / +.
func ValidAgent(s string) bool { return validAgent(s) }

// validAgent: agent ids travel as the user name of Proxy-Authorization
// Basic, so ':' and spaces are out.
func validAgent(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '-', r == '_', r == '.', r == '@', r == '/', r == '+':
		default:
			return false
		}
	}
	return true
}

func (is *Issuer) now() time.Time {
	if is.Now != nil {
		return is.Now()
	}
	return time.Now()
}

func (is *Issuer) name() string {
	if is.Name != "" {
		return is.Name
	}
	return DefaultIssuer
}

func (is *Issuer) audience() string {
	if is.Audience != "" {
		return is.Audience
	}
	return DefaultAudience
}

func (is *Issuer) defaultTTL() time.Duration {
	if is.DefaultTTL > 0 {
		return is.DefaultTTL
	}
	return DefaultTTL
}

func (is *Issuer) maxTTL() time.Duration {
	if is.MaxTTL > 0 {
		return is.MaxTTL
	}
	return DefaultMaxTTL
}
