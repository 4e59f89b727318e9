package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Roles a console user may hold.
const (
	// RoleAdmin sees everything and may revoke agents and change
	// detector modes.
	RoleAdmin = "admin"
	// RoleViewer sees everything and changes nothing.
	RoleViewer = "viewer"
)

// Cookie names. The __Host- prefix makes the browser refuse them unless
// they are Secure, for the whole origin, and set by this host only.
const (
	sessionCookie = "__Host-stack-session"
	loginCookie   = "__Host-stack-login"
	oidcCookie    = "__Host-stack-oidc"
)

// session is what the session cookie carries, signed. It holds no secret:
// the CSRF token is bound to it, not derived from anything else.
type session struct {
	V       int    `json:"v"`
	User    string `json:"u"`
	Role    string `json:"r"`
	Via     string `json:"via"` // "token" or "oidc"
	Expires int64  `json:"e"`   // unix seconds
	CSRF    string `json:"c"`
}

func (s *session) admin() bool { return s != nil && s.Role == RoleAdmin }

// sealer signs cookie values with a key only the control plane knows, so
// a cookie cannot be forged or changed; it does not hide them.
type sealer struct{ key []byte }

func (k sealer) seal(purpose string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	body := base64.RawURLEncoding.EncodeToString(b)
	return body + "." + base64.RawURLEncoding.EncodeToString(k.mac(purpose, body)), nil
}

var cookieEncoding = base64.RawURLEncoding.Strict()

var errBadCookie = errors.New("console: cookie not signed by this control plane")

func (k sealer) open(purpose, s string, v any) error {
	body, sig, ok := strings.Cut(s, ".")
	// Only the alphabet seal writes: base64 decoding skips line breaks,
	// which would let one cookie be written several ways.
	if !ok || !isBase64URL(body) || !isBase64URL(sig) {
		return errBadCookie
	}
	// Strict: one encoding per value, so a cookie cannot be varied and
	// still pass.
	got, err := cookieEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, k.mac(purpose, body)) {
		return errBadCookie
	}
	b, err := cookieEncoding.DecodeString(body)
	if err != nil {
		return errBadCookie
	}
	return json.Unmarshal(b, v)
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// mac binds a value to its purpose: a login or OIDC cookie never passes
// as a session.
func (k sealer) mac(purpose, body string) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(body))
	return m.Sum(nil)
}

// deriveKey makes the cookie key from the operator token, so that every
// replica signs alike and rotating the token ends every session.
func deriveKey(token string) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("stack console cookie key v1"))
	return m.Sum(nil)
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: int(maxAge / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

// setCookieLax is for the OIDC round trip: the provider's redirect back is
// a cross-site navigation, which a Strict cookie would not follow.
func setCookieLax(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: int(maxAge / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// session returns the request's valid session, or nil.
func (c *Console) session(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	return c.openSession(ck.Value)
}

// openSession returns the session a cookie value holds if it is valid:
// sealed here, of this format, a known role, not expired.
func (c *Console) openSession(value string) *session {
	var s session
	if c.sealer.open(sessionCookie, value, &s) != nil || s.V != 1 {
		return nil
	}
	if s.Role != RoleAdmin && s.Role != RoleViewer || !c.now().Before(time.Unix(s.Expires, 0)) {
		return nil
	}
	return &s
}

// startSession signs the user in.
func (c *Console) startSession(w http.ResponseWriter, user, role, via string) error {
	s := session{V: 1, User: user, Role: role, Via: via, Expires: c.now().Add(c.opts.SessionTTL).Unix(), CSRF: randomToken()}
	v, err := c.sealer.seal(sessionCookie, s)
	if err != nil {
		return err
	}
	setCookie(w, sessionCookie, v, c.opts.SessionTTL)
	return nil
}

// sameOrigin refuses a state-changing request a page of another origin
// made: browsers send Sec-Fetch-Site and Origin on such requests, and
// neither may name another site. A request with neither header (an old
// browser, curl) still needs the CSRF token.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Scheme == "https" && u.Host == r.Host
}

// checkCSRF says whether a form post carries the session's CSRF token and
// comes from this origin.
func checkCSRF(r *http.Request, s *session) bool {
	if s == nil || !sameOrigin(r) {
		return false
	}
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.CSRF)) == 1
}
