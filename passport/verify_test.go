package passport

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/stackctl/stack/reason"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64json(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

// signRaw signs header and payload with an Ed25519 key, by hand.
func signRaw(header, payload string, priv ed25519.PrivateKey) string {
	input := header + "." + payload
	return input + "." + b64(ed25519.Sign(priv, []byte(input)))
}

// signClaims signs arbitrary claims with the fixture's current key.
func (f *fixture) signClaims(t testing.TB, c *Claims) string {
	t.Helper()
	tok, err := f.issuer.sign(c, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	f := newFixture(t, nil)
	tok, issued := f.issue(t, IssueRequest{Agent: "billing-bot", Mode: ModeAlert})
	got, err := f.verify.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Subject != "billing-bot" || got.ID != issued.ID || got.Mode != ModeAlert || got.Issuer != DefaultIssuer {
		t.Errorf("claims = %+v, issued %+v", got, issued)
	}
	if len(got.Audience) != 1 || got.Audience[0] != DefaultAudience {
		t.Errorf("aud = %v", got.Audience)
	}
	if want := f.clock.Now().Add(DefaultTTL); !got.Expiry.Equal(want) {
		t.Errorf("exp = %s, want %s", got.Expiry, want)
	}
	if raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(issued.ID, ".")[0]); len(raw) != 16 {
		t.Errorf("jti %q is not 128 bits of base64url", issued.ID)
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	var h map[string]string
	if err := json.Unmarshal(hdr, &h); err != nil {
		t.Fatal(err)
	}
	kid, _ := f.keys.Current(f.clock.Now())
	if h["alg"] != "EdDSA" || h["typ"] != TokenType || h["kid"] != kid {
		t.Errorf("header = %v", h)
	}
	if d := got.Scope.Allows(Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/balance"}); !d.Allowed {
		t.Errorf("scope from token denies a granted request: %s", d.Reason)
	}
}

func TestIssueRequestErrors(t *testing.T) {
	f := newFixture(t, nil)
	cases := []struct {
		name string
		req  IssueRequest
		want error
	}{
		{"no agent", IssueRequest{Scope: stripeScope()}, ErrInvalidRequest},
		{"agent with colon", IssueRequest{Agent: "a:b", Scope: stripeScope()}, ErrInvalidRequest},
		{"empty scope", IssueRequest{Agent: "a", Scope: Scope{}}, ErrInvalidScope},
		{"bad mode", IssueRequest{Agent: "a", Scope: stripeScope(), Mode: "loose"}, ErrInvalidRequest},
		{"negative ttl", IssueRequest{Agent: "a", Scope: stripeScope(), TTL: -time.Minute}, ErrInvalidRequest},
		{"ttl over max", IssueRequest{Agent: "a", Scope: stripeScope(), TTL: 2 * time.Hour}, ErrTTLTooLong},
		{"bad parent", IssueRequest{Agent: "a", Scope: stripeScope(), Parent: "x.y.z"}, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := f.issuer.Issue(context.Background(), tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	f.issuer.MaxTTL = 30 * time.Minute
	if _, c := f.issue(t, IssueRequest{TTL: 30 * time.Minute}); !c.Expiry.Equal(f.clock.Now().Add(30 * time.Minute)) {
		t.Errorf("exp = %s", c.Expiry)
	}
}

func TestVerifyTypedErrors(t *testing.T) {
	f := newFixture(t, nil)
	good, claims := f.issue(t, IssueRequest{})
	parts := strings.Split(good, ".")
	kid, priv := f.keys.Current(f.clock.Now())
	hdr := func(m map[string]any) string { return b64json(t, m) }
	okHeader := hdr(map[string]any{"alg": "EdDSA", "typ": TokenType, "kid": kid})

	flipSig := func() string {
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sig[10] ^= 0x01
		return parts[0] + "." + parts[1] + "." + b64(sig)
	}
	otherPayload := func() string {
		c := *claims
		c.Subject = "someone-else"
		return parts[0] + "." + b64json(t, c) + "." + parts[2]
	}
	hs256 := func() string {
		// The classic confusion: HMAC keyed with the public key bytes.
		h := hdr(map[string]any{"alg": "HS256", "typ": TokenType, "kid": kid})
		mac := hmac.New(sha256.New, priv.Public().(ed25519.PublicKey))
		mac.Write([]byte(h + "." + parts[1]))
		return h + "." + parts[1] + "." + b64(mac.Sum(nil))
	}
	rs256 := func() string {
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: rk, KeyID: kid}},
			(&jose.SignerOptions{}).WithType(TokenType))
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		obj, err := s.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := obj.CompactSerialize()
		return tok
	}
	foreign := func() string {
		other := newFixture(t, nil)
		tok, _ := other.issue(t, IssueRequest{})
		return tok
	}
	withClaims := func(mut func(c *Claims)) string {
		c := *claims
		mut(&c)
		return f.signClaims(t, &c)
	}
	rawClaims := func(m map[string]any) string { return signRaw(okHeader, b64json(t, m), priv) }

	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"too large", strings.Repeat("a", MaxTokenSize+1), ErrTooLarge},
		{"empty", "", ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"four parts", good + ".x", ErrMalformed},
		{"header not base64", "!!." + parts[1] + "." + parts[2], ErrMalformed},
		{"header not json", b64([]byte("nope")) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"alg none", hdr(map[string]any{"alg": "none", "typ": TokenType, "kid": kid}) + "." + parts[1] + ".", ErrUnsupportedAlgorithm},
		{"alg none no kid", hdr(map[string]any{"alg": "none"}) + "." + parts[1] + ".", ErrUnsupportedAlgorithm},
		{"alg HS256", hs256(), ErrUnsupportedAlgorithm},
		{"alg RS256", rs256(), ErrUnsupportedAlgorithm},
		{"alg not a string", hdr(map[string]any{"alg": 1, "typ": TokenType, "kid": kid}) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"wrong typ", signRaw(hdr(map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": kid}), parts[1], priv), ErrMalformed},
		{"no kid", signRaw(hdr(map[string]any{"alg": "EdDSA", "typ": TokenType}), parts[1], priv), ErrMalformed},
		{"embedded jwk", signRaw(hdr(map[string]any{"alg": "EdDSA", "typ": TokenType, "kid": kid, "jwk": map[string]string{"kty": "OKP"}}), parts[1], priv), ErrMalformed},
		{"crit header", signRaw(hdr(map[string]any{"alg": "EdDSA", "typ": TokenType, "kid": kid, "crit": []string{"exp"}}), parts[1], priv), ErrMalformed},
		{"unknown kid", signRaw(hdr(map[string]any{"alg": "EdDSA", "typ": TokenType, "kid": "nope"}), parts[1], priv), ErrUnknownKey},
		{"foreign key", foreign(), ErrUnknownKey},
		{"flipped signature bit", flipSig(), ErrBadSignature},
		{"swapped payload", otherPayload(), ErrBadSignature},
		{"signature not base64", parts[0] + "." + parts[1] + ".!!", ErrMalformed},
		{"claims not json", signRaw(okHeader, b64([]byte("[1,2]")), priv), ErrMalformed},
		{"missing sub", withClaims(func(c *Claims) { c.Subject = "" }), ErrMalformed},
		{"missing exp", rawClaims(map[string]any{"sub": "a", "jti": "j", "iat": f.clock.Now().Unix(), "aud": DefaultAudience, "iss": DefaultIssuer, "scope": stripeScope()}), ErrMalformed},
		{"bad mode", withClaims(func(c *Claims) { c.Mode = "lax" }), ErrMalformed},
		{"invalid scope", withClaims(func(c *Claims) { c.Scope = Scope{{Hosts: []string{"*"}}} }), ErrMalformed},
		{"wrong audience", withClaims(func(c *Claims) { c.Audience = []string{"elsewhere"} }), ErrWrongAudience},
		{"wrong issuer", withClaims(func(c *Claims) { c.Issuer = "mallory" }), ErrWrongIssuer},
		{"expired", withClaims(func(c *Claims) { c.Expiry = f.clock.Now().Add(-time.Minute) }), ErrExpired},
		{"not yet valid", withClaims(func(c *Claims) { c.NotBefore = f.clock.Now().Add(time.Minute) }), ErrNotYetValid},
		{"issued in the future", withClaims(func(c *Claims) { c.IssuedAt = f.clock.Now().Add(time.Minute) }), ErrNotYetValid},
		{"chain too deep", withClaims(func(c *Claims) { c.Delegation = []string{"a", "b", "c", "d", "e"} }), ErrChainTooDeep},
		{"ancestors not matching del", withClaims(func(c *Claims) {
			c.Delegation = []string{"a", "b"}
			c.Ancestors = []Ancestor{{Agent: "x", IssuedAt: f.clock.Now()}}
		}), ErrMalformed},
		{"del_sub without del_iat", rawClaims(map[string]any{"iss": claims.Issuer, "sub": "a", "aud": claims.Audience, "iat": f.clock.Now().Unix(), "exp": f.clock.Now().Add(time.Hour).Unix(), "jti": "j", "scope": claims.Scope, "del": []string{"p"}, "del_sub": []string{"x"}}), ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := f.verify.Verify(tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if c != nil {
				t.Fatalf("claims returned with error")
			}
		})
	}
	if _, err := f.verify.Verify(good); err != nil {
		t.Fatalf("good token after the bad ones: %v", err)
	}
}

func TestVerifyLeeway(t *testing.T) {
	f := newFixture(t, nil)
	tok, c := f.issue(t, IssueRequest{TTL: time.Minute})
	f.clock.Advance(time.Minute + DefaultLeeway - time.Second)
	if _, err := f.verify.Verify(tok); err != nil {
		t.Fatalf("inside the leeway: %v", err)
	}
	f.clock.Advance(time.Second)
	if _, err := f.verify.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("at exp+leeway: err = %v, want ErrExpired (exp %s)", err, c.Expiry)
	}

	// A verifier whose clock runs behind by less than the leeway accepts.
	behind := func(d time.Duration) func() time.Time { return func() time.Time { return f.clock.Now().Add(-d) } }
	tok, _ = f.issue(t, IssueRequest{})
	for _, tc := range []struct {
		skew time.Duration
		want error
	}{{DefaultLeeway, nil}, {DefaultLeeway + time.Second, ErrNotYetValid}} {
		v, err := NewVerifier(VerifierOptions{Keys: f.keys.JWKS(f.clock.Now()), Now: behind(tc.skew)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok); !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("skew %s: err = %v, want %v", tc.skew, err, tc.want)
		}
	}
}

func TestVerifyRevoked(t *testing.T) {
	rev := &memRevocations{}
	f := newFixture(t, rev)
	tok, c := f.issue(t, IssueRequest{})
	rev.revoke(c.ID)
	if _, err := f.verify.Verify(tok); !errors.Is(err, ErrRevoked) {
		t.Fatalf("err = %v, want ErrRevoked", err)
	}
}

func TestUpdateJWKS(t *testing.T) {
	f := newFixture(t, nil)
	if err := f.verify.UpdateJWKS(jose.JSONWebKeySet{}); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("empty set: err = %v", err)
	}
	_, priv := f.keys.Current(f.clock.Now())
	if err := f.verify.UpdateJWKS(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: priv, KeyID: "k"}}}); err == nil {
		t.Errorf("a private key in the JWKS was accepted")
	}
	// The JWKS survives a JSON round trip, as a remote verifier sees it.
	b, err := json.Marshal(f.keys.JWKS(f.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `"d"`) {
		t.Fatalf("JWKS leaks a private part: %s", b)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	if set.Keys[0].Use != "sig" || set.Keys[0].Algorithm != "EdDSA" {
		t.Errorf("jwk = %+v", set.Keys[0])
	}
	v, err := NewVerifier(VerifierOptions{Keys: set, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := f.issue(t, IssueRequest{})
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("Verify with a decoded JWKS: %v", err)
	}
}

func TestReason(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{ErrMalformed, reason.PassportInvalid},
		{ErrTooLarge, reason.PassportInvalid},
		{ErrUnsupportedAlgorithm, reason.PassportInvalid},
		{ErrUnknownKey, reason.PassportInvalid},
		{ErrBadSignature, reason.PassportInvalid},
		{ErrNotYetValid, reason.PassportInvalid},
		{ErrWrongAudience, reason.PassportInvalid},
		{ErrWrongIssuer, reason.PassportInvalid},
		{ErrChainTooDeep, reason.PassportInvalid},
		{fmt.Errorf("verify: %w", ErrExpired), reason.PassportExpired},
		{fmt.Errorf("verify: %w", ErrRevoked), reason.PassportRevoked},
		{ErrScopeNotSubset, reason.ScopeDenied},
		{errors.New("anything else"), reason.PassportInvalid},
	}
	for _, tc := range cases {
		if got := Reason(tc.err); got != tc.want {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// Revocations are kept only max_ttl past the revocation, so the verifier
// refuses a passport that claims to live longer, however it is signed.
func TestVerifyMaxTTL(t *testing.T) {
	f := newFixture(t, nil)
	now := f.clock.Now()
	signed := func(iat, nbf, exp time.Time) string {
		_, c := f.issue(t, IssueRequest{})
		c.IssuedAt, c.NotBefore, c.Expiry = iat, nbf, exp
		return f.signClaims(t, c)
	}
	const tenYears = 10 * 365 * 24 * time.Hour
	twoHours, err := NewVerifier(VerifierOptions{Keys: f.keys.JWKS(now), Now: f.clock.Now, MaxTTL: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		v     *Verifier
		token string
		want  error
	}{
		{"ten years", f.verify, signed(now, now, now.Add(tenYears)), ErrTTLTooLong},
		{"ten years, nbf an hour before exp", f.verify, signed(now, now.Add(tenYears-time.Hour), now.Add(tenYears)), ErrTTLTooLong},
		{"ten years, no nbf", f.verify, signed(now, time.Time{}, now.Add(tenYears)), ErrTTLTooLong},
		{"issued long ago", f.verify, signed(now.Add(-tenYears), now, now.Add(time.Minute)), ErrTTLTooLong},
		{"exactly max_ttl", f.verify, signed(now, now, now.Add(DefaultMaxTTL)), nil},
		{"a second over max_ttl", f.verify, signed(now, now, now.Add(DefaultMaxTTL+time.Second)), ErrTTLTooLong},
		{"exactly a configured max_ttl", twoHours, signed(now, now, now.Add(2*time.Hour)), nil},
		{"over a configured max_ttl", twoHours, signed(now, now, now.Add(2*time.Hour+time.Second)), ErrTTLTooLong},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.v.Verify(tc.token)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || Reason(err) != reason.PassportInvalid || !strings.Contains(err.Error(), "max_ttl") {
				t.Fatalf("err = %v (reason %q), want %v, %s, naming max_ttl", err, Reason(err), tc.want, reason.PassportInvalid)
			}
		})
	}
}
