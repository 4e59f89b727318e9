package mint

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/go-oauth2/oauth2/v4/server"
	"github.com/go-oauth2/oauth2/v4/store"

	"github.com/stackctl/stack/internal/testclock"
	"github.com/stackctl/stack/passport"
)

// oauthServer is an OAuth2 authorization server (go-oauth2/oauth2) on
// loopback TLS: a token endpoint for the client-credentials grant, and a
// resource that accepts only the tokens it issued.
type oauthServer struct {
	*httptest.Server
	srv *server.Server
	// requests counts calls to the token endpoint.
	requests atomic.Int64
}

type oauthServerOptions struct {
	clientID, secret string
	// scopes the client is registered for: the server refuses others.
	scopes []string
	// exp is the access tokens' lifetime; zero: they never expire, and
	// the token response says expires_in 0.
	exp time.Duration
	// basic: the client authenticates with HTTP Basic, else in the body.
	basic bool
}

func newOAuthServer(tb testing.TB, o oauthServerOptions) *oauthServer {
	tb.Helper()
	m := manage.NewDefaultManager()
	m.SetClientTokenCfg(&manage.Config{AccessTokenExp: o.exp})
	m.MapTokenStorage(&memTokenStore{byAccess: map[string]oauth2.TokenInfo{}})
	clients := store.NewClientStore()
	if err := clients.Set(o.clientID, &models.Client{ID: o.clientID, Secret: o.secret, Domain: "https://agent.example"}); err != nil {
		tb.Fatal(err)
	}
	m.MapClientStorage(clients)
	// The token is bound to the audience asked for, as Auth0 does.
	m.SetExtractExtensionHandler(func(tgr *oauth2.TokenGenerateRequest, ti oauth2.ExtendableTokenInfo) {
		if aud := tgr.Request.FormValue("audience"); aud != "" {
			ti.SetExtension(url.Values{"audience": {aud}})
		}
	})

	srv := server.NewServer(server.NewConfig(), m)
	srv.SetAllowedGrantType(oauth2.ClientCredentials)
	if o.basic {
		srv.SetClientInfoHandler(server.ClientBasicHandler)
	} else {
		srv.SetClientInfoHandler(server.ClientFormHandler)
	}
	srv.SetClientScopeHandler(func(tgr *oauth2.TokenGenerateRequest) (bool, error) {
		for s := range strings.FieldsSeq(tgr.Scope) {
			if !slices.Contains(o.scopes, s) {
				return false, nil
			}
		}
		return true, nil
	})
	// The in-memory client store says "not found" for an unknown client,
	// which the server would answer as server_error.
	srv.SetInternalErrorHandler(func(err error) *oerrors.Response {
		if err.Error() == "not found" {
			return &oerrors.Response{Error: oerrors.ErrInvalidClient, Description: oerrors.Descriptions[oerrors.ErrInvalidClient],
				StatusCode: oerrors.StatusCodes[oerrors.ErrInvalidClient]}
		}
		tb.Logf("authorization server: %v", err)
		return nil
	})

	s := &oauthServer{srv: srv}
	mux := http.NewServeMux()
	mux.HandleFunc("/oauth/token", func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		_ = srv.HandleTokenRequest(w, r)
	})
	mux.HandleFunc("/api/whoami", func(w http.ResponseWriter, r *http.Request) {
		ti, err := srv.ValidationBearerToken(r)
		if err != nil {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
			return
		}
		info := map[string]string{"client_id": ti.GetClientID(), "scope": ti.GetScope()}
		if et, ok := ti.(oauth2.ExtendableTokenInfo); ok && et.GetExtension() != nil {
			info["audience"] = et.GetExtension().Get("audience")
		}
		writeJSON(w, http.StatusOK, info)
	})
	s.Server = httptest.NewTLSServer(mux)
	tb.Cleanup(s.Close)
	return s
}

func (s *oauthServer) tokenURL() string { return s.URL + "/oauth/token" }

// whoami calls the resource with token: what the server knows of it.
func (s *oauthServer) whoami(tb testing.TB, token []byte) (int, map[string]string) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+string(token))
	resp, err := s.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var info map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, info
}

// memTokenStore is an oauth2.TokenStore in a map. The library's memory
// store runs a buntdb goroutine that nothing stops.
type memTokenStore struct {
	mu       sync.Mutex
	byAccess map[string]oauth2.TokenInfo
}

func (s *memTokenStore) Create(_ context.Context, ti oauth2.TokenInfo) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := ti.GetAccess(); a != "" {
		s.byAccess[a] = ti
	}
	return nil
}

