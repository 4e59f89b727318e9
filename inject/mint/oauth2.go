package mint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/stackctl/stack/passport"
)

func init() { register(KindOAuth2, oauth2Kind{}) }

// OAuth2Params are the parameters of an oauth2-client-credentials
// credential (RFC 6749 §4.4). Its root material is the client secret.
type OAuth2Params struct {
	// TokenURL is the authorization server's token endpoint. https only:
	// the client secret travels in the request.
	TokenURL string `json:"token_url"`
	// ClientID identifies the client to the authorization server.
	ClientID string `json:"client_id"`
	// Scopes are the most the credential may ask for. A grant's narrowing
	// picks among them; without one the token is requested with all of
	// them. Empty: the request names no scope, and no grant may narrow to
	// one.
	Scopes []string `json:"scopes,omitempty"`
	// Audience, when set, is sent as the audience parameter of the token
	// request, which Auth0 and others need to know the API the token is
	// for.
	Audience string `json:"audience,omitempty"`
	// AuthStyle is how the client authenticates: "header" (HTTP Basic) or
	// "params" (in the request body). Empty tries the header first and
	// then the body, as golang.org/x/oauth2 does: a server that wants the
	// body then costs a second round trip on every mint.
	AuthStyle string `json:"auth_style,omitempty"`
}

// OAuth2 client authentication styles.
const (
	AuthStyleHeader = "header"
	AuthStyleParams = "params"
)

// unknownExpiry is how long a token whose issuer did not say when it
// expires (no expires_in) is used. Such a token may still stop working
// at any time, and one we cannot see expire would otherwise be cached
// forever: treating it as short-lived renews it often.
const unknownExpiry = 5 * time.Minute

// maxScopes bounds a credential's scopes.
const maxScopes = 100

type oauth2Kind struct{}

func (oauth2Kind) check(params json.RawMessage, root []byte) (json.RawMessage, error) {
	p, err := oauth2Params(params)
	if err != nil {
		return nil, err
	}
	if err := checkText(KindOAuth2, "client secret", root, 4096); err != nil {
		return nil, err
	}
	return encodeParams(p), nil
}

// oauth2Params decodes and validates params, reporting every problem.
func oauth2Params(params json.RawMessage) (OAuth2Params, error) {
	var p OAuth2Params
	if err := decodeParams(KindOAuth2, params, &p); err != nil {
		return p, err
	}
	var pr problems
	p.TokenURL = pr.httpsURL("token_url", p.TokenURL, true)
	pr.text("client_id", p.ClientID, true, 1024)
	p.Scopes = pr.scopes("scopes", p.Scopes, false)
	pr.text("audience", p.Audience, false, 1024)
	switch p.AuthStyle {
	case "", AuthStyleHeader, AuthStyleParams:
	default:
		pr.add("auth_style %q: want %q, %q or empty (try both)", p.AuthStyle, AuthStyleHeader, AuthStyleParams)
	}
	return p, pr.err(KindOAuth2 + " parameters")
}

func (oauth2Kind) ttl(json.RawMessage) time.Duration { return 0 }

func (oauth2Kind) mint(ctx context.Context, env Env, r Request) (Token, error) {
	p, err := oauth2Params(r.Params)
	if err != nil {
		return Token{}, err
	}
	scopes, err := narrowScopes(KindOAuth2, p.Scopes, r.Narrow)
	if err != nil {
		return Token{}, err
	}
	if err := checkText(KindOAuth2, "client secret", r.Root, 4096); err != nil {
		return Token{}, err
	}
	cfg := clientcredentials.Config{
		ClientID:     p.ClientID,
		ClientSecret: string(r.Root),
		TokenURL:     p.TokenURL,
		Scopes:       scopes,
	}
	switch p.AuthStyle {
	case AuthStyleHeader:
		cfg.AuthStyle = oauth2.AuthStyleInHeader
	case AuthStyleParams:
		cfg.AuthStyle = oauth2.AuthStyleInParams
	}
	if p.Audience != "" {
		cfg.EndpointParams = url.Values{"audience": {p.Audience}}
	}
	tok, err := cfg.Token(httpClientContext(ctx, env.HTTPClient))
	if err != nil {
		return Token{}, issuerError(KindOAuth2, err, r.Root)
	}
	return oauth2Token(env, tok), nil
}

// oauth2Token is what an OAuth2 token endpoint answered, as a Token.
func oauth2Token(env Env, tok *oauth2.Token) Token {
	exp := tok.Expiry
	if exp.IsZero() {
		exp = env.Now().Add(unknownExpiry)
	}
	return Token{Value: []byte(tok.AccessToken), Expiry: exp}
}

