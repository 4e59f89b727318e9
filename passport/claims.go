package passport

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// Token format constants.
const (
	// TokenType is the typ header of every passport.
	TokenType = "passport+jwt"
	// MaxTokenSize is the longest token Verify will look at (16 KiB).
	MaxTokenSize = 16 << 10
	// MaxDelegationDepth is the longest del chain: a root passport
	// delegates at most this many hops.
	MaxDelegationDepth = 4
)

// Mode says what the proxy does with a request its passport denies.
type Mode string

// Modes of a passport.
const (
	// ModeEnforce denies out-of-scope requests (the default).
	ModeEnforce Mode = "enforce"
	// ModeAlert denies nothing but alerts on out-of-scope requests.
	ModeAlert Mode = "alert"
	// ModeShadow records what would have been denied, silently.
	ModeShadow Mode = "shadow"
)

// ParseMode accepts "enforce", "alert" or "shadow"; "" means enforce.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return ModeEnforce, nil
	case ModeEnforce, ModeAlert, ModeShadow:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want enforce, alert or shadow: %w", s, ErrInvalidRequest)
}

// strictness orders modes so a delegated passport can only tighten.
func (m Mode) strictness() int {
	switch m {
	case ModeEnforce:
		return 2
	case ModeAlert:
		return 1
	}
	return 0
}

// Confirmation is the RFC 7800 cnf claim: the thumbprint (RFC 7638,
// base64url SHA-256) of the key the holder must prove possession of.
type Confirmation struct {
	JKT string `json:"jkt"`
}

// Claims are the verified contents of a passport. Claims returned by a
// Verifier may be shared with its cache: treat them as read-only.
type Claims struct {
	Issuer    string
	Subject   string // the agent id
	Audience  []string
	IssuedAt  time.Time
	NotBefore time.Time
	Expiry    time.Time
	ID        string // jti
	Scope     Scope
	Mode      Mode
	// Delegation lists the jtis of the ancestors, oldest first; empty for a
	// root passport.
	Delegation []string
	// Ancestors holds, for each entry of Delegation, its agent and issue
	// time, so that revoking an agent reaches what its passports
	// delegated. Passports issued before it existed leave it empty.
	Ancestors    []Ancestor
	Confirmation *Confirmation
}

// Ancestor is a delegated passport's ancestor: the agent it was issued to,
// and when.
type Ancestor struct {
	Agent    string
	IssuedAt time.Time
}

// wireClaims is the JWT form of Claims.
type wireClaims struct {
	Iss   string           `json:"iss"`
	Sub   string           `json:"sub"`
	Aud   jwt.Audience     `json:"aud"`
	Iat   *jwt.NumericDate `json:"iat"`
	Nbf   *jwt.NumericDate `json:"nbf,omitempty"`
	Exp   *jwt.NumericDate `json:"exp"`
	Jti   string           `json:"jti"`
	Scope Scope            `json:"scope"`
	Mode  Mode             `json:"mode,omitempty"`
	Del   []string         `json:"del,omitempty"`
	DSub  []string         `json:"del_sub,omitempty"`
	DIat  []int64          `json:"del_iat,omitempty"`
	Cnf   *Confirmation    `json:"cnf,omitempty"`
}

// MarshalJSON writes the JWT claim set (iss, sub, aud, iat, nbf, exp, jti,
// scope, mode, del, del_sub, del_iat, cnf), dates as seconds since the
// epoch.
func (c Claims) MarshalJSON() ([]byte, error) {
	w := wireClaims{
		Iss: c.Issuer, Sub: c.Subject, Aud: jwt.Audience(c.Audience),
		Iat: numericDate(c.IssuedAt), Nbf: numericDate(c.NotBefore), Exp: numericDate(c.Expiry),
		Jti: c.ID, Scope: c.Scope, Mode: c.Mode, Del: c.Delegation, Cnf: c.Confirmation,
	}
	for _, a := range c.Ancestors {
		w.DSub = append(w.DSub, a.Agent)
		w.DIat = append(w.DIat, a.IssuedAt.Unix())
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the JWT claim set. It checks only the JSON shape;
// Verify checks the values.
func (c *Claims) UnmarshalJSON(b []byte) error {
	var w wireClaims
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = Claims{
		Issuer: w.Iss, Subject: w.Sub, Audience: []string(w.Aud),
		IssuedAt: timeOf(w.Iat), NotBefore: timeOf(w.Nbf), Expiry: timeOf(w.Exp),
		ID: w.Jti, Scope: w.Scope, Mode: w.Mode, Delegation: w.Del, Confirmation: w.Cnf,
	}
	if len(w.DSub) != len(w.DIat) {
		return fmt.Errorf("del_sub has %d entries and del_iat %d", len(w.DSub), len(w.DIat))
	}
	for i, sub := range w.DSub {
		c.Ancestors = append(c.Ancestors, Ancestor{Agent: sub, IssuedAt: time.Unix(w.DIat[i], 0).UTC()})
	}
	return nil
}

func numericDate(t time.Time) *jwt.NumericDate {
	if t.IsZero() {
		return nil
	}
	return jwt.NewNumericDate(t)
}

func timeOf(n *jwt.NumericDate) time.Time {
	if n == nil {
		return time.Time{}
	}
	return n.Time().UTC()
}