func (s *memTokenStore) GetByAccess(_ context.Context, access string) (oauth2.TokenInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byAccess[access], nil
}

func (s *memTokenStore) RemoveByAccess(_ context.Context, access string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byAccess, access)
	return nil
}

// The client-credentials grant has no codes or refresh tokens.
func (s *memTokenStore) RemoveByCode(context.Context, string) error                  { return nil }
func (s *memTokenStore) RemoveByRefresh(context.Context, string) error               { return nil }
func (s *memTokenStore) GetByCode(context.Context, string) (oauth2.TokenInfo, error) { return nil, nil }
func (s *memTokenStore) GetByRefresh(context.Context, string) (oauth2.TokenInfo, error) {
	return nil, nil
}

const (
	oauthClientID = "stack-agent"
	oauthSecret   = "Zq7rV2mXk9LpT4sWc8Hn"
)

func oauthParams(tb testing.TB, p OAuth2Params) json.RawMessage {
	tb.Helper()
	b, err := Check(KindOAuth2, encodeParams(p), []byte(oauthSecret))
	if err != nil {
		tb.Fatalf("Check: %v", err)
	}
	return b
}

func TestOAuth2MintsATokenTheServerAccepts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		basic     bool
		authStyle string
		requests  int64 // token requests per mint
	}{
		{"header", true, AuthStyleHeader, 1},
		{"params", false, AuthStyleParams, 1},
		{"autodetect, server takes the header", true, "", 1},
		// The header is tried first and refused.
		{"autodetect, server takes params", false, "", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := newOAuthServer(t, oauthServerOptions{
				clientID: oauthClientID, secret: oauthSecret,
				scopes: []string{"read:orders", "write:orders"}, exp: time.Hour, basic: tc.basic,
			})
			params := oauthParams(t, OAuth2Params{
				TokenURL: as.tokenURL(), ClientID: oauthClientID, AuthStyle: tc.authStyle,
				Scopes: []string{"read:orders", "write:orders"},
			})
			tok, err := Mint(context.Background(), Env{HTTPClient: as.Client()},
				Request{Kind: KindOAuth2, Params: params, Root: []byte(oauthSecret), Agent: "a"})
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			if got := as.requests.Load(); got != tc.requests {
				t.Errorf("token requests = %d, want %d", got, tc.requests)
			}
			status, info := as.whoami(t, tok.Value)
			if status != http.StatusOK || info["client_id"] != oauthClientID || info["scope"] != "read:orders write:orders" {
				t.Fatalf("resource answered %d %v, want 200 for %s with both scopes", status, info, oauthClientID)
			}
			if status, _ := as.whoami(t, []byte("forged")); status != http.StatusUnauthorized {
				t.Fatalf("resource accepted a forged token: %d", status)
			}
		})
	}
}

func TestOAuth2NarrowedScopesAreWhatTheServerSaw(t *testing.T) {
	as := newOAuthServer(t, oauthServerOptions{
		clientID: oauthClientID, secret: oauthSecret, scopes: []string{"read:orders", "write:orders"}, exp: time.Hour,
	})
	params := oauthParams(t, OAuth2Params{
		TokenURL: as.tokenURL(), ClientID: oauthClientID, Scopes: []string{"read:orders", "write:orders"},
		Audience: "https://orders.example/api",
	})
	tok, err := Mint(context.Background(), Env{HTTPClient: as.Client()}, Request{
		Kind: KindOAuth2, Params: params, Root: []byte(oauthSecret), Agent: "a",
		Narrow: &passport.Narrowing{Scopes: []string{"read:orders"}, Actions: []string{"s3:GetObject"}},
	})
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	status, info := as.whoami(t, tok.Value)
	if status != http.StatusOK || info["scope"] != "read:orders" {
		t.Fatalf("resource answered %d %v, want the scope read:orders only", status, info)
	}
	if info["audience"] != "https://orders.example/api" {
		t.Fatalf("the token is for audience %q, want the credential's", info["audience"])
	}
}

func TestOAuth2ScopeOutsideTheCredentialIsRefusedBeforeAnyCall(t *testing.T) {
	as := newOAuthServer(t, oauthServerOptions{
		clientID: oauthClientID, secret: oauthSecret, scopes: []string{"read:orders", "admin"}, exp: time.Hour,
	})
	params := oauthParams(t, OAuth2Params{TokenURL: as.tokenURL(), ClientID: oauthClientID, Scopes: []string{"read:orders"}})
	_, err := Mint(context.Background(), Env{HTTPClient: as.Client()}, Request{
		Kind: KindOAuth2, Params: params, Root: []byte(oauthSecret),
		Narrow: &passport.Narrowing{Scopes: []string{"read:orders", "admin"}},
	})
	if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrMint) || !strings.Contains(err.Error(), `"admin"`) {
		t.Fatalf("Mint = %v, want ErrInvalid naming the scope admin", err)
	}
	if n := as.requests.Load(); n != 0 {
		t.Fatalf("the token endpoint was called %d times", n)
	}
}

