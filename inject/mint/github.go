package mint

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/stackctl/stack/passport"
)

func init() { register(KindGitHub, githubKind{}) }

// GitHubParams are the parameters of a github-app credential. Its root
// material is the app's private key (PEM, PKCS#1 as GitHub hands it out,
// or PKCS#8).
type GitHubParams struct {
	// AppID is the app's id or its client id: the app JWT's issuer.
	AppID string `json:"app_id"`
	// InstallationID is the installation tokens are minted for. Required.
	InstallationID int64 `json:"installation_id"`
	// APIURL is GitHub's REST API: https://api.github.com (the default),
	// or https://HOST/api/v3 for GitHub Enterprise Server. https only.
	APIURL string `json:"api_url,omitempty"`
	// Permissions are the most the credential may ask for, permission
	// name to level (read, write or admin). A grant's narrowing asks for
	// some of them at most at these levels. Empty: whatever the
	// installation has, and a grant may ask for any.
	Permissions map[string]string `json:"permissions,omitempty"`
	// Repositories are the repository names (without owner) tokens may
	// reach. Empty: all the installation can reach.
	Repositories []string `json:"repositories,omitempty"`
}

// GitHubAPIURL is github.com's REST API.
const GitHubAPIURL = "https://api.github.com"

// GitHubTokenLife is how long GitHub's installation tokens live.
const GitHubTokenLife = time.Hour

// GitHub's documented limits on the app JWT: iat may be back-dated to
// absorb clock drift, and exp may be at most ten minutes ahead.
const (
	githubJWTBackdate = 60 * time.Second
	githubJWTLife     = 9 * time.Minute
)

// maxGitHubResponse bounds what is read of GitHub's answer.
const maxGitHubResponse = 1 << 20

// GitHub permission levels, least to most.
var githubLevels = []string{"read", "write", "admin"}

type githubKind struct{}

func (githubKind) check(params json.RawMessage, root []byte) (json.RawMessage, error) {
	p, err := githubParams(params)
	if err != nil {
		return nil, err
	}
	if _, err := parseRSAPrivateKey(root); err != nil {
		return nil, fmt.Errorf("%w: %s: the app's private key: %v", ErrInvalid, KindGitHub, err)
	}
	return encodeParams(p), nil
}

// githubParams decodes and validates params, reporting every problem,
// and fills in the default API URL.
func githubParams(params json.RawMessage) (GitHubParams, error) {
	var p GitHubParams
	if err := decodeParams(KindGitHub, params, &p); err != nil {
		return p, err
	}
	var pr problems
	if p.AppID == "" {
		pr.add("app_id: required")
	} else if len(p.AppID) > 64 || strings.Trim(p.AppID, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
		pr.add("app_id %q: want the app's id or client id", p.AppID)
	}
	if p.InstallationID <= 0 {
		pr.add("installation_id: required, a positive number")
	}
	if p.APIURL == "" {
		p.APIURL = GitHubAPIURL
	}
	p.APIURL = strings.TrimRight(pr.httpsURL("api_url", p.APIURL, false), "/")
	for _, name := range slices.Sorted(maps.Keys(p.Permissions)) {
		if !githubIdent(name) {
			pr.add("permissions %q: want a GitHub permission name such as contents", name)
		}
		if !slices.Contains(githubLevels, p.Permissions[name]) {
			pr.add("permissions %s: level %q, want read, write or admin", name, p.Permissions[name])
		}
	}
	if len(p.Permissions) == 0 {
		p.Permissions = nil
	}
	var repos []string
	for i, r := range p.Repositories {
		if !githubRepoName(r) {
			pr.add("repositories[%d] %q: want a repository name without its owner", i, r)
		} else if !slices.Contains(repos, r) {
			repos = append(repos, r)
		}
	}
	p.Repositories = repos
	return p, pr.err(KindGitHub + " parameters")
}

func githubIdent(s string) bool {
	return s != "" && len(s) <= 64 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == ""
}

func githubRepoName(s string) bool {
	return s != "" && len(s) <= 100 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == ""
}

func (githubKind) ttl(json.RawMessage) time.Duration { return GitHubTokenLife }

// githubTokenRequest is the body of GitHub's create-an-installation-
// access-token request.
type githubTokenRequest struct {
	Repositories []string          `json:"repositories,omitempty"`
	Permissions  map[string]string `json:"permissions,omitempty"`
}

