package oidctest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/net/html"
	"golang.org/x/oauth2"
)

// relyingParty is a client of the issuer with a callback on loopback, as
// the console is: its callback only answers, and the test reads what the
// browser brought it.
type relyingParty struct {
	issuer   *Issuer
	client   Client
	ctx      context.Context // carries the issuer's HTTP client
	provider *oidc.Provider
	config   oauth2.Config
}

func newRelyingParty(t *testing.T, i *Issuer, id string) *relyingParty {
	t.Helper()
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "back at the client")
	}))
	t.Cleanup(cb.Close)
	c := Client{ID: id, Secret: id + "-secret", RedirectURLs: []string{cb.URL + "/callback"}}
	i.AddClient(c)
	ctx := oidc.ClientContext(t.Context(), i.HTTPClient())
	p, err := oidc.NewProvider(ctx, i.URL())
	if err != nil {
		t.Fatal(err)
	}
	return &relyingParty{
		issuer:   i,
		client:   c,
		ctx:      ctx,
		provider: p,
		config: oauth2.Config{
			ClientID:     c.ID,
			ClientSecret: c.Secret,
			RedirectURL:  c.RedirectURLs[0],
			Endpoint:     p.Endpoint(),
			Scopes:       []string{oidc.ScopeOpenID, "email", "profile"},
		},
	}
}

// flow is one sign-in's secrets, as the client keeps them.
type flow struct {
	state, nonce, verifier string
}

func newFlow() flow {
	return flow{state: randomToken(), nonce: randomToken(), verifier: oauth2.GenerateVerifier()}
}

// authURL sends the browser to the issuer with state, nonce and an S256
// challenge, as the console does.
func (rp *relyingParty) authURL(f flow) string {
	return rp.config.AuthCodeURL(f.state, oidc.Nonce(f.nonce), oauth2.S256ChallengeOption(f.verifier))
}

// code signs user in through the form and returns the code the callback
// got.
func (rp *relyingParty) code(t *testing.T, f flow, user string) string {
	t.Helper()
	back := signIn(t, rp.issuer.HTTPClient(), rp.authURL(f), user)
	q := back.Query()
	if q.Get("state") != f.state || q.Get("code") == "" {
		t.Fatalf("callback got %s, want a code and state %s", back, f.state)
	}
	return q.Get("code")
}

// signIn is a browser: it opens authURL, types user into the sign-in form,
// submits it and follows the redirect. It returns the URL it ended at,
// which must be reached by a 303 from the issuer.
func signIn(t *testing.T, browser *http.Client, authURL, user string) *url.URL {
	t.Helper()
	resp, err := browser.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("sign-in page: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	action, fields := readSignInForm(t, resp.Body)
	fields.Set("username", user)
	to, err := resp.Request.URL.Parse(action)
	if err != nil {
		t.Fatal(err)
	}
	back, err := browser.PostForm(to.String(), fields)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Body.Close()
	if back.StatusCode != http.StatusOK {
		t.Fatalf("after signing in: %d at %s", back.StatusCode, back.Request.URL)
	}
	if via := back.Request.Response; via == nil || via.StatusCode != http.StatusSeeOther || !strings.HasPrefix(via.Request.URL.String(), origin(authURL)) {
		t.Fatalf("the callback was not reached by a 303 from the issuer")
	}
	return back.Request.URL
}

// origin is the scheme and host of u.
func origin(u string) string {
	p, _ := url.Parse(u)
	return p.Scheme + "://" + p.Host
}

// readSignInForm reads the sign-in page: the form's action and its hidden
// fields. It checks the form has what a browser test drives, an input
// #username named username and a submit button #sign-in.
func readSignInForm(t *testing.T, r io.Reader) (string, url.Values) {
	t.Helper()
	doc, err := html.Parse(r)
	if err != nil {
		t.Fatal(err)
	}
	var action, method string
	fields := url.Values{}
	var username, button bool
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		a := map[string]string{}
		for _, at := range n.Attr {
			a[at.Key] = at.Val
		}
		switch {
		case n.Data == "form":
			action, method = a["action"], a["method"]
		case n.Data == "input" && a["type"] == "hidden":
			fields.Add(a["name"], a["value"])
		case n.Data == "input" && a["id"] == "username":
			username = a["name"] == "username" && a["type"] == "text"
		case n.Data == "button" && a["id"] == "sign-in":
			button = a["type"] == "submit"
		}
	}
	if action == "" || !strings.EqualFold(method, "post") || !username || !button {
		t.Fatalf("sign-in form: action %q method %q, #username %v, #sign-in %v", action, method, username, button)
	}
	return action, fields
}

