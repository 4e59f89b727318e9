package oidctest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Paths of the sign-in endpoints.
const (
	AuthorizePath = "/authorize"
	TokenPath     = "/token"
)

// Lifetimes of what the sign-in endpoints issue.
const (
	// CodeTTL is how long an authorization code can be exchanged.
	CodeTTL = time.Minute
	// IDTokenTTL is an ID token's exp - iat, and the access token's
	// expires_in.
	IDTokenTTL = time.Hour
)

// Client is an OAuth client of the issuer. It is confidential: at the
// token endpoint it authenticates with its secret, in the Authorization
// header (client_secret_basic) or in the form (client_secret_post).
type Client struct {
	ID     string
	Secret string
	// RedirectURLs are the callbacks the client may name. A redirect_uri
	// must equal one of them exactly.
	RedirectURLs []string
}

// AddClient registers c, replacing a client of the same ID. It panics if
// c has no ID or secret, or a redirect URL is not an absolute URL.
func (i *Issuer) AddClient(c Client) {
	if c.ID == "" || c.Secret == "" {
		panic("oidctest: AddClient: a client needs an ID and a secret")
	}
	for _, u := range c.RedirectURLs {
		if p, err := url.Parse(u); err != nil || !p.IsAbs() || p.Fragment != "" {
			panic(fmt.Sprintf("oidctest: AddClient: redirect URL %q is not an absolute URL without a fragment", u))
		}
	}
	c.RedirectURLs = slices.Clone(c.RedirectURLs)
	i.mu.Lock()
	defer i.mu.Unlock()
	i.clients[c.ID] = c
}

// SetUser gives the user who signs in as name claims of their own. Without
// them the ID token says email name@example.test, email_verified true and
// name name. The claims are laid over the whole token, the issuer's own
// claims included, so a test can also make the provider hand back a token
// the client must refuse (an aud or exp of its choosing). A nil map
// clears them. The claims apply to ID tokens issued after the call.
func (i *Issuer) SetUser(name string, claims map[string]any) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if claims == nil {
		delete(i.users, name)
		return
	}
	i.users[name] = maps.Clone(claims)
}

// grant is what an authorization code stands for.
type grant struct {
	clientID    string
	redirectURI string
	nonce       string
	challenge   string // S256 code challenge, or "" without PKCE
	user        string
	expires     time.Time
}

// authParams are the authorization request's parameters, which the
// sign-in form carries in hidden fields.
var authParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method"}

// authRequest is an authorization request that passed authorization's
// checks.
type authRequest struct {
	clientID    string
	redirectURI string
	state       string
	nonce       string
	challenge   string
	params      url.Values // authParams as given
}

// authorization checks the authorization request whose parameters are q.
// When it fails it has answered: with an error page (400) for a problem
// with the client or its redirect URI, which is never redirected to since
// it is not known to be the client's, and otherwise with a redirect to the
// client carrying the OAuth error (RFC 6749 section 4.1.2.1).
func (i *Issuer) authorization(w http.ResponseWriter, r *http.Request, q url.Values) (authRequest, bool) {
	a := authRequest{
		clientID:    q.Get("client_id"),
		redirectURI: q.Get("redirect_uri"),
		state:       q.Get("state"),
		nonce:       q.Get("nonce"),
		challenge:   q.Get("code_challenge"),
		params:      url.Values{},
	}
	for _, p := range authParams {
		if v := q.Get(p); v != "" {
			a.params.Set(p, v)
		}
	}
	i.mu.Lock()
	c, known := i.clients[a.clientID]
	i.mu.Unlock()
	switch {
	case len(q["client_id"]) > 1 || len(q["redirect_uri"]) > 1:
		errorPage(w, "client_id or redirect_uri is given more than once.")
		return a, false
	case a.clientID == "":
		errorPage(w, "The request names no client (client_id).")
		return a, false
	case !known:
		errorPage(w, fmt.Sprintf("Unknown client %q.", a.clientID))
		return a, false
	case a.redirectURI == "":
		errorPage(w, "The request names no redirect_uri.")
		return a, false
	case !slices.Contains(c.RedirectURLs, a.redirectURI):
		errorPage(w, fmt.Sprintf("The redirect_uri %q is not registered for client %q.", a.redirectURI, a.clientID))
		return a, false
	}

	fail := func(code, description string) (authRequest, bool) {
		v := url.Values{"error": {code}, "error_description": {description}}
		if a.state != "" {
			v.Set("state", a.state)
		}
		http.Redirect(w, r, withQuery(a.redirectURI, v), http.StatusSeeOther)
		return a, false
	}
	for _, p := range authParams {
		if len(q[p]) > 1 {
			return fail("invalid_request", p+" is given more than once")
		}
	}
	method := q.Get("code_challenge_method")
	switch rt := q.Get("response_type"); {
	case rt == "":
		return fail("invalid_request", "missing response_type")
	case rt != "code":
		return fail("unsupported_response_type", "only response_type code is supported")
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		return fail("invalid_scope", "scope must include openid")
	case a.challenge == "" && method != "":
		return fail("invalid_request", "code_challenge_method without code_challenge")
	case a.challenge != "" && method != "S256":
		return fail("invalid_request", "code_challenge_method must be S256")
	case a.challenge != "" && !validChallenge(a.challenge):
		return fail("invalid_request", "code_challenge is not a base64url SHA-256 digest")
	}
	return a, true
}

