package console

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/fleet"
	"github.com/stackctl/stack/passport"
)

// Path is where the console is served on the control plane's listener.
const Path = "/ui/"

// DefaultSessionTTL is how long a sign-in lasts.
const DefaultSessionTTL = 8 * time.Hour

// Via is how console calls are named in operator_call audit records.
const Via = "console"

// Backend is what the console reads and changes: the control plane
// (*control.Server).
type Backend interface {
	Agents(ctx context.Context) ([]control.Agent, error)
	Status(ctx context.Context) (control.Status, error)
	PassportExpiries(ctx context.Context) (map[string]time.Time, error)
	RevokeAgent(ctx context.Context, agent, reason, by string) (passport.Revocation, error)
	RecordOperatorCall(ctx context.Context, c control.OperatorCall) error
	FleetRecords(ctx context.Context, q fleet.Query, fn func(fleet.Item) error) error
	DetectorModes(ctx context.Context, agent string) (control.AgentDetectors, error)
	SetDetectorMode(ctx context.Context, agent, detector, mode, by, reason string) (control.AgentDetectors, error)
}

// Options configure New. Backend, Live and Token are required.
type Options struct {
	Backend Backend
	// Live streams signals and counts rates; the fleet log feeds it.
	Live *Live
	// Token is the operator token: signing in with it makes an admin,
	// and the cookie key is derived from it.
	Token string
	// OIDC, when set, lets people sign in with an OpenID Connect provider.
	OIDC *OIDCOptions
	// SessionTTL is how long a sign-in lasts (DefaultSessionTTL).
	SessionTTL time.Duration
	Log        *zap.Logger
	Now        func() time.Time
}

// Console is the web console, an http.Handler for everything under Path.
type Console struct {
	opts   Options
	sealer sealer
	now    func() time.Time
	log    *zap.Logger
	mux    *http.ServeMux
	pages  map[string]*template.Template
	oidc   *oidcLogin
	// tokenTries slows guessing the operator token.
	tokenTries *rate.Limiter
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New builds the console. With OIDC set it reads the provider's discovery
// document, so the provider must answer.
func New(ctx context.Context, opts Options) (*Console, error) {
	switch {
	case opts.Backend == nil || opts.Live == nil:
		return nil, errors.New("console: a backend and a live feed are required")
	case len(opts.Token) < 32:
		return nil, errors.New("console: the operator token is missing or shorter than 32 characters")
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Console{
		opts: opts, sealer: sealer{key: deriveKey(opts.Token)}, now: opts.Now, log: opts.Log,
		tokenTries: rate.NewLimiter(rate.Every(time.Second), 10),
	}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	if opts.OIDC != nil {
		o, err := newOIDCLogin(ctx, *opts.OIDC)
		if err != nil {
			return nil, err
		}
		c.oidc = o
	}
	static, _ := fs.Sub(staticFS, "static")
	mux := http.NewServeMux()
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, Path, http.StatusSeeOther) })
	mux.HandleFunc("GET /ui/login", c.loginPage)
	mux.HandleFunc("POST /ui/login", c.tokenLogin)
	mux.HandleFunc("GET /ui/login/oidc", c.oidcStart)
	mux.HandleFunc("GET /ui/oidc/callback", c.oidcCallback)
	mux.HandleFunc("POST /ui/logout", c.signedIn(c.logout))
	mux.HandleFunc("GET /ui/{$}", c.signedIn(c.overview))
	mux.HandleFunc("GET /ui/agents/{name}", c.signedIn(c.agentPage))
	mux.HandleFunc("POST /ui/agents/{name}/revoke", c.admin(c.revoke))
	mux.HandleFunc("POST /ui/agents/{name}/detectors", c.admin(c.setMode))
	mux.HandleFunc("GET /ui/events", c.signedIn(c.events))
	mux.HandleFunc("GET /ui/charts/rates.svg", c.signedIn(c.chart))
	c.mux = mux
	return c, nil
}

