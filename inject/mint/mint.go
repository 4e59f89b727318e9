package mint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/stackctl/stack/passport"
)

// Credential kinds.
const (
	KindStatic = "static"
	KindOAuth2 = "oauth2-client-credentials"
	KindGCP    = "gcp-service-account"
	KindGitHub = "github-app"
	KindAWS    = "aws-sts"
)

// Kinds lists every kind, static first.
var Kinds = []string{KindStatic, KindOAuth2, KindGCP, KindGitHub, KindAWS}

// MaxParams bounds a kind's parameters as stored.
const MaxParams = 16 << 10

// MaxAWSDuration is the longest session an aws-sts credential mints.
const MaxAWSDuration = 15 * time.Minute

var (
	// ErrInvalid wraps every problem with a kind's parameters or root
	// material, found before anything is stored.
	ErrInvalid = errors.New("mint: invalid credential")
	// ErrMint wraps every failure to mint: the issuer refused or could
	// not be reached. The message never holds a secret.
	ErrMint = errors.New("mint: cannot mint credential")
	// ErrNarrow wraps every refusal of a grant's narrowing: it asks for
	// more than the vault entry allows, or for something the kind cannot
	// express. It wraps ErrInvalid, but unlike the other ErrInvalid
	// errors it says nothing is wrong with the credential: the passport
	// asks for too much. Its message is fit for the agent: it names what
	// the grant asked for, never what else the credential could do.
	ErrNarrow error = narrowError{}
)

// narrowError is ErrNarrow: an ErrInvalid with a message of its own.
type narrowError struct{}

func (narrowError) Error() string { return "mint: the grant's narrowing is refused" }
func (narrowError) Unwrap() error { return ErrInvalid }

// Token is one minted credential.
type Token struct {
	// Value is what the credential's render writes: an access or
	// installation token. Empty for aws-sts.
	Value []byte
	// AWS holds the session credentials of an aws-sts credential.
	AWS *AWSSession
	// Expiry is when the issuer stops accepting it.
	Expiry time.Time
}

// Secret is what a response must never echo back to the agent: the
// token, or the AWS session token.
func (t Token) Secret() []byte {
	if t.AWS != nil {
		return []byte(t.AWS.SessionToken)
	}
	return t.Value
}

// clear zeroes the token's value and lets go of its AWS session (whose
// strings Go cannot zero): what is cleared holds nothing afterwards.
func (t *Token) clear() {
	clear(t.Value)
	t.Value, t.AWS = nil, nil
}

// AWSSession is a set of temporary AWS credentials.
type AWSSession struct {
	AccessKeyID     string    `json:"access_key_id"`
	SecretAccessKey string    `json:"secret_access_key"`
	SessionToken    string    `json:"session_token"`
	Expiry          time.Time `json:"expiry"`
}

// Request is what one mint needs.
type Request struct {
	// Kind is one of the minting kinds (not static).
	Kind string
	// Params are the kind's parameters as stored in the vault entry.
	Params json.RawMessage
	// Root is the decrypted root material. Mint does not keep it; the
	// caller clears it.
	Root []byte
	// Agent is the agent the credential is minted for (the AWS session
	// name).
	Agent string
	// Narrow is the narrowing of the grant that names the credential; nil
	// mints at the vault entry's own limit.
	Narrow *passport.Narrowing
}

// Env is what minting reaches the issuers with.
type Env struct {
	// HTTPClient calls token endpoints; nil means a client with the
	// system roots and a 30-second timeout.
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (e Env) withDefaults() Env {
	if e.HTTPClient == nil {
		e.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	return e
}

// kind is one minting kind.
type kind interface {
	// check validates params and root and returns params normalized
	// (compact JSON, defaults filled in).
	check(params json.RawMessage, root []byte) (json.RawMessage, error)
	// mint calls the issuer.
	mint(ctx context.Context, env Env, r Request) (Token, error)
	// ttl is how long what it mints lives, as far as params say; zero
	// when only the issuer knows.
	ttl(params json.RawMessage) time.Duration
}

// kinds holds the minting kinds by name; each registers itself from an
// init function in its own file.
var kinds = map[string]kind{}

func register(name string, k kind) {
	if !slices.Contains(Kinds, name) {
		panic("mint: register unknown kind " + name)
	}
	kinds[name] = k
}

// Minted reports whether kind mints (every kind but static).
func Minted(kind string) bool { return kind != KindStatic && kind != "" }

// Known reports whether kind names a credential kind.
func Known(kind string) bool { return slices.Contains(Kinds, kind) }

func lookup(name string) (kind, error) {
	if name == KindStatic || name == "" {
		return nil, fmt.Errorf("%w: kind static mints nothing", ErrInvalid)
	}
	k, ok := kinds[name]
	if !ok {
		return nil, fmt.Errorf("%w: unknown kind %q: want one of %v", ErrInvalid, name, Kinds)
	}
	return k, nil
}

// Check validates the parameters and root material of a credential of
// kind and returns the parameters normalized, ready to store. A static
// credential takes no parameters.
func Check(kind string, params json.RawMessage, root []byte) (json.RawMessage, error) {
	if kind == KindStatic || kind == "" {
		if len(bytes.TrimSpace(params)) > 0 && !bytes.Equal(bytes.TrimSpace(params), []byte("{}")) {
			return nil, fmt.Errorf("%w: kind static takes no parameters", ErrInvalid)
		}
		return nil, nil
	}
	k, err := lookup(kind)
	if err != nil {
		return nil, err
	}
	if len(params) > MaxParams {
		return nil, fmt.Errorf("%w: %s parameters of %d bytes, limit %d", ErrInvalid, kind, len(params), MaxParams)
	}
	return k.check(params, root)
}

// TTL is how long a credential of kind with params lives once minted, as
// far as its parameters say: zero for static credentials and for kinds
// whose issuer decides (the token's own expiry then says).
func TTL(kind string, params json.RawMessage) time.Duration {
	k, err := lookup(kind)
	if err != nil {
		return 0
	}
	return k.ttl(params)
}

// Mint mints one credential, calling its issuer.
func Mint(ctx context.Context, env Env, r Request) (Token, error) {
	k, err := lookup(r.Kind)
	if err != nil {
		return Token{}, err
	}
	env = env.withDefaults()
	t, err := k.mint(ctx, env, r)
	if err != nil {
		if !errors.Is(err, ErrMint) && !errors.Is(err, ErrInvalid) {
			err = fmt.Errorf("%w: %s: %w", ErrMint, r.Kind, err)
		}
		return Token{}, err
	}
	if !t.Expiry.After(env.Now()) {
		t.clear()
		return Token{}, fmt.Errorf("%w: %s: the issuer returned a credential that expires at %s, already past",
			ErrMint, r.Kind, t.Expiry.UTC().Format(time.RFC3339))
	}
	return t, nil
}

// decodeParams reads params into v strictly: unknown fields are errors.
func decodeParams(kind string, params json.RawMessage, v any) error {
	if len(bytes.TrimSpace(params)) == 0 {
		params = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s parameters: %v", ErrInvalid, kind, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: %s parameters: trailing data", ErrInvalid, kind)
	}
	return nil
}

// encodeParams is the stored form of a kind's parameters.
func encodeParams(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs
	}
	return b
}