// The whole flow as golang.org/x/oauth2 and go-oidc drive it: PKCE, the
// nonce, both ways of client authentication, and SetUser's claims.
func TestCodeFlow(t *testing.T) {
	i := NewIssuer(t)
	rp := newRelyingParty(t, i, "console")
	i.SetUser("alice", map[string]any{"email": "alice@corp.test", "name": "Alice Liddell", "groups": []string{"admins"}})

	for _, tc := range []struct {
		name   string
		style  oauth2.AuthStyle
		user   string
		claims map[string]any
	}{
		{"client_secret_basic", oauth2.AuthStyleInHeader, "bob", map[string]any{"email": "bob@example.test", "email_verified": true, "name": "bob"}},
		{"client_secret_post", oauth2.AuthStyleInParams, "bob", map[string]any{"email": "bob@example.test", "email_verified": true, "name": "bob"}},
		{"the provider's own endpoint", oauth2.AuthStyleAutoDetect, "carol", map[string]any{"email": "carol@example.test"}},
		{"SetUser's claims", oauth2.AuthStyleInHeader, "alice", map[string]any{"email": "alice@corp.test", "email_verified": true, "name": "Alice Liddell", "groups": []any{"admins"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := rp.config
			conf.Endpoint.AuthStyle = tc.style
			tokens := i.Requests(TokenPath)
			f := newFlow()
			code := rp.code(t, f, tc.user)
			tok, err := conf.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier))
			if err != nil {
				t.Fatal(err)
			}
			if n := i.Requests(TokenPath) - tokens; n != 1 {
				t.Errorf("token requests = %d, want 1", n)
			}
			if tok.TokenType != "Bearer" || tok.AccessToken == "" || time.Until(tok.Expiry) < 59*time.Minute {
				t.Errorf("token = %s %q expiring %v", tok.TokenType, tok.AccessToken, tok.Expiry)
			}
			raw, _ := tok.Extra("id_token").(string)
			idt, err := rp.provider.Verifier(&oidc.Config{ClientID: rp.client.ID}).Verify(rp.ctx, raw)
			if err != nil {
				t.Fatal(err)
			}
			if idt.Nonce != f.nonce || idt.Subject != tc.user || idt.Issuer != i.URL() || !slices.Equal(idt.Audience, []string{rp.client.ID}) {
				t.Errorf("id token: nonce %q sub %q iss %q aud %v", idt.Nonce, idt.Subject, idt.Issuer, idt.Audience)
			}
			if ttl := idt.Expiry.Sub(idt.IssuedAt); ttl != IDTokenTTL {
				t.Errorf("exp - iat = %v, want %v", ttl, IDTokenTTL)
			}
			if kid := decodeSegment(t, strings.Split(raw, ".")[0])["kid"]; kid != i.KeyID() {
				t.Errorf("kid = %v, want %s", kid, i.KeyID())
			}
			var claims map[string]any
			if err := idt.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.claims {
				if got, _ := json.Marshal(claims[k]); string(got) != string(must(json.Marshal(want))) {
					t.Errorf("%s = %s, want %v", k, got, want)
				}
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// PKCE and the nonce are the client's choice: without them the flow works
// and the ID token has no nonce.
func TestCodeFlowWithoutPKCEOrNonce(t *testing.T) {
	i := NewIssuer(t)
	rp := newRelyingParty(t, i, "console")
	back := signIn(t, i.HTTPClient(), rp.config.AuthCodeURL("st"), "dave")
	tok, err := rp.config.Exchange(rp.ctx, back.Query().Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	idt, err := rp.provider.Verifier(&oidc.Config{ClientID: rp.client.ID}).Verify(rp.ctx, tok.Extra("id_token").(string))
	if err != nil {
		t.Fatal(err)
	}
	if idt.Nonce != "" || idt.Subject != "dave" {
		t.Errorf("nonce %q sub %q", idt.Nonce, idt.Subject)
	}
}

// SetUser's claims win over the issuer's, so a test can have the provider
// hand back a token the client must refuse.
func TestSetUserOverridesTheIssuersClaims(t *testing.T) {
	i := NewIssuer(t)
	rp := newRelyingParty(t, i, "console")
	i.SetUser("mallory", map[string]any{"aud": "someone-else"})
	f := newFlow()
	tok, err := rp.config.Exchange(rp.ctx, rp.code(t, f, "mallory"), oauth2.VerifierOption(f.verifier))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rp.provider.Verifier(&oidc.Config{ClientID: rp.client.ID}).Verify(rp.ctx, tok.Extra("id_token").(string))
	if err == nil || !strings.Contains(err.Error(), "audience") {
		t.Fatalf("verify = %v, want an audience error", err)
	}

	i.SetUser("mallory", nil)
	f = newFlow()
	tok, err = rp.config.Exchange(rp.ctx, rp.code(t, f, "mallory"), oauth2.VerifierOption(f.verifier))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.provider.Verifier(&oidc.Config{ClientID: rp.client.ID}).Verify(rp.ctx, tok.Extra("id_token").(string)); err != nil {
		t.Fatalf("after SetUser(nil): %v", err)
	}
}

func TestDiscoveryForSignIn(t *testing.T) {
	i := NewIssuer(t)
	var d map[string]any
	if code := getJSON(t, i.HTTPClient(), i.URL()+DiscoveryPath, &d); code != http.StatusOK {
		t.Fatalf("discovery: %d", code)
	}
	for k, want := range map[string]any{
		"issuer":                                i.URL(),
		"jwks_uri":                              i.URL() + JWKSPath,
		"authorization_endpoint":                i.URL() + AuthorizePath,
		"token_endpoint":                        i.URL() + TokenPath,
		"response_types_supported":              []any{"code", "id_token"},
		"subject_types_supported":               []any{"public"},
		"id_token_signing_alg_values_supported": []any{"RS256"},
		"code_challenge_methods_supported":      []any{"S256"},
		"token_endpoint_auth_methods_supported": []any{"client_secret_basic", "client_secret_post"},
		"scopes_supported":                      []any{"openid", "email", "profile"},
	} {
		if got, want := string(must(json.Marshal(d[k]))), string(must(json.Marshal(want))); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
}

// The authorization endpoint never redirects to a client or URI it does
// not know, and sends other errors back to the client with the state.
func TestAuthorizeRefusals(t *testing.T) {
	i := NewIssuer(t)
	rp := newRelyingParty(t, i, "console")
	cb := rp.client.RedirectURLs[0]
	noFollow := i.HTTPClient()
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	params := func(edit func(url.Values)) url.Values {
		v := url.Values{
			"response_type": {"code"},
			"client_id":     {rp.client.ID},
			"redirect_uri":  {cb},
			"scope":         {"openid email"},
			"state":         {"st"},
		}
		edit(v)
		return v
	}
	for _, tc := range []struct {
		name   string
		post   bool // to the form's action, with a username
		params url.Values
		// Either a page with status, or a redirect to the callback with
		// error.
		status int
		error  string
	}{
		{"unknown client", false, params(func(v url.Values) { v.Set("client_id", "nobody") }), http.StatusBadRequest, ""},
		{"no client", false, params(func(v url.Values) { v.Del("client_id") }), http.StatusBadRequest, ""},
		{"unregistered redirect_uri", false, params(func(v url.Values) { v.Set("redirect_uri", "https://evil.example/callback") }), http.StatusBadRequest, ""},
		{"redirect_uri with another path", false, params(func(v url.Values) { v.Set("redirect_uri", cb+"/more") }), http.StatusBadRequest, ""},
		{"redirect_uri with a query", false, params(func(v url.Values) { v.Set("redirect_uri", cb+"?next=/") }), http.StatusBadRequest, ""},
		{"no redirect_uri", false, params(func(v url.Values) { v.Del("redirect_uri") }), http.StatusBadRequest, ""},
		{"two redirect_uris", false, params(func(v url.Values) { v.Add("redirect_uri", cb) }), http.StatusBadRequest, ""},
		{"posted for an unknown client", true, params(func(v url.Values) {
			v.Set("client_id", "nobody")
			v.Set("username", "eve")
		}), http.StatusBadRequest, ""},
		{"posted for an unregistered redirect_uri", true, params(func(v url.Values) {
			v.Set("redirect_uri", "https://evil.example/callback")
			v.Set("username", "eve")
		}), http.StatusBadRequest, ""},
		{"posted without a username", true, params(func(v url.Values) { v.Set("username", " ") }), http.StatusBadRequest, ""},
		{"implicit flow", false, params(func(v url.Values) { v.Set("response_type", "id_token") }), 0, "unsupported_response_type"},
		{"no response_type", false, params(func(v url.Values) { v.Del("response_type") }), 0, "invalid_request"},
		{"no openid scope", false, params(func(v url.Values) { v.Set("scope", "email") }), 0, "invalid_scope"},
		{"plain PKCE", false, params(func(v url.Values) {
			v.Set("code_challenge", oauth2.GenerateVerifier())
			v.Set("code_challenge_method", "plain")
		}), 0, "invalid_request"},
		{"challenge without a method", false, params(func(v url.Values) {
			v.Set("code_challenge", oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()))
		}), 0, "invalid_request"},
		{"method without a challenge", false, params(func(v url.Values) { v.Set("code_challenge_method", "S256") }), 0, "invalid_request"},
		{"malformed challenge", false, params(func(v url.Values) {
			v.Set("code_challenge", "short")
			v.Set("code_challenge_method", "S256")
		}), 0, "invalid_request"},
		{"two states", false, params(func(v url.Values) { v.Add("state", "other") }), 0, "invalid_request"},
		{"posted with an unsupported response_type", true, params(func(v url.Values) {
			v.Set("response_type", "token")
			v.Set("username", "eve")
		}), 0, "unsupported_response_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			var err error
			if tc.post {
				resp, err = noFollow.PostForm(i.URL()+AuthorizePath, tc.params)
			} else {
				resp, err = noFollow.Get(i.URL() + AuthorizePath + "?" + tc.params.Encode())
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			if tc.error == "" {
				if resp.StatusCode != tc.status || loc != "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
					t.Fatalf("got %d %s, Location %q; want a %d page", resp.StatusCode, resp.Header.Get("Content-Type"), loc, tc.status)
				}
				return
			}
			back, err := url.Parse(loc)
			if err != nil {
				t.Fatal(err)
			}
			q := back.Query()
			back.RawQuery = ""
			if resp.StatusCode != http.StatusSeeOther || back.String() != cb || q.Get("error") != tc.error || q.Get("state") != tc.params.Get("state") || q.Has("code") {
				t.Fatalf("got %d to %q; want a redirect to %s with error %s and the state", resp.StatusCode, loc, cb, tc.error)
			}
		})
	}
}

// The token endpoint refuses every exchange that does not match the code's
// authorization request, with RFC 6749's errors.
func TestTokenRefusals(t *testing.T) {
	i := NewIssuer(t)
	rp := newRelyingParty(t, i, "console")
	other := newRelyingParty(t, i, "other")
	// other may use the console's callback too, so only the code's client
	// tells them apart.
	i.AddClient(Client{ID: "other", Secret: other.client.Secret, RedirectURLs: append(other.client.RedirectURLs, rp.config.RedirectURL)})

	header := rp.config
	header.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	params := rp.config
	params.Endpoint.AuthStyle = oauth2.AuthStyleInParams

	for _, tc := range []struct {
		name     string
		pkce     bool // the authorization request carries a challenge
		exchange func(t *testing.T, code string, f flow) error
		error    string
		status   int
	}{
		{"a code used twice", true, func(t *testing.T, code string, f flow) error {
			if _, err := header.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier)); err != nil {
				t.Fatalf("first use: %v", err)
			}
			_, err := header.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier))
			return err
		}, "invalid_grant", http.StatusBadRequest},
		{"a code spent by a wrong attempt", true, func(t *testing.T, code string, f flow) error {
			header.Exchange(rp.ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
			_, err := header.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier))
			return err
		}, "invalid_grant", http.StatusBadRequest},
		{"an unknown code", true, func(t *testing.T, code string, f flow) error {
			_, err := header.Exchange(rp.ctx, "made-up", oauth2.VerifierOption(f.verifier))
			return err
		}, "invalid_grant", http.StatusBadRequest},
		{"the wrong PKCE verifier", true, func(t *testing.T, code string, f flow) error {
			_, err := header.Exchange(rp.ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
			return err
		}, "invalid_grant", http.StatusBadRequest},
		{"no PKCE verifier", true, func(t *testing.T, code string, f flow) error {
			_, err := header.Exchange(rp.ctx, code)
			return err
		}, "invalid_grant", http.StatusBadRequest},
		{"a malformed PKCE verifier", true, func(t *testing.T, code string, f flow) error {
			_, err := header.Exchange(rp.ctx, code, oauth2.VerifierOption("short"))
			return err
		}, "invalid_grant", http.StatusBadRequest},
		{"a verifier with no challenge", false, func(t *testing.T, code string, f flow) error {
			_, err := header.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier))
			return err
		}, "invalid_grant", http.StatusBadRequest},
		{"the wrong client secret in the header", true, func(t *testing.T, code string, f flow) error {
			c := header
			c.ClientSecret = "guess"
			_, err := c.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier))
			return err
		}, "invalid_client", http.StatusUnauthorized},
		{"the wrong client secret in the form", true, func(t *testing.T, code string, f flow) error {
			c := params
			c.ClientSecret = "guess"
			_, err := c.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier))
			return err
		}, "invalid_client", http.StatusUnauthorized},
		{"the wrong client secret, either way", true, func(t *testing.T, code string, f flow) error {
			c := rp.config
			c.ClientSecret = "guess"
			_, err := c.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier))
			return err
		}, "invalid_client", http.StatusUnauthorized},
		{"an unknown client", true, func(t *testing.T, code string, f flow) error {
			c := header
			c.ClientID = "nobody"
			_, err := c.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier))
			return err
		}, "invalid_client", http.StatusUnauthorized},
		{"another client's code", true, func(t *testing.T, code string, f flow) error {
			c := header
			c.ClientID, c.ClientSecret = other.client.ID, other.client.Secret
			_, err := c.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier))
			return err
		}, "invalid_grant", http.StatusBadRequest},
		{"another redirect_uri", true, func(t *testing.T, code string, f flow) error {
			c := header
			c.RedirectURL = rp.config.RedirectURL + "/more"
			_, err := c.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier))
			return err
		}, "invalid_grant", http.StatusBadRequest},
		{"no redirect_uri", true, func(t *testing.T, code string, f flow) error {
			c := header
			c.RedirectURL = ""
			_, err := c.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier))
			return err
		}, "invalid_grant", http.StatusBadRequest},
		{"both ways of client authentication", true, func(t *testing.T, code string, f flow) error {
			_, err := header.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier), oauth2.SetAuthURLParam("client_secret", rp.client.Secret))
			return err
		}, "invalid_request", http.StatusBadRequest},
		{"another grant type", true, func(t *testing.T, code string, f flow) error {
			_, err := header.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier), oauth2.SetAuthURLParam("grant_type", "password"))
			return err
		}, "unsupported_grant_type", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFlow()
			authURL := rp.authURL(f)
			if !tc.pkce {
				authURL = rp.config.AuthCodeURL(f.state, oidc.Nonce(f.nonce))
			}
			back := signIn(t, i.HTTPClient(), authURL, "bob")
			checkTokenError(t, tc.exchange(t, back.Query().Get("code"), f), tc.error, tc.status)
		})
	}
}