// narrowScopes returns the scopes to request: the grant's narrowing when
// it names scopes, each of which the credential must allow, else all the
// credential allows. A scope outside allowed is refused (ErrNarrow):
// the grant asks for more than the vault entry holds. The refusal names
// that scope only, not the ones the credential allows.
func narrowScopes(kind string, allowed []string, n *passport.Narrowing) ([]string, error) {
	if n == nil || len(n.Scopes) == 0 {
		return allowed, nil
	}
	var out []string
	for _, s := range n.Scopes {
		if !slices.Contains(allowed, s) {
			return nil, fmt.Errorf("%w: %s: the grant narrows to scope %q, which the credential does not allow",
				ErrNarrow, kind, s)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// problems collects what is wrong with a kind's parameters, so that
// validation reports all of it at once.
type problems []string

func (pr *problems) add(format string, args ...any) { *pr = append(*pr, fmt.Sprintf(format, args...)) }

// err is nil without problems, else one ErrInvalid error naming what
// was checked ("github-app parameters") and listing them all.
func (pr problems) err(what string) error {
	if len(pr) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: %s", ErrInvalid, what, strings.Join(pr, "; "))
}

// httpsURL checks an endpoint URL and returns it normalized. Only https
// is allowed: what is sent there proves who we are. User information
// would put a secret in the parameters; a fragment is never sent.
func (pr *problems) httpsURL(field, raw string, query bool) string {
	if raw == "" {
		pr.add("%s: required", field)
		return raw
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		pr.add("%s %q: not a URL", field, raw)
	case u.Scheme != "https":
		pr.add("%s %q: want an https URL", field, raw)
	case u.Host == "" || u.Hostname() == "":
		pr.add("%s %q: no host", field, raw)
	case u.User != nil:
		pr.add("%s: user information in the URL is not allowed", field)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		pr.add("%s %q: a fragment is not allowed", field, raw)
	case !query && (u.RawQuery != "" || u.ForceQuery):
		pr.add("%s %q: a query is not allowed", field, raw)
	default:
		return u.String()
	}
	return raw
}

// text checks a printable parameter.
func (pr *problems) text(field, s string, required bool, limit int) {
	switch {
	case s == "" && required:
		pr.add("%s: required", field)
	case len(s) > limit:
		pr.add("%s: %d bytes, limit %d", field, len(s), limit)
	case !printable([]byte(s)):
		pr.add("%s %q: control characters are not allowed", field, s)
	}
}

// scopes checks OAuth2 scopes (RFC 6749 §3.3: no spaces or quotes) and
// returns them without duplicates.
func (pr *problems) scopes(field string, scopes []string, required bool) []string {
	if len(scopes) == 0 {
		if required {
			pr.add("%s: required, at least one scope", field)
		}
		return nil
	}
	if len(scopes) > maxScopes {
		pr.add("%s: %d scopes, limit %d", field, len(scopes), maxScopes)
		return scopes
	}
	var out []string
	for i, s := range scopes {
		if s == "" || len(s) > 512 || strings.ContainsAny(s, " \"\\") || !printable([]byte(s)) {
			pr.add("%s[%d] %q: want one OAuth2 scope, no spaces or quotes", field, i, s)
			continue
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// checkText checks root material that is a single line of text. Its
// errors never quote it.
func checkText(kind, what string, root []byte, limit int) error {
	switch {
	case len(bytes.TrimSpace(root)) == 0:
		return fmt.Errorf("%w: %s: the %s is empty", ErrInvalid, kind, what)
	case len(root) > limit:
		return fmt.Errorf("%w: %s: the %s is %d bytes, limit %d", ErrInvalid, kind, what, len(root), limit)
	case !printable(root):
		return fmt.Errorf("%w: %s: the %s holds control characters or invalid UTF-8 (a stray newline?)", ErrInvalid, kind, what)
	}
	return nil
}

func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	return !bytes.ContainsFunc(b, unicode.IsControl)
}

// issuerError is the ErrMint error for a failed token request. It says
// what the issuer answered (status, OAuth2 error and description) and
// never the response body otherwise; secrets are redacted from it should
// the issuer echo them. The cause stays reachable with errors.Is/As.
func issuerError(kind string, err error, secrets ...[]byte) error {
	msg := redact(err.Error(), secrets...)
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg = retrieveMessage(re, secrets...)
	}
	return &mintError{msg: fmt.Sprintf("%s: %s: %s", ErrMint, kind, msg), cause: err}
}

func retrieveMessage(re *oauth2.RetrieveError, secrets ...[]byte) string {
	status := "an error"
	if re.Response != nil {
		status = serverText(re.Response.Status, secrets...)
		if status == "" {
			status = fmt.Sprint(re.Response.StatusCode)
		}
	}
	code, desc := re.ErrorCode, re.ErrorDescription
	if code == "" {
		// golang.org/x/oauth2/jwt leaves the body unparsed.
		var body struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(re.Body, &body) == nil {
			code, desc = body.Error, body.Description
		}
	}
	msg := "the token endpoint answered " + status
	if code == "" {
		return msg + " without an OAuth2 error code"
	}
	msg += ": " + serverText(code, secrets...)
	if desc != "" {
		msg += ": " + serverText(desc, secrets...)
	}
	return msg
}

// serverText is what a server said, fit for an error message: secrets
// redacted first, so that cutting it short cannot leave part of one,
// then clipped.
func serverText(s string, secrets ...[]byte) string {
	return clip(redact(s, secrets...))
}

// clip makes a string from a server fit for an error message: printable
// and short.
func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "…"
	}
	return s
}

// redact removes every secret from msg.
func redact(msg string, secrets ...[]byte) string {
	for _, s := range secrets {
		if len(s) > 0 {
			msg = strings.ReplaceAll(msg, string(s), "[redacted]")
		}
	}
	return msg
}

// mintError is an ErrMint whose message was made safe to show; the cause
// is kept for errors.Is and errors.As (context.DeadlineExceeded).
type mintError struct {
	msg   string
	cause error
}

func (e *mintError) Error() string   { return e.msg }
func (e *mintError) Unwrap() []error { return []error{ErrMint, e.cause} }

// httpClientContext makes golang.org/x/oauth2 call through env's client:
// without it the library takes http.DefaultClient.
func httpClientContext(ctx context.Context, c *http.Client) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c)
}
