// Package handoff seals and opens handoffs between agents: a JSON payload
// signed by the sending agent's key (JWS, EdDSA) and encrypted to the
// receiving agent's key (JWE compact, ECDH-ES+A256KW with A256GCM). Both
// are the standard formats, so any JOSE library given the keys opens one
// (see handoff_interop_test.go).
//
// # Basics
//
// Each agent has two key pairs (AgentKeys), held by its sidecar: an
// Ed25519 key that signs what it sends, whose RFC 7638 thumbprint its
// passports carry as cnf.jkt, and a P-256 key that what it receives is
// encrypted to. A sealed handoff is
//
//	JWE(recipient's P-256 key,
//	    JWS(sender's Ed25519 key, header jwk = its public key,
//	        {jti, iss: sender, aud: recipient, schema, iat, exp,
//	         passport: the sender's passport, payload}))
//
// Open decrypts with the recipient's key, then checks, in that order, the
// recipient, the sender's passport (through the caller's verifier, as it
// was when the handoff was sealed), that the signing key is the one the
// passport confirms (cnf.jkt), the signature, the sender's name and the
// expiry. Every refusal wraps one of the errors in errors.go.
//
// # Caveats
//
// What the payload must look like (its schema) and whether the sender may
// hand off to the recipient at all (its passport's grants) are the
// caller's: this package seals and opens.
package handoff

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Where an agent reaches its sidecar's handoff desk, through the
// HTTPS_PROXY it has: https://SidecarHost + SidecarPath. The sidecar
// answers requests to SidecarHost itself; nothing is dialled.
const (
	SidecarHost = "handoff.stack.internal"
	// SidecarPath: POST sends, GET lists the inbox, GET SidecarPath/{id}
	// fetches one handoff, once.
	SidecarPath = "/v1/handoffs"
	// SidecarPassportPath tells the agent what the passport its requests
	// run on allows.
	SidecarPassportPath = "/v1/passport"
)

// The algorithms: fixed, not negotiated.
const (
	SignatureAlgorithm = jose.EdDSA
	KeyAlgorithm       = jose.ECDH_ES_A256KW
	ContentEncryption  = jose.A256GCM
	TokenType          = "stack-handoff+jws"
)

// Limits of a handoff; the control plane's drop-off holds to them too.
const (
	// MaxSize bounds a sealed handoff (the compact JWE).
	MaxSize = 256 << 10
	// MaxTTL bounds a handoff's life (exp - iat).
	MaxTTL = 7 * 24 * time.Hour

	defaultClockLeeway = 30 * time.Second
	maxPassportLength  = 16 << 10
)

// AgentKeys are an agent's private keys: Sign signs what it sends, Enc
// decrypts what it receives.
type AgentKeys struct {
	Sign ed25519.PrivateKey
	Enc  *ecdsa.PrivateKey
}

// GenerateKeys makes an agent's key pairs.
func GenerateKeys() (*AgentKeys, error) {
	_, sign, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	enc, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &AgentKeys{Sign: sign, Enc: enc}, nil
}

// PublicKeys are what others need of an agent: the key its handoffs are
// signed with and the key handoffs to it are encrypted to, as JWKs.
type PublicKeys struct {
	Sign jose.JSONWebKey `json:"sign"`
	Enc  jose.JSONWebKey `json:"enc"`
}

// Public returns the agent's public keys, each with its RFC 7638
// thumbprint as kid.
func (k *AgentKeys) Public() PublicKeys {
	sign := jose.JSONWebKey{Key: k.Sign.Public(), Algorithm: string(SignatureAlgorithm), Use: "sig"}
	sign.KeyID = thumbprint(sign)
	enc := jose.JSONWebKey{Key: &k.Enc.PublicKey, Algorithm: string(KeyAlgorithm), Use: "enc"}
	enc.KeyID = thumbprint(enc)
	return PublicKeys{Sign: sign, Enc: enc}
}

// JKT is the thumbprint of the signing key, for a passport's cnf.jkt.
func (k *AgentKeys) JKT() string { return k.Public().Sign.KeyID }