func checkTokenError(t *testing.T, err error, code string, status int) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("exchange: %v, want error %s", err, code)
	}
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(re.Body, &body); err != nil {
		t.Fatalf("error body %q: %v", re.Body, err)
	}
	if re.ErrorCode != code || body.Error != code || body.Description == "" || re.Response.StatusCode != status {
		t.Fatalf("exchange: %d %s, want %d %s", re.Response.StatusCode, re.Body, status, code)
	}
	if cc := re.Response.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	if status == http.StatusUnauthorized && re.Response.Request.Header.Get("Authorization") != "" && re.Response.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 to a client that authenticated in the header has no WWW-Authenticate")
	}
}

// clock is a settable clock for SetNow.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// A code can be exchanged for CodeTTL after it was issued, by the
// issuer's clock, and not after; the ID token is dated by that clock.
func TestCodeExpires(t *testing.T) {
	i := NewIssuer(t)
	c := &clock{now: time.Now()}
	i.SetNow(c.Now)
	rp := newRelyingParty(t, i, "console")

	f := newFlow()
	code := rp.code(t, f, "bob")
	c.Advance(CodeTTL - time.Second)
	tok, err := rp.config.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier))
	if err != nil {
		t.Fatalf("a code just short of CodeTTL old: %v", err)
	}
	idt, err := rp.provider.Verifier(&oidc.Config{ClientID: rp.client.ID}).Verify(rp.ctx, tok.Extra("id_token").(string))
	if err != nil {
		t.Fatal(err)
	}
	if want := c.Now().Truncate(time.Second); !idt.IssuedAt.Equal(want) {
		t.Errorf("iat = %v, want the issuer's clock %v", idt.IssuedAt, want)
	}

	f = newFlow()
	code = rp.code(t, f, "bob")
	c.Advance(CodeTTL)
	header := rp.config
	header.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	_, err = header.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier))
	checkTokenError(t, err, "invalid_grant", http.StatusBadRequest)
}

