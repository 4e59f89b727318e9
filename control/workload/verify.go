package workload

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Verify checks a workload's OIDC token and returns the agent it acts as.
// The token is routed to an issuer by its iss, read before anything is
// trusted, then verified against that issuer's published keys. Every
// refusal wraps one of this package's errors; Reason names it.
func (v *Verifier) Verify(ctx context.Context, rawToken string) (Identity, error) {
	if len(rawToken) > MaxTokenSize {
		return Identity{}, fmt.Errorf("workload: verify token: %w: %d bytes, over the limit of %d", ErrTokenMalformed, len(rawToken), MaxTokenSize)
	}
	tok, err := parseUnverified(rawToken)
	if err != nil {
		return Identity{}, fmt.Errorf("workload: verify token: %w: %w", ErrTokenMalformed, err)
	}
	is := v.issuers[tok.iss]
	if is == nil {
		return Identity{}, fmt.Errorf("workload: verify token: %w: %q", ErrIssuerUnknown, brief(tok.iss))
	}
	// Until the signature verifies, the subject is only what the token
	// claims.
	who := fmt.Sprintf("issuer %q, unverified subject %q", is.url, brief(tok.sub))
	if !slices.Contains(signingAlgs, tok.alg) {
		return Identity{}, fmt.Errorf("workload: verify token (%s): %w: algorithm %q is not accepted", who, ErrTokenInvalid, brief(tok.alg))
	}
	idv, err := is.tokenVerifier(ctx)
	if err != nil {
		return Identity{}, fmt.Errorf("workload: verify token (%s): %w: %w", who, ErrIssuerUnavailable, briefError{err})
	}
	note := &verifyNote{}
	idt, err := idv.Verify(context.WithValue(ctx, noteKey{}, note), rawToken)
	if err != nil {
		return Identity{}, v.refusal(is, tok, note, err)
	}

	// Rules match the verified payload, not the copy read for routing.
	var payload json.RawMessage
	if err := idt.Claims(&payload); err != nil {
		return Identity{}, fmt.Errorf("workload: verify token (%s): %w: %w", who, ErrTokenInvalid, err)
	}
	claims, err := decodeClaims(payload)
	if err != nil {
		return Identity{}, fmt.Errorf("workload: verify token (%s): %w: %w", who, ErrTokenInvalid, err)
	}
	who = fmt.Sprintf("issuer %q, subject %q", is.url, brief(idt.Subject))
	if idt.Subject == "" {
		return Identity{}, fmt.Errorf("workload: verify token (%s): %w: no subject", who, ErrTokenInvalid)
	}
	// go-oidc tolerates five minutes of skew on nbf; hold it to ours.
	if nbf, ok := numericDate(claims["nbf"]); ok {
		if now := v.now(); nbf.After(now.Add(v.leeway)) {
			return Identity{}, fmt.Errorf("workload: verify token (%s): %w: not valid before %s (now %s)", who, ErrTokenInvalid, nbf.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
	}
	for _, r := range is.rules {
		if r.matches(claims) {
			return Identity{Agent: r.agent, Issuer: is.url, Subject: idt.Subject, Expiry: idt.Expiry, Claims: claims}, nil
		}
	}
	return Identity{}, fmt.Errorf("workload: verify token (%s): %w: compared %s against %d rules", who, ErrNoRule, is.compared(claims), len(is.rules))
}

// refusal classifies a failure of go-oidc's verification, whose errors
// are mostly strings, by what keySet saw and by the token's own claims.
func (v *Verifier) refusal(is *issuer, tok unverified, note *verifyNote, err error) error {
	var expired *oidc.TokenExpiredError
	switch {
	case errors.As(err, &expired):
		// go-oidc checks expiry only after the signature, so the subject
		// is the issuer's word.
		return fmt.Errorf("workload: verify token (issuer %q, subject %q): %w at %s (now %s, leeway %s)",
			is.url, brief(tok.sub), ErrTokenExpired, expired.Expiry.UTC().Format(time.RFC3339), v.now().UTC().Format(time.RFC3339), v.leeway)
	case note.fetchErr != nil:
		return fmt.Errorf("workload: verify token (issuer %q, unverified subject %q): %w: keys: %w", is.url, brief(tok.sub), ErrIssuerUnavailable, briefError{note.fetchErr})
	case !note.signed:
		return fmt.Errorf("workload: verify token (issuer %q, unverified subject %q): %w: signature does not verify under the issuer's keys (kid %q): %w",
			is.url, brief(tok.sub), ErrTokenInvalid, brief(tok.kid), briefError{err})
	case !audienceHas(tok.claims["aud"], is.audience):
		return fmt.Errorf("workload: verify token (issuer %q, subject %q): %w: aud %s does not name %q",
			is.url, brief(tok.sub), ErrAudience, brief(jsonText(tok.claims["aud"])), is.audience)
	default:
		return fmt.Errorf("workload: verify token (issuer %q, subject %q): %w: %w", is.url, brief(tok.sub), ErrTokenInvalid, briefError{err})
	}
}

// unverified is what routing reads from a token before trusting it.
type unverified struct {
	alg, kid string
	iss, sub string
	claims   map[string]any
}

// Parse errors say what is wrong, never what the token holds.
var (
	errNotCompact     = errors.New("not a compact JWS (header.claims.signature)")
	errHeaderEncoding = errors.New("header is not base64url")
	errHeaderJSON     = errors.New("header is not a JSON object")
	errClaimsEncoding = errors.New("claims are not base64url")
	errClaimsJSON     = errors.New("claims are not a JSON object")
	errNoIssuer       = errors.New("no iss string")
)

func parseUnverified(raw string) (unverified, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return unverified{}, errNotCompact
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return unverified{}, errHeaderEncoding
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if !isJSONObject(hb) || json.Unmarshal(hb, &header) != nil {
		return unverified{}, errHeaderJSON
	}
	cb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return unverified{}, errClaimsEncoding
	}
	claims, err := decodeClaims(cb)
	if err != nil {
		return unverified{}, err
	}
	iss, ok := claims["iss"].(string)
	if !ok || iss == "" {
		return unverified{}, errNoIssuer
	}
	sub, _ := claims["sub"].(string)
	return unverified{alg: header.Alg, kid: header.Kid, iss: iss, sub: sub, claims: claims}, nil
}

// decodeClaims reads a JSON object whole, keeping numbers as written.
func decodeClaims(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, errClaimsJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errClaimsJSON
	}
	return claims, nil
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

// matches says whether every claim of the rule holds.
func (r rule) matches(claims map[string]any) bool {
	for _, c := range r.claims {
		got, ok := claimValue(claims, c.segs)
		if !ok {
			return false
		}
		if ok, _ := path.Match(c.glob, got); !ok {
			return false
		}
	}
	return true
}

// claimValue follows segs through nested objects to a scalar, as text.
// Anything else (missing, an object, an array, null) is not a value a rule
// can match.
func claimValue(claims map[string]any, segs []string) (string, bool) {
	var cur any = claims
	for _, seg := range segs {
		obj, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		if cur, ok = obj[seg]; !ok {
			return "", false
		}
	}
	switch v := cur.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}

// compared lists, for a no_rule message, each claim the rules look at and
// what the token holds there.
func (is *issuer) compared(claims map[string]any) string {
	var seen []string
	var out []string
	for _, r := range is.rules {
		for _, c := range r.claims {
			if slices.Contains(seen, c.path) {
				continue
			}
			seen = append(seen, c.path)
			if got, ok := claimValue(claims, c.segs); ok {
				out = append(out, fmt.Sprintf("%s=%q", c.path, brief(got)))
			} else {
				out = append(out, c.path+" (missing or not a string, number or bool)")
			}
		}
	}
	return strings.Join(out, ", ")
}

func audienceHas(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, x := range a {
			if s, ok := x.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

// numericDate reads a verified NumericDate claim.
func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "?"
	}
	return string(b)
}

// maxDetail bounds what a message quotes from a token or an issuer's
// answer, so that logs stay readable whatever either sends.
const maxDetail = 128

func brief(s string) string {
	if len(s) <= maxDetail {
		return s
	}
	return strings.ToValidUTF8(s[:maxDetail], "") + "…"
}

// briefError shortens an error's message and keeps its chain, for errors
// from go-oidc, which may quote a whole response body.
type briefError struct{ err error }

func (e briefError) Error() string {
	s := e.err.Error()
	if len(s) <= 4*maxDetail {
		return s
	}
	return strings.ToValidUTF8(s[:4*maxDetail], "") + "…"
}

func (e briefError) Unwrap() error { return e.err }
