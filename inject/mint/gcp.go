package mint

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"time"

	"golang.org/x/oauth2/google"
)

func init() { register(KindGCP, gcpKind{}) }

// GCPParams are the parameters of a gcp-service-account credential. Its
// root material is a service-account key as Google hands it out (JSON).
type GCPParams struct {
	// Scopes are the most the credential may ask for, such as
	// https://www.googleapis.com/auth/devstorage.read_only. A grant's
	// narrowing picks among them. Required.
	Scopes []string `json:"scopes"`
	// ClientEmail is the service account's address, filled in from the
	// key; when set beforehand, the key must be that account's.
	ClientEmail string `json:"client_email,omitempty"`
	// TokenURL is where access tokens are minted, filled in from the
	// key's token_uri (Google's default when the key has none); when set
	// beforehand, it must be the key's. https only.
	TokenURL string `json:"token_url,omitempty"`
}

// GCPTokenURL is Google's token endpoint, for keys that name none.
const GCPTokenURL = "https://oauth2.googleapis.com/token"

// GCPTokenLife is how long Google's access tokens live.
const GCPTokenLife = time.Hour

// serviceAccountKey is the part of a key file minting reads.
type serviceAccountKey struct {
	Type         string `json:"type"`
	ClientEmail  string `json:"client_email"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	TokenURI     string `json:"token_uri"`
}

type gcpKind struct{}

func (gcpKind) check(params json.RawMessage, root []byte) (json.RawMessage, error) {
	p, err := gcpParams(params)
	if err != nil {
		return nil, err
	}
	key, err := parseServiceAccountKey(root)
	if err != nil {
		return nil, err
	}
	var pr problems
	if p.ClientEmail != "" && p.ClientEmail != key.ClientEmail {
		pr.add("client_email %q: the key is for %q", p.ClientEmail, key.ClientEmail)
	}
	if p.TokenURL != "" && p.TokenURL != key.TokenURI {
		pr.add("token_url %q: the key's token_uri is %q", p.TokenURL, key.TokenURI)
	}
	if err := pr.err(KindGCP + " parameters"); err != nil {
		return nil, err
	}
	p.ClientEmail, p.TokenURL = key.ClientEmail, key.TokenURI
	return encodeParams(p), nil
}

// gcpParams decodes and validates params, reporting every problem.
func gcpParams(params json.RawMessage) (GCPParams, error) {
	var p GCPParams
	if err := decodeParams(KindGCP, params, &p); err != nil {
		return p, err
	}
	var pr problems
	p.Scopes = pr.scopes("scopes", p.Scopes, true)
	pr.text("client_email", p.ClientEmail, false, 320)
	if p.TokenURL != "" {
		p.TokenURL = pr.httpsURL("token_url", p.TokenURL, false)
	}
	return p, pr.err(KindGCP + " parameters")
}

// parseServiceAccountKey reads and checks a service-account key: the
// fields minting needs, an RSA private key that parses, an https token
// URI. Its errors never quote the key.
func parseServiceAccountKey(root []byte) (serviceAccountKey, error) {
	var key serviceAccountKey
	if err := json.Unmarshal(root, &key); err != nil {
		return key, fmt.Errorf("%w: %s: the root material is not a service-account key (JSON)", ErrInvalid, KindGCP)
	}
	var pr problems
	if key.Type != "service_account" {
		pr.add("type %q: want service_account", key.Type)
	}
	pr.text("client_email", key.ClientEmail, true, 320)
	pr.text("private_key_id", key.PrivateKeyID, true, 256)
	if key.PrivateKey == "" {
		pr.add("private_key: required")
	} else if _, err := parseRSAPrivateKey([]byte(key.PrivateKey)); err != nil {
		pr.add("private_key: %v", err)
	}
	if key.TokenURI == "" {
		key.TokenURI = GCPTokenURL
	}
	key.TokenURI = pr.httpsURL("token_uri", key.TokenURI, false)
	return key, pr.err(KindGCP + " key")
}

// parseRSAPrivateKey reads a PEM RSA private key, PKCS#1 or PKCS#8. Its
// errors never quote the key.
func parseRSAPrivateKey(b []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("not a PEM private key")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("the PKCS#1 RSA key does not parse")
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("the PKCS#8 key does not parse")
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("a %T, want an RSA key", k)
		}
		return rk, nil
	default:
		return nil, fmt.Errorf("a PEM %q block, want RSA PRIVATE KEY or PRIVATE KEY", block.Type)
	}
}

func (gcpKind) ttl(json.RawMessage) time.Duration { return GCPTokenLife }

func (gcpKind) mint(ctx context.Context, env Env, r Request) (Token, error) {
	p, err := gcpParams(r.Params)
	if err != nil {
		return Token{}, err
	}
	scopes, err := narrowScopes(KindGCP, p.Scopes, r.Narrow)
	if err != nil {
		return Token{}, err
	}
	key, err := parseServiceAccountKey(r.Root)
	if err != nil {
		return Token{}, err
	}
	// The stored parameters were filled in from this key; a key that
	// disagrees was swapped under them.
	if p.ClientEmail != "" && p.ClientEmail != key.ClientEmail {
		return Token{}, fmt.Errorf("%w: %s: the key is for %q, the credential for %q", ErrInvalid, KindGCP, key.ClientEmail, p.ClientEmail)
	}
	cfg, err := google.JWTConfigFromJSON(r.Root, scopes...)
	if err != nil {
		return Token{}, fmt.Errorf("%w: %s: the root material is not a service-account key", ErrInvalid, KindGCP)
	}
	defer clear(cfg.PrivateKey)
	cfg.TokenURL = key.TokenURI
	if p.TokenURL != "" {
		cfg.TokenURL = p.TokenURL
	}
	// The assertion's audience is the token endpoint, as Google checks;
	// an audience field in the key file must not redirect it.
	cfg.Audience = ""
	tok, err := cfg.TokenSource(httpClientContext(ctx, env.HTTPClient)).Token()
	if err != nil {
		return Token{}, issuerError(KindGCP, err, r.Root, []byte(key.PrivateKey))
	}
	return oauth2Token(env, tok), nil
}