// The sign-in endpoints go down with the rest of the issuer, and their
// requests are counted.
func TestSignInDownAndCounted(t *testing.T) {
	i := NewIssuer(t)
	rp := newRelyingParty(t, i, "console")
	f := newFlow()
	code := rp.code(t, f, "bob")
	if n := i.Requests(AuthorizePath); n != 2 {
		t.Errorf("authorize requests = %d, want 2 (the page and the form)", n)
	}

	i.SetDown(true)
	resp, err := i.HTTPClient().Get(rp.authURL(newFlow()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("down: authorize answered %d", resp.StatusCode)
	}
	if _, err := rp.config.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier)); err == nil {
		t.Error("down: the token endpoint exchanged a code")
	}
	if n := i.Requests(TokenPath); n == 0 {
		t.Error("token requests while down were not counted")
	}

	i.SetDown(false)
	if _, err := rp.config.Exchange(rp.ctx, code, oauth2.VerifierOption(f.verifier)); err != nil {
		t.Errorf("up again, the unspent code: %v", err)
	}
}

func TestTokenEndpointIsPostOnly(t *testing.T) {
	i := NewIssuer(t)
	resp, err := i.HTTPClient().Get(i.URL() + TokenPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET %s: %d, want 405", TokenPath, resp.StatusCode)
	}
}
