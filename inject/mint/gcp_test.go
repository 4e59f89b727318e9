package mint

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/stackctl/stack/passport"
)

// gcpTokenServer answers at a service account's token_uri as Google
// does for the JWT bearer flow (RFC 7523;
// https://developers.google.com/identity/protocols/oauth2/service-account#httprest):
// it verifies the assertion's RS256 signature with the account's public
// key and its claims, and hands out access tokens living 3599 seconds.
type gcpTokenServer struct {
	*httptest.Server
	email, keyID string
	pub          *rsa.PublicKey

	requests atomic.Int64
	mu       sync.Mutex
	scopes   map[string]string // access token → the scope it was minted for
}

const jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

func newGCPTokenServer(tb testing.TB, email, keyID string, pub *rsa.PublicKey) *gcpTokenServer {
	tb.Helper()
	s := &gcpTokenServer{email: email, keyID: keyID, pub: pub, scopes: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	s.Server = httptest.NewTLSServer(mux)
	tb.Cleanup(s.Close)
	return s
}

func (s *gcpTokenServer) tokenURI() string { return s.URL + "/token" }

func (s *gcpTokenServer) token(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	refuse := func(desc string) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": desc})
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		refuse("Content-Type " + ct)
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != jwtBearerGrant {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type", "error_description": "Invalid grant_type: " + r.PostForm.Get("grant_type")})
		return
	}
	tok, err := jwt.ParseSigned(r.PostForm.Get("assertion"), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		refuse("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
		return
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID != s.keyID {
		refuse("Invalid JWT Signature.")
		return
	}
	var claims struct {
		jwt.Claims
		Scope string `json:"scope"`
	}
	if err := tok.Claims(s.pub, &claims); err != nil {
		refuse("Invalid JWT Signature.")
		return
	}
	err = claims.ValidateWithLeeway(jwt.Expected{
		Issuer: s.email, AnyAudience: jwt.Audience{s.tokenURI()}, Time: time.Now(),
	}, 30*time.Second)
	switch {
	case err != nil:
		refuse("Invalid JWT: " + err.Error())
		return
	case claims.IssuedAt == nil || claims.Expiry == nil ||
		claims.Expiry.Time().Sub(claims.IssuedAt.Time()) > time.Hour:
		refuse("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
		return
	case claims.Scope == "":
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_scope", "error_description": "Empty or missing scope not allowed."})
		return
	}
	access := randomToken("ya29.")
	s.mu.Lock()
	s.scopes[access] = claims.Scope
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"access_token": access, "expires_in": 3599, "token_type": "Bearer"})
}

func (s *gcpTokenServer) scopeOf(token []byte) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	scope, ok := s.scopes[string(token)]
	return scope, ok
}

const (
	gcpEmail = "agent-reader@stack-test.iam.gserviceaccount.com"
	gcpKeyID = "8f3d2a41c0b7e6f5a4d3c2b1a0f9e8d7c6b5a4f3"
)

var gcpScopes = []string{
	"https://www.googleapis.com/auth/devstorage.read_only",
	"https://www.googleapis.com/auth/bigquery.readonly",
}

// serviceAccountJSON is a key file as Google's console hands it out.
func serviceAccountJSON(tb testing.TB, k *rsa.PrivateKey, tokenURI string) []byte {
	tb.Helper()
	b, err := json.Marshal(map[string]string{
		"type":                        "service_account",
		"project_id":                  "stack-test",
		"private_key_id":              gcpKeyID,
		"private_key":                 string(pkcs8PEM(tb, k)),
		"client_email":                gcpEmail,
		"client_id":                   "104526880961587823046",
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   tokenURI,
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"universe_domain":             "googleapis.com",
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// gcpFixture is a service account, its token server, and the credential's
// checked parameters.
func gcpFixture(tb testing.TB) (*gcpTokenServer, []byte, json.RawMessage) {
	tb.Helper()
	k := testRSAKey(tb, 0)
	ts := newGCPTokenServer(tb, gcpEmail, gcpKeyID, &k.PublicKey)
	key := serviceAccountJSON(tb, k, ts.tokenURI())
	params, err := Check(KindGCP, encodeParams(GCPParams{Scopes: gcpScopes}), key)
	if err != nil {
		tb.Fatalf("Check: %v", err)
	}
	return ts, key, params
}

func TestGCPMintsWithTheJWTBearerFlow(t *testing.T) {
	ts, key, params := gcpFixture(t)
	var p GCPParams
	if err := json.Unmarshal(params, &p); err != nil || p.ClientEmail != gcpEmail || p.TokenURL != ts.tokenURI() {
		t.Fatalf("Check filled in %s, want the key's client_email and token_uri", params)
	}
	if TTL(KindGCP, params) != time.Hour {
		t.Fatalf("TTL = %v", TTL(KindGCP, params))
	}
	for _, tc := range []struct {
		name   string
		narrow *passport.Narrowing
		scope  string
	}{
		{"the credential's scopes", nil, strings.Join(gcpScopes, " ")},
		{"narrowed", &passport.Narrowing{Scopes: gcpScopes[1:]}, gcpScopes[1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			tok, err := Mint(context.Background(), Env{HTTPClient: ts.Client()},
				Request{Kind: KindGCP, Params: params, Root: key, Agent: "a", Narrow: tc.narrow})
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			scope, ok := ts.scopeOf(tok.Value)
			if !ok || scope != tc.scope {
				t.Fatalf("the server minted %q for scope %q (known %v), want %q", tok.Value, scope, ok, tc.scope)
			}
			if tok.Expiry.Before(before.Add(3599*time.Second)) || tok.Expiry.After(time.Now().Add(3599*time.Second)) {
				t.Fatalf("expiry %v, want 3599 s on", tok.Expiry)
			}
		})
	}
}

func TestGCPScopeOutsideTheCredentialIsRefusedBeforeAnyCall(t *testing.T) {
	ts, key, params := gcpFixture(t)
	_, err := Mint(context.Background(), Env{HTTPClient: ts.Client()}, Request{
		Kind: KindGCP, Params: params, Root: key,
		Narrow: &passport.Narrowing{Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"}},
	})
	if !errors.Is(err, ErrNarrow) || !strings.Contains(err.Error(), "cloud-platform") || ts.requests.Load() != 0 {
		t.Fatalf("Mint = %v after %d calls, want ErrNarrow naming the scope and no call", err, ts.requests.Load())
	}
}

func TestGCPTamperedKeyFails(t *testing.T) {
	ts, _, params := gcpFixture(t)
	// Another private key under the same account and key id: the server
	// checks the signature with the account's real public key.
	other := serviceAccountJSON(t, testRSAKey(t, 1), ts.tokenURI())
	if _, err := Check(KindGCP, params, other); err != nil {
		t.Fatalf("Check: %v (the tampered key is well-formed)", err)
	}
	_, err := Mint(context.Background(), Env{HTTPClient: ts.Client()},
		Request{Kind: KindGCP, Params: params, Root: other})
	if !errors.Is(err, ErrMint) || !strings.Contains(err.Error(), "invalid_grant") || !strings.Contains(err.Error(), "Invalid JWT Signature") {
		t.Fatalf("Mint = %v, want ErrMint with invalid_grant", err)
	}
	if ts.requests.Load() != 1 {
		t.Fatalf("%d token requests, want 1", ts.requests.Load())
	}
	var key serviceAccountKey
	_ = json.Unmarshal(other, &key)
	mustNotLeak(t, err, key.PrivateKey, string(other))
	t.Log(err)
}

func TestGCPKeySwappedUnderTheParamsIsRefused(t *testing.T) {
	ts, key, _ := gcpFixture(t)
	params := encodeParams(GCPParams{Scopes: gcpScopes, ClientEmail: "someone-else@stack-test.iam.gserviceaccount.com", TokenURL: ts.tokenURI()})
	_, err := Mint(context.Background(), Env{HTTPClient: ts.Client()}, Request{Kind: KindGCP, Params: params, Root: key})
	if !errors.Is(err, ErrInvalid) || ts.requests.Load() != 0 {
		t.Fatalf("Mint = %v, want ErrInvalid before any call", err)
	}
}