// thumbprint is the RFC 7638 SHA-256 thumbprint, base64url.
func thumbprint(k jose.JSONWebKey) string {
	b, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Claims are what the sender signs.
type Claims struct {
	ID       string `json:"jti"`
	From     string `json:"iss"`
	To       string `json:"aud"`
	Schema   string `json:"schema"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	// Passport is the sender's passport when it sealed the handoff.
	Passport string          `json:"passport"`
	Payload  json.RawMessage `json:"payload"`
}

// SealRequest is a handoff to seal.
type SealRequest struct {
	From, To, Schema string
	// Passport is the sender's current passport; its cnf.jkt must name
	// the sender's signing key.
	Passport string
	Payload  json.RawMessage
	TTL      time.Duration
	// Now is the sealing time (time.Now when zero).
	Now time.Time
}

// Seal signs the payload with the sender's key and encrypts it to the
// recipient's (its Enc public key). It returns the compact JWE and the
// handoff's id.
func Seal(req SealRequest, sender *AgentKeys, recipient jose.JSONWebKey) (token, id string, err error) {
	if req.From == "" || req.To == "" || req.Schema == "" || req.Passport == "" {
		return "", "", fmt.Errorf("%w: from, to, schema and the passport are required", ErrMalformed)
	}
	if err := ValidSchemaName(req.Schema); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if req.TTL <= 0 || req.TTL > MaxTTL {
		return "", "", fmt.Errorf("%w: a handoff's ttl must be positive and at most %s", ErrMalformed, MaxTTL)
	}
	if !json.Valid(req.Payload) {
		return "", "", fmt.Errorf("%w: the payload is not JSON", ErrMalformed)
	}
	if _, ok := recipient.Key.(*ecdsa.PublicKey); !ok {
		return "", "", fmt.Errorf("%w: the recipient's key is not a P-256 public key", ErrMalformed)
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", "", err
	}
	id = hex.EncodeToString(raw)
	claims, err := json.Marshal(Claims{
		ID: id, From: req.From, To: req.To, Schema: req.Schema,
		IssuedAt: now.Unix(), Expiry: now.Add(req.TTL).Unix(),
		Passport: req.Passport, Payload: req.Payload,
	})
	if err != nil {
		return "", "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: SignatureAlgorithm, Key: sender.Sign},
		(&jose.SignerOptions{EmbedJWK: true}).WithType(TokenType))
	if err != nil {
		return "", "", err
	}
	jws, err := signer.Sign(claims)
	if err != nil {
		return "", "", err
	}
	signed, err := jws.CompactSerialize()
	if err != nil {
		return "", "", err
	}
	enc, err := jose.NewEncrypter(ContentEncryption,
		jose.Recipient{Algorithm: KeyAlgorithm, Key: recipient.Key, KeyID: recipient.KeyID},
		(&jose.EncrypterOptions{}).WithContentType("JWT").WithType("JWE"))
	if err != nil {
		return "", "", err
	}
	jwe, err := enc.Encrypt([]byte(signed))
	if err != nil {
		return "", "", err
	}
	if token, err = jwe.CompactSerialize(); err != nil {
		return "", "", err
	}
	if len(token) > MaxSize {
		return "", "", fmt.Errorf("%w: sealed, %d bytes, at most %d", ErrTooLarge, len(token), MaxSize)
	}
	return token, id, nil
}

// PassportCheck verifies a sender's passport as it was at a time and
// returns the agent it names and its cnf.jkt ("" when it has none).
type PassportCheck func(passport string, at time.Time) (agent, jkt string, err error)

// OpenOptions configure Open.
type OpenOptions struct {
	// Recipient is the agent opening the handoff; Keys are its keys.
	Recipient string
	Keys      *AgentKeys
	// CheckPassport verifies the sender's passport.
	CheckPassport PassportCheck
	// SentAt, when set, is when the handoff was deposited, as a party the
	// recipient trusts (the control plane) recorded it: the sender's
	// passport is checked as it was then, and the sealing time (iat, the
	// sender's word) must agree with it. When zero, iat is used.
	SentAt time.Time
	// Now is the time (time.Now when zero).
	Now time.Time
}

// Opened is a handoff opened and verified.
type Opened struct {
	Claims
	// SenderKey is the key that signed it, which the sender's passport
	// confirms.
	SenderKey jose.JSONWebKey
	// PayloadHash is SHA-256 of the payload, hex: what audit records hold
	// of it.
	PayloadHash string
}

// Open decrypts a sealed handoff with the recipient's key and verifies
// it (see the package doc for the order of the checks).
func Open(token string, opts OpenOptions) (Opened, error) {
	var out Opened
	if len(token) > MaxSize {
		return out, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(token), MaxSize)
	}
	if opts.Keys == nil || opts.CheckPassport == nil || opts.Recipient == "" {
		return out, errors.New("handoff: Open needs the recipient, its keys and a passport check")
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	jwe, err := jose.ParseEncryptedCompact(token, []jose.KeyAlgorithm{KeyAlgorithm}, []jose.ContentEncryption{ContentEncryption})
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	inner, err := jwe.Decrypt(opts.Keys.Enc)
	if err != nil {
		// A tampered ciphertext, or one sealed to another key.
		return out, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	jws, err := jose.ParseSignedCompact(string(inner), []jose.SignatureAlgorithm{SignatureAlgorithm})
	if err != nil || len(jws.Signatures) != 1 {
		return out, fmt.Errorf("%w: the content is not one signed handoff: %v", ErrMalformed, err)
	}
	hdr := jws.Signatures[0].Protected
	if hdr.JSONWebKey == nil || !hdr.JSONWebKey.IsPublic() || !hdr.JSONWebKey.Valid() {
		return out, fmt.Errorf("%w: the signature names no public key (jwk header)", ErrSignature)
	}
	if typ, _ := hdr.ExtraHeaders[jose.HeaderType].(string); typ != TokenType {
		return out, fmt.Errorf("%w: typ %q, want %q", ErrMalformed, typ, TokenType)
	}
	// The claims are read before the signature is checked only to learn
	// which passport vouches for the signing key; nothing is trusted yet.
	var c Claims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		return out, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	if c.To != opts.Recipient {
		return out, fmt.Errorf("%w: sealed for %q, opened by %q", ErrWrongRecipient, c.To, opts.Recipient)
	}
	if len(c.Passport) > maxPassportLength {
		return out, fmt.Errorf("%w: the sender's passport is %d bytes", ErrMalformed, len(c.Passport))
	}
	sent := time.Unix(c.IssuedAt, 0)
	if !opts.SentAt.IsZero() {
		if d := sent.Sub(opts.SentAt); d > defaultClockLeeway || d < -defaultClockLeeway {
			return out, fmt.Errorf("%w: sealed at %s but deposited at %s", ErrSender, sent.UTC().Format(time.RFC3339), opts.SentAt.UTC().Format(time.RFC3339))
		}
		sent = opts.SentAt
	}
	if c.Expiry-c.IssuedAt > int64(MaxTTL/time.Second) {
		return out, fmt.Errorf("%w: a life longer than %s", ErrMalformed, MaxTTL)
	}
	agent, jkt, err := opts.CheckPassport(c.Passport, sent)
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrSender, err)
	}
	key := *hdr.JSONWebKey
	if jkt == "" || thumbprint(key) != jkt {
		return out, fmt.Errorf("%w: the signing key is not the one the sender's passport confirms (cnf.jkt)", ErrSender)
	}
	if _, err := jws.Verify(key); err != nil {
		return out, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	if c.From != agent {
		return out, fmt.Errorf("%w: signed as %q with %q's passport", ErrSender, c.From, agent)
	}
	if c.Expiry == 0 || now.After(time.Unix(c.Expiry, 0).Add(defaultClockLeeway)) {
		return out, fmt.Errorf("%w: expired at %s", ErrExpired, time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	}
	if time.Unix(c.IssuedAt, 0).After(now.Add(defaultClockLeeway)) {
		return out, fmt.Errorf("%w: sealed in the future (%s)", ErrMalformed, time.Unix(c.IssuedAt, 0).UTC().Format(time.RFC3339))
	}
	if !json.Valid(c.Payload) {
		return out, fmt.Errorf("%w: the payload is not JSON", ErrMalformed)
	}
	sum := sha256.Sum256(c.Payload)
	return Opened{Claims: c, SenderKey: key, PayloadHash: hex.EncodeToString(sum[:])}, nil
}

// keysJSON is how AgentKeys are kept and handed to a sidecar: both
// private keys as JWKs.
type keysJSON struct {
	Sign jose.JSONWebKey `json:"sign"`
	Enc  jose.JSONWebKey `json:"enc"`
}

// MarshalJSON encodes the private keys as JWKs: keep the result wrapped.
func (k *AgentKeys) MarshalJSON() ([]byte, error) {
	return json.Marshal(keysJSON{Sign: jose.JSONWebKey{Key: k.Sign}, Enc: jose.JSONWebKey{Key: k.Enc}})
}

// UnmarshalJSON decodes what MarshalJSON encoded, refusing anything but
// an Ed25519 and a P-256 private key.
func (k *AgentKeys) UnmarshalJSON(b []byte) error {
	var j keysJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("handoff: agent keys: %w", err)
	}
	sign, ok := j.Sign.Key.(ed25519.PrivateKey)
	if !ok {
		return errors.New("handoff: agent keys: sign is not an Ed25519 private key")
	}
	enc, ok := j.Enc.Key.(*ecdsa.PrivateKey)
	if !ok || enc.Curve != elliptic.P256() {
		return errors.New("handoff: agent keys: enc is not a P-256 private key")
	}
	k.Sign, k.Enc = sign, enc
	return nil
}