// serveSignInPage answers GET /authorize with the sign-in form.
func (i *Issuer) serveSignInPage(w http.ResponseWriter, r *http.Request) {
	a, ok := i.authorization(w, r, r.URL.Query())
	if !ok {
		return
	}
	signInPage(w, http.StatusOK, a, "")
}

// serveSignIn answers the sign-in form: the user is whoever the form
// names, and the client gets a code for them.
func (i *Issuer) serveSignIn(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		errorPage(w, "The sign-in form is unreadable.")
		return
	}
	a, ok := i.authorization(w, r, r.PostForm)
	if !ok {
		return
	}
	user := strings.TrimSpace(r.PostForm.Get("username"))
	if user == "" {
		signInPage(w, http.StatusBadRequest, a, "Enter a user name.")
		return
	}
	code := randomToken()
	i.mu.Lock()
	now := i.now()
	maps.DeleteFunc(i.codes, func(_ string, g grant) bool { return !now.Before(g.expires) })
	i.codes[code] = grant{
		clientID:    a.clientID,
		redirectURI: a.redirectURI,
		nonce:       a.nonce,
		challenge:   a.challenge,
		user:        user,
		expires:     now.Add(CodeTTL),
	}
	i.mu.Unlock()
	v := url.Values{"code": {code}}
	if a.state != "" {
		v.Set("state", a.state)
	}
	http.Redirect(w, r, withQuery(a.redirectURI, v), http.StatusSeeOther)
}

// tokenResponse is the token endpoint's answer (RFC 6749 section 5.1,
// OpenID Connect Core section 3.1.3.3).
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	IDToken     string `json:"id_token"`
}

// serveToken exchanges an authorization code for tokens.
func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	form := r.PostForm
	for p, v := range form {
		if len(v) > 1 {
			tokenError(w, http.StatusBadRequest, "invalid_request", p+" is given more than once")
			return
		}
	}
	c, ok := i.authenticate(w, r, form)
	if !ok {
		return
	}
	switch gt := form.Get("grant_type"); gt {
	case "authorization_code":
	case "":
		tokenError(w, http.StatusBadRequest, "invalid_request", "missing grant_type")
		return
	default:
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "only grant_type authorization_code is supported")
		return
	}
	code := form.Get("code")
	if code == "" {
		tokenError(w, http.StatusBadRequest, "invalid_request", "missing code")
		return
	}

	// A code is spent by its first presentation, whatever comes of it.
	i.mu.Lock()
	g, found := i.codes[code]
	delete(i.codes, code)
	now := i.now()
	claims := i.users[g.user]
	i.mu.Unlock()
	if msg := g.refuse(found, now, c.ID, form); msg != "" {
		tokenError(w, http.StatusBadRequest, "invalid_grant", msg)
		return
	}

	idClaims := map[string]any{
		"iss":            i.URL(),
		"sub":            g.user,
		"aud":            c.ID,
		"exp":            now.Add(IDTokenTTL).Unix(),
		"iat":            now.Unix(),
		"email":          g.user + "@example.test",
		"email_verified": true,
		"name":           g.user,
	}
	if g.nonce != "" {
		idClaims["nonce"] = g.nonce
	}
	maps.Copy(idClaims, claims)
	idToken, err := i.sign(idClaims)
	if err != nil {
		tokenError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: randomToken(),
		TokenType:   "Bearer",
		ExpiresIn:   int64(IDTokenTTL / time.Second),
		IDToken:     idToken,
	})
}

