// Package oauthtest runs a real OAuth2 authorization server
// (github.com/go-oauth2/oauth2) on loopback TLS for tests: a token endpoint
// for the client-credentials grant, and a resource (/api/whoami) that
// accepts only the tokens it issued and says what it knows of them.
package oauthtest

import (
	"context"
	"encoding/json"
	"encoding/pem"
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
)

// Server is an OAuth2 authorization server (go-oauth2/oauth2) on
// loopback TLS: a token endpoint for the client-credentials grant, and a
// resource that accepts only the tokens it issued.
type Server struct {
	*httptest.Server
	srv *server.Server
	// requests counts calls to the token endpoint.
	requests atomic.Int64
}

// Options configure Start.
type Options struct {
	ClientID, Secret string
	// Scopes the client is registered for: the server refuses others.
	Scopes []string
	// Exp is the access tokens' lifetime; zero: they never expire, and
	// the token response says expires_in 0.
	Exp time.Duration
	// Basic: the client authenticates with HTTP Basic, else in the body.
	Basic bool
}

// Start serves an authorization server until the test ends.
func Start(tb testing.TB, o Options) *Server {
	tb.Helper()
	m := manage.NewDefaultManager()
	m.SetClientTokenCfg(&manage.Config{AccessTokenExp: o.Exp})
	m.MapTokenStorage(&memTokenStore{byAccess: map[string]oauth2.TokenInfo{}})
	clients := store.NewClientStore()
	if err := clients.Set(o.ClientID, &models.Client{ID: o.ClientID, Secret: o.Secret, Domain: "https://agent.example"}); err != nil {
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
	if o.Basic {
		srv.SetClientInfoHandler(server.ClientBasicHandler)
	} else {
		srv.SetClientInfoHandler(server.ClientFormHandler)
	}
	srv.SetClientScopeHandler(func(tgr *oauth2.TokenGenerateRequest) (bool, error) {
		for s := range strings.FieldsSeq(tgr.Scope) {
			if !slices.Contains(o.Scopes, s) {
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

	s := &Server{srv: srv}
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

// TokenURL is the token endpoint.
func (s *Server) TokenURL() string { return s.URL + "/oauth/token" }

// Whoami calls the resource (/api/whoami) with token: what the server knows of it.
func (s *Server) Whoami(tb testing.TB, token []byte) (int, map[string]string) {
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

// Requests is the number of calls to the token endpoint so far.
func (s *Server) Requests() int64 { return s.requests.Load() }

// CAPEM is the server certificate, PEM, for clients in other processes.
func (s *Server) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