func (githubKind) mint(ctx context.Context, env Env, r Request) (Token, error) {
	p, err := githubParams(r.Params)
	if err != nil {
		return Token{}, err
	}
	body, err := narrowGitHub(p, r.Narrow)
	if err != nil {
		return Token{}, err
	}
	key, err := parseRSAPrivateKey(r.Root)
	if err != nil {
		return Token{}, fmt.Errorf("%w: %s: the app's private key: %v", ErrInvalid, KindGitHub, err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return Token{}, fmt.Errorf("%w: %s: the app's private key: %v", ErrInvalid, KindGitHub, err)
	}
	now := env.Now()
	appJWT, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer:   p.AppID,
		IssuedAt: jwt.NewNumericDate(now.Add(-githubJWTBackdate)),
		Expiry:   jwt.NewNumericDate(now.Add(githubJWTLife)),
	}).Serialize()
	if err != nil {
		return Token{}, fmt.Errorf("%w: %s: signing the app JWT: %v", ErrMint, KindGitHub, err)
	}
	b, _ := json.Marshal(body) // strings only
	endpoint := p.APIURL + "/app/installations/" + strconv.FormatInt(p.InstallationID, 10) + "/access_tokens"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(b))
	if err != nil {
		return Token{}, fmt.Errorf("%w: %s: %v", ErrMint, KindGitHub, err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+appJWT)
	resp, err := env.HTTPClient.Do(req)
	if err != nil {
		return Token{}, &mintError{msg: fmt.Sprintf("%s: %s: %s", ErrMint, KindGitHub, redact(err.Error(), []byte(appJWT))), cause: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxGitHubResponse))
	if err != nil {
		return Token{}, &mintError{msg: fmt.Sprintf("%s: %s: reading GitHub's answer: %s", ErrMint, KindGitHub, err), cause: err}
	}
	if resp.StatusCode != http.StatusCreated {
		var e struct {
			Message string `json:"message"`
		}
		msg := "no message"
		if json.Unmarshal(raw, &e) == nil && e.Message != "" {
			msg = serverText(e.Message, []byte(appJWT))
		}
		return Token{}, fmt.Errorf("%w: %s: GitHub answered %s: %s", ErrMint, KindGitHub,
			serverText(resp.Status, []byte(appJWT)), msg)
	}
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		clear(raw)
		return Token{}, fmt.Errorf("%w: %s: GitHub's answer is not an installation token", ErrMint, KindGitHub)
	}
	clear(raw)
	if out.Token == "" || out.ExpiresAt.IsZero() {
		return Token{}, fmt.Errorf("%w: %s: GitHub's answer has no token or no expires_at", ErrMint, KindGitHub)
	}
	return Token{Value: []byte(out.Token), Expiry: out.ExpiresAt}, nil
}

// narrowGitHub is what to ask GitHub for: the grant's permissions, each
// at most at the credential's level when the credential names
// permissions, else the credential's; the grant's repositories, each
// among the credential's when it names repositories, else the
// credential's. Asking for more than the credential holds is refused
// (ErrNarrow), naming what was asked for, not what the credential holds.
func narrowGitHub(p GitHubParams, n *passport.Narrowing) (githubTokenRequest, error) {
	req := githubTokenRequest{Permissions: p.Permissions, Repositories: p.Repositories}
	if n == nil {
		return req, nil
	}
	if len(n.Permissions) > 0 {
		req.Permissions = map[string]string{}
		for _, name := range slices.Sorted(maps.Keys(n.Permissions)) {
			lvl := n.Permissions[name]
			want := slices.Index(githubLevels, lvl)
			if !githubIdent(name) || want < 0 {
				return req, fmt.Errorf("%w: %s: the grant asks for permission %s: %q, want read, write or admin", ErrNarrow, KindGitHub, name, lvl)
			}
			if len(p.Permissions) > 0 {
				have, ok := p.Permissions[name]
				if !ok {
					return req, fmt.Errorf("%w: %s: the grant asks for permission %s, which the credential does not hold", ErrNarrow, KindGitHub, name)
				}
				if want > slices.Index(githubLevels, have) {
					return req, fmt.Errorf("%w: %s: the grant asks for permission %s: %s, more than the credential holds", ErrNarrow, KindGitHub, name, lvl)
				}
			}
			req.Permissions[name] = lvl
		}
	}
	if len(n.Repositories) > 0 {
		req.Repositories = nil
		for _, r := range n.Repositories {
			if !githubRepoName(r) {
				return req, fmt.Errorf("%w: %s: the grant asks for repository %q: want a name without its owner", ErrNarrow, KindGitHub, r)
			}
			if len(p.Repositories) > 0 && !slices.Contains(p.Repositories, r) {
				return req, fmt.Errorf("%w: %s: the grant asks for repository %s, which the credential does not reach", ErrNarrow, KindGitHub, r)
			}
			if !slices.Contains(req.Repositories, r) {
				req.Repositories = append(req.Repositories, r)
			}
		}
	}
	return req, nil
}