// refuse says why the code of grant g (found or not) may not be exchanged
// at now by the client clientID with the token request form, or "".
func (g grant) refuse(found bool, now time.Time, clientID string, form url.Values) string {
	verifier := form.Get("code_verifier")
	switch {
	case !found:
		return "unknown or already used code"
	case !now.Before(g.expires):
		return "expired code"
	case g.clientID != clientID:
		return "the code was issued to another client"
	case form.Get("redirect_uri") != g.redirectURI:
		return "redirect_uri differs from the authorization request's"
	case g.challenge == "" && verifier != "":
		return "code_verifier without a code_challenge in the authorization request"
	case g.challenge == "":
		return ""
	case verifier == "":
		return "missing code_verifier"
	case !validVerifier(verifier):
		return "malformed code_verifier"
	case subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(g.challenge)) != 1:
		return "code_verifier does not match the code_challenge"
	}
	return ""
}

// authenticate finds the client that the token request authenticates,
// with client_secret_basic or client_secret_post (one, not both). When
// that fails it has answered.
func (i *Issuer) authenticate(w http.ResponseWriter, r *http.Request, form url.Values) (Client, bool) {
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 section 2.3.1: the header carries both form-encoded.
		var errID, errSecret error
		id, errID = url.QueryUnescape(id)
		secret, errSecret = url.QueryUnescape(secret)
		switch {
		case form.Has("client_secret"):
			tokenError(w, http.StatusBadRequest, "invalid_request", "client authenticated both in the header and in the form")
			return Client{}, false
		case errID != nil || errSecret != nil:
			w.Header().Set("WWW-Authenticate", `Basic realm="oidctest"`)
			tokenError(w, http.StatusUnauthorized, "invalid_client", "malformed client credentials")
			return Client{}, false
		case form.Has("client_id") && form.Get("client_id") != id:
			tokenError(w, http.StatusBadRequest, "invalid_request", "client_id in the form differs from the header's")
			return Client{}, false
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
		if id == "" || !form.Has("client_secret") {
			tokenError(w, http.StatusUnauthorized, "invalid_client", "no client authentication")
			return Client{}, false
		}
	}
	i.mu.Lock()
	c, known := i.clients[id]
	i.mu.Unlock()
	if !known || subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="oidctest"`)
		}
		tokenError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return Client{}, false
	}
	return c, true
}

// tokenError answers with an error of RFC 6749 section 5.2.
func tokenError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, description})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// pages are the sign-in form and the error page.
var pages = template.Must(template.New("").Parse(`{{define "signin"}}<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<main>
<h1>Sign in</h1>
<p>to {{.ClientID}}</p>
{{with .Problem}}<p role="alert">{{.}}</p>{{end}}
<form method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<label for="username">User name</label>
<input type="text" id="username" name="username" autocomplete="username" autofocus required>
<button type="submit" id="sign-in">Sign in</button>
</form>
</main>
</body>
</html>
{{end}}{{define "error"}}<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign-in error</title></head>
<body>
<main>
<h1>Sign-in error</h1>
<p role="alert">{{.}}</p>
</main>
</body>
</html>
{{end}}`))

type hidden struct{ Name, Value string }

// signInPage shows the sign-in form for a, with problem (if any) above it.
func signInPage(w http.ResponseWriter, status int, a authRequest, problem string) {
	var fields []hidden
	for _, p := range authParams {
		if v := a.params.Get(p); v != "" {
			fields = append(fields, hidden{p, v})
		}
	}
	render(w, status, "signin", struct {
		ClientID, Action, Problem string
		Hidden                    []hidden
	}{a.clientID, AuthorizePath, problem, fields})
}

// errorPage shows msg with 400, for a request that cannot go back to a
// client.
func errorPage(w http.ResponseWriter, msg string) {
	render(w, http.StatusBadRequest, "error", msg)
}

func render(w http.ResponseWriter, status int, name string, data any) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// withQuery adds v to the query of rawURL, a registered redirect URL,
// keeping the query it has.
func withQuery(rawURL string, v url.Values) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(fmt.Sprintf("oidctest: registered redirect URL %q: %v", rawURL, err)) // AddClient parsed it
	}
	q := u.Query()
	for k, vs := range v {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// validVerifier says whether s is a PKCE code verifier (RFC 7636 section
// 4.1): 43 to 128 unreserved characters.
func validVerifier(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// validChallenge says whether s is an S256 code challenge: a SHA-256
// digest in unpadded base64url.
func validChallenge(s string) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// randomToken is 256 random bits in base64url, for codes and access
// tokens.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