func TestOAuth2ServerRefusals(t *testing.T) {
	as := newOAuthServer(t, oauthServerOptions{
		clientID: oauthClientID, secret: oauthSecret, scopes: []string{"read:orders"}, exp: time.Hour, basic: true,
	})
	for _, tc := range []struct {
		name   string
		params OAuth2Params
		secret string
		want   string
	}{
		{"wrong client secret", OAuth2Params{ClientID: oauthClientID, Scopes: []string{"read:orders"}},
			"not-the-secret-" + oauthSecret[:6], "invalid_client"},
		{"unknown client", OAuth2Params{ClientID: "someone-else", Scopes: []string{"read:orders"}},
			oauthSecret, "invalid_client"},
		{"a scope the server does not grant the client", OAuth2Params{ClientID: oauthClientID, Scopes: []string{"write:orders"}},
			oauthSecret, "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.params.TokenURL = as.tokenURL()
			tc.params.AuthStyle = AuthStyleHeader
			params, err := Check(KindOAuth2, encodeParams(tc.params), []byte(tc.secret))
			if err != nil {
				t.Fatal(err)
			}
			tok, err := Mint(context.Background(), Env{HTTPClient: as.Client()},
				Request{Kind: KindOAuth2, Params: params, Root: []byte(tc.secret)})
			if !errors.Is(err, ErrMint) || !strings.Contains(err.Error(), tc.want) || tok.Value != nil {
				t.Fatalf("Mint = %q, %v; want ErrMint with %s", tok.Value, err, tc.want)
			}
			mustNotLeak(t, err, tc.secret)
			t.Log(err)
		})
	}
}

func TestOAuth2Expiry(t *testing.T) {
	t.Run("the server's", func(t *testing.T) {
		as := newOAuthServer(t, oauthServerOptions{
			clientID: oauthClientID, secret: oauthSecret, exp: 90 * time.Second,
		})
		params := oauthParams(t, OAuth2Params{TokenURL: as.tokenURL(), ClientID: oauthClientID})
		before := time.Now()
		tok, err := Mint(context.Background(), Env{HTTPClient: as.Client()},
			Request{Kind: KindOAuth2, Params: params, Root: []byte(oauthSecret)})
		after := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		if tok.Expiry.Before(before.Add(90*time.Second)) || tok.Expiry.After(after.Add(90*time.Second)) {
			t.Fatalf("expiry %v, want 90 s after the mint (%v..%v)", tok.Expiry, before, after)
		}
		if TTL(KindOAuth2, params) != 0 {
			t.Fatal("oauth2 TTL is the issuer's to say")
		}
	})
	t.Run("none given", func(t *testing.T) {
		as := newOAuthServer(t, oauthServerOptions{clientID: oauthClientID, secret: oauthSecret})
		params := oauthParams(t, OAuth2Params{TokenURL: as.tokenURL(), ClientID: oauthClientID})
		clk := testclock.New(time.Now())
		tok, err := Mint(context.Background(), Env{HTTPClient: as.Client(), Now: clk.Now},
			Request{Kind: KindOAuth2, Params: params, Root: []byte(oauthSecret)})
		if err != nil {
			t.Fatal(err)
		}
		if want := clk.Now().Add(unknownExpiry); !tok.Expiry.Equal(want) {
			t.Fatalf("expiry %v, want %v: a token without expires_in is renewed as if it lived 5 minutes", tok.Expiry, want)
		}
		if status, _ := as.whoami(t, tok.Value); status != http.StatusOK {
			t.Fatalf("resource answered %d", status)
		}
	})
}

func TestOAuth2RefusesPlainHTTPAtMint(t *testing.T) {
	var calls atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
	defer plain.Close()
	// Parameters that skipped Check (a store written by hand).
	params := encodeParams(OAuth2Params{TokenURL: plain.URL + "/token", ClientID: oauthClientID})
	_, err := Mint(context.Background(), Env{HTTPClient: plain.Client()},
		Request{Kind: KindOAuth2, Params: params, Root: []byte(oauthSecret)})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "token_url") || calls.Load() != 0 {
		t.Fatalf("Mint = %v after %d calls, want ErrInvalid on token_url and no call", err, calls.Load())
	}
}
