package mint

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/stackctl/stack/passport"
)

// githubServer answers GitHub's create-an-installation-access-token
// request as documented
// (https://docs.github.com/en/rest/apps/apps#create-an-installation-access-token-for-an-app),
// under /api/v3 as GitHub Enterprise Server serves it: it verifies the
// app JWT with the app's public key and hands out tokens for at most
// what the installation has.
type githubServer struct {
	*httptest.Server
	appID          string
	installationID int64
	pub            *rsa.PublicKey
	// The installation's permissions and repositories.
	perms map[string]string
	repos []string

	requests atomic.Int64
	mu       sync.Mutex
	issued   map[string]githubGrant // token → what it grants
}

type githubGrant struct {
	Permissions  map[string]string
	Repositories []string // nil: all the installation's
}

func newGitHubServer(tb testing.TB, appID string, installationID int64, pub *rsa.PublicKey) *githubServer {
	tb.Helper()
	s := &githubServer{
		appID: appID, installationID: installationID, pub: pub,
		perms:  map[string]string{"contents": "write", "issues": "write", "pull_requests": "write", "metadata": "read"},
		repos:  []string{"api", "web", "infra"},
		issued: map[string]githubGrant{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v3/app/installations/{id}/access_tokens", s.accessTokens)
	s.Server = httptest.NewTLSServer(mux)
	tb.Cleanup(s.Close)
	return s
}

// pkcs1PEM is k as GitHub hands an app's private key out.
func pkcs1PEM(k *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

func (s *githubServer) apiURL() string { return s.URL + "/api/v3" }

func githubMessage(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{
		"message":           msg,
		"documentation_url": "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app",
	})
}

func (s *githubServer) accessTokens(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if r.Header.Get("Accept") != "application/vnd.github+json" {
		githubMessage(w, http.StatusUnsupportedMediaType, "Unsupported 'Accept' header")
		return
	}
	if v := r.Header.Get("X-GitHub-Api-Version"); v != "2022-11-28" {
		githubMessage(w, http.StatusBadRequest, "API version "+v+" is not supported.")
		return
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		githubMessage(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return
	}
	tok, err := jwt.ParseSigned(bearer, []jose.SignatureAlgorithm{jose.RS256})
	var claims jwt.Claims
	if err == nil {
		err = tok.Claims(s.pub, &claims)
	}
	if err != nil {
		githubMessage(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return
	}
	now := time.Now()
	switch {
	case claims.Issuer != s.appID:
		githubMessage(w, http.StatusUnauthorized, "'Issuer' claim ('iss') must be an Integer")
		return
	case claims.IssuedAt == nil || claims.IssuedAt.Time().After(now.Add(30*time.Second)):
		githubMessage(w, http.StatusUnauthorized, "'Issued at' claim ('iat') must be an Integer representing a time in the past")
		return
	case claims.Expiry == nil || !claims.Expiry.Time().After(now) ||
		claims.Expiry.Time().Sub(claims.IssuedAt.Time()) > 10*time.Minute:
		githubMessage(w, http.StatusUnauthorized, "'Expiration time' claim ('exp') is too far in the future")
		return
	}
	if id, err := strconv.ParseInt(r.PathValue("id"), 10, 64); err != nil || id != s.installationID {
		githubMessage(w, http.StatusNotFound, "Not Found")
		return
	}
	var body struct {
		Repositories  []string          `json:"repositories"`
		RepositoryIDs []int64           `json:"repository_ids"`
		Permissions   map[string]string `json:"permissions"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if r.ContentLength != 0 {
		if err := dec.Decode(&body); err != nil {
			githubMessage(w, http.StatusBadRequest, "Problems parsing JSON")
			return
		}
	}
	levels := []string{"read", "write", "admin"}
	for name, lvl := range body.Permissions {
		have, ok := s.perms[name]
		if !ok || !slices.Contains(levels, lvl) || slices.Index(levels, lvl) > slices.Index(levels, have) {
			githubMessage(w, http.StatusUnprocessableEntity, "The permissions requested are not granted to this installation.")
			return
		}
	}
	for _, repo := range body.Repositories {
		if !slices.Contains(s.repos, repo) {
			githubMessage(w, http.StatusUnprocessableEntity, "There is at least one repository that does not exist or is not accessible to the parent installation.")
			return
		}
	}
	grant := githubGrant{Permissions: body.Permissions, Repositories: body.Repositories}
	if len(grant.Permissions) == 0 {
		grant.Permissions = maps.Clone(s.perms)
	}
	selection, repos := "all", s.repos
	if len(body.Repositories) > 0 {
		selection, repos = "selected", body.Repositories
	}
	type repo struct {
		ID       int64  `json:"id"`
		Name     string `json:"name"`
		FullName string `json:"full_name"`
	}
	var out []repo
	for i, name := range repos {
		out = append(out, repo{ID: 1296269 + int64(i), Name: name, FullName: "octo-org/" + name})
	}
	token := randomToken("ghs_")
	s.mu.Lock()
	s.issued[token] = grant
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{
		"token":                token,
		"expires_at":           now.Add(time.Hour).UTC().Format(time.RFC3339),
		"permissions":          grant.Permissions,
		"repository_selection": selection,
		"repositories":         out,
	})
}

func (s *githubServer) grantOf(token []byte) (githubGrant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.issued[string(token)]
	return g, ok
}

const (
	githubAppID        = "Iv23liQ7BkXbT9sGh2Rw"
	githubInstallation = 52417893
)

// githubFixture is an app, its installation's server, and the
// credential's checked parameters.
func githubFixture(tb testing.TB, p GitHubParams) (*githubServer, []byte, json.RawMessage) {
	tb.Helper()
	k := testRSAKey(tb, 0)
	gs := newGitHubServer(tb, githubAppID, githubInstallation, &k.PublicKey)
	p.AppID, p.InstallationID, p.APIURL = githubAppID, githubInstallation, gs.apiURL()+"/"
	root := pkcs1PEM(k)
	params, err := Check(KindGitHub, encodeParams(p), root)
	if err != nil {
		tb.Fatalf("Check: %v", err)
	}
	return gs, root, params
}

func TestGitHubMintsInstallationTokens(t *testing.T) {
	gs, root, params := githubFixture(t, GitHubParams{
		Permissions:  map[string]string{"contents": "write", "issues": "read"},
		Repositories: []string{"api", "web"},
	})
	if TTL(KindGitHub, params) != time.Hour {
		t.Fatalf("TTL = %v", TTL(KindGitHub, params))
	}
	for _, tc := range []struct {
		name   string
		narrow *passport.Narrowing
		want   githubGrant
	}{
		{"the credential's limit", nil, githubGrant{
			Permissions: map[string]string{"contents": "write", "issues": "read"}, Repositories: []string{"api", "web"}}},
		{"narrowed", &passport.Narrowing{Permissions: map[string]string{"contents": "read"}, Repositories: []string{"web"}},
			githubGrant{Permissions: map[string]string{"contents": "read"}, Repositories: []string{"web"}}},
		{"permissions narrowed, the credential's repositories", &passport.Narrowing{Permissions: map[string]string{"issues": "read"}},
			githubGrant{Permissions: map[string]string{"issues": "read"}, Repositories: []string{"api", "web"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			tok, err := Mint(context.Background(), Env{HTTPClient: gs.Client()},
				Request{Kind: KindGitHub, Params: params, Root: root, Agent: "a", Narrow: tc.narrow})
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			got, ok := gs.grantOf(tok.Value)
			if !ok || !maps.Equal(got.Permissions, tc.want.Permissions) || !slices.Equal(got.Repositories, tc.want.Repositories) {
				t.Fatalf("the server granted %+v (known %v), want %+v", got, ok, tc.want)
			}
			// expires_at has whole seconds.
			if tok.Expiry.Before(before.Add(time.Hour).Truncate(time.Second)) || tok.Expiry.After(time.Now().Add(time.Hour)) {
				t.Fatalf("expiry %v, want expires_at, an hour on", tok.Expiry)
			}
		})
	}
}

func TestGitHubWithoutLimitsAsksForNothing(t *testing.T) {
	k := testRSAKey(t, 0)
	gs := newGitHubServer(t, githubAppID, githubInstallation, &k.PublicKey)
	// PKCS#8, as openssl pkcs8 -topk8 writes it.
	root := pkcs8PEM(t, k)
	params, err := Check(KindGitHub, encodeParams(GitHubParams{AppID: githubAppID, InstallationID: githubInstallation, APIURL: gs.apiURL()}), root)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Mint(context.Background(), Env{HTTPClient: gs.Client()}, Request{Kind: KindGitHub, Params: params, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := gs.grantOf(tok.Value); !maps.Equal(got.Permissions, gs.perms) || got.Repositories != nil {
		t.Fatalf("the server granted %+v, want the whole installation", got)
	}
	// A grant may ask for any permission: the installation decides.
	_, err = Mint(context.Background(), Env{HTTPClient: gs.Client()}, Request{Kind: KindGitHub, Params: params, Root: root,
		Narrow: &passport.Narrowing{Permissions: map[string]string{"administration": "write"}}})
	if !errors.Is(err, ErrMint) || !strings.Contains(err.Error(), "422") ||
		!strings.Contains(err.Error(), "The permissions requested are not granted to this installation.") {
		t.Fatalf("Mint = %v, want ErrMint with GitHub's 422 message", err)
	}
}

func TestGitHubNarrowingBeyondTheCredentialIsRefusedBeforeAnyCall(t *testing.T) {
	gs, root, params := githubFixture(t, GitHubParams{
		Permissions:  map[string]string{"contents": "read", "issues": "write"},
		Repositories: []string{"api"},
	})
	for _, tc := range []struct {
		name   string
		narrow passport.Narrowing
		want   string
	}{
		{"a level above", passport.Narrowing{Permissions: map[string]string{"contents": "write"}}, "permission contents: write"},
		{"a permission not held", passport.Narrowing{Permissions: map[string]string{"actions": "read"}}, "permission actions"},
		{"a repository not reached", passport.Narrowing{Repositories: []string{"web"}}, "repository web"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Mint(context.Background(), Env{HTTPClient: gs.Client()},
				Request{Kind: KindGitHub, Params: params, Root: root, Narrow: &tc.narrow})
			if !errors.Is(err, ErrNarrow) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Mint = %v, want ErrNarrow naming %s", err, tc.want)
			}
		})
	}
	if n := gs.requests.Load(); n != 0 {
		t.Fatalf("GitHub was called %d times", n)
	}
}

func TestGitHubRefusals(t *testing.T) {
	gs, root, params := githubFixture(t, GitHubParams{})
	wrong := pkcs1PEM(testRSAKey(t, 1))
	var p GitHubParams
	_ = json.Unmarshal(params, &p)
	p.InstallationID++
	otherInstallation := encodeParams(p)

	for _, tc := range []struct {
		name   string
		params json.RawMessage
		root   []byte
		want   string
	}{
		{"a wrong key", params, wrong, "401 Unauthorized: A JSON web token could not be decoded"},
		{"another installation", otherInstallation, root, "404 Not Found: Not Found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Mint(context.Background(), Env{HTTPClient: gs.Client()},
				Request{Kind: KindGitHub, Params: tc.params, Root: tc.root})
			if !errors.Is(err, ErrMint) || !strings.Contains(err.Error(), tc.want) || tok.Value != nil {
				t.Fatalf("Mint = %v, want ErrMint with %q", err, tc.want)
			}
			mustNotLeak(t, err, string(tc.root), "eyJ") // no key, no JWT
			t.Log(err)
		})
	}
}