// contentSecurityPolicy lets pages load only this origin's script, style
// and images, post forms only here, and never be framed.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP serves the console with its security headers on every answer.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: under no-referrer browsers send
	// "Origin: null" with form posts, and the origin check needs it.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

type sessionKey struct{}

func sessionOf(r *http.Request) *session {
	s, _ := r.Context().Value(sessionKey{}).(*session)
	return s
}

// signedIn passes on requests with a valid session: pages send others to
// the sign-in page, posts and streams are refused.
func (c *Console) signedIn(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.session(r)
		if s == nil {
			if r.Method == http.MethodGet && r.URL.Path != "/ui/events" && r.URL.Path != "/ui/charts/rates.svg" {
				http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
				return
			}
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && !checkCSRF(r, s) {
			c.log.Warn("console: refused a post without this origin's CSRF token", zap.String("path", r.URL.Path), zap.String("user", s.User),
				zap.String("origin", r.Header.Get("Origin")), zap.String("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")))
			c.renderError(w, r, s, http.StatusForbidden, "This request did not come from a console page (its CSRF check failed). Reload the page and try again.")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	}
}

// admin is signedIn for changes: a viewer may not make any.
func (c *Console) admin(h http.HandlerFunc) http.HandlerFunc {
	return c.signedIn(func(w http.ResponseWriter, r *http.Request) {
		s := sessionOf(r)
		if !s.admin() {
			c.log.Warn("console: a viewer tried a change", zap.String("path", r.URL.Path), zap.String("user", s.User))
			c.renderError(w, r, s, http.StatusForbidden, "You are signed in as a viewer: viewers cannot change anything.")
			return
		}
		h(w, r)
	})
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if c.session(r) != nil {
		http.Redirect(w, r, Path, http.StatusSeeOther)
		return
	}
	c.showLogin(w, http.StatusOK, r.URL.Query().Get("error"))
}

func (c *Console) showLogin(w http.ResponseWriter, status int, msg string) {
	nonce := randomToken()
	setCookie(w, loginCookie, nonce, 10*time.Minute)
	c.render(w, status, "login", page{Title: "Sign in", Error: msg, CSRF: nonce, Data: map[string]any{"OIDC": c.oidc != nil}})
}

// tokenLogin signs in with the operator token, as an admin. The form
// carries a nonce that must match its cookie, so that another site cannot
// sign a browser in to a session of its choosing.
func (c *Console) tokenLogin(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(loginCookie)
	if err != nil || !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostFormValue("csrf"))) != 1 {
		c.showLogin(w, http.StatusForbidden, "The sign-in form expired or did not come from this console. Try again.")
		return
	}
	if !c.tokenTries.Allow() {
		c.showLogin(w, http.StatusTooManyRequests, "Too many sign-in attempts; wait a moment.")
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue("token")), []byte(c.opts.Token)) != 1 {
		c.log.Warn("console: sign-in with a wrong operator token", zap.String("remote", r.RemoteAddr))
		c.showLogin(w, http.StatusUnauthorized, "That is not the operator token.")
		return
	}
	clearCookie(w, loginCookie)
	if err := c.startSession(w, "operator token", RoleAdmin, "token"); err != nil {
		c.renderError(w, r, nil, http.StatusInternalServerError, err.Error())
		return
	}
	c.log.Info("console: signed in", zap.String("user", "operator token"), zap.String("role", RoleAdmin))
	http.Redirect(w, r, Path, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	clearCookie(w, sessionCookie)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// record writes the operator_call record of a change before it is made;
// an error means the change must not be made.
func (c *Console) record(r *http.Request, action, detail string) error {
	s := sessionOf(r)
	err := c.opts.Backend.RecordOperatorCall(r.Context(), control.OperatorCall{
		Via: Via, Tool: action, Detail: fmt.Sprintf("by %s (%s): %s", s.User, s.Role, detail),
	})
	if err != nil {
		c.log.Error("console: the change cannot be recorded; not making it", zap.String("action", action), zap.Error(err))
	}
	return err
}
