package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// OIDCOptions configure sign-in with an OpenID Connect provider (the
// authorization-code flow with PKCE).
type OIDCOptions struct {
	// Issuer is the provider's issuer URL (its discovery document is at
	// Issuer/.well-known/openid-configuration).
	Issuer string
	// ClientID and ClientSecret are the console's client at the provider.
	ClientID     string
	ClientSecret string
	// RedirectURL is the console's callback as registered at the provider:
	// https://HOST:PORT/ui/oidc/callback.
	RedirectURL string
	// Admins and Viewers name who may sign in, by verified email or by
	// subject; "*" in a list is anyone the provider signs in. Someone in
	// neither list is refused; someone in both is an admin.
	Admins  []string
	Viewers []string
	// HTTPClient talks to the provider (one trusting its CA); nil is
	// http.DefaultClient.
	HTTPClient *http.Client
}

// CallbackPath is where the provider sends the browser back.
const CallbackPath = "/ui/oidc/callback"

// oidcFlowTTL bounds the time between leaving for the provider and
// coming back.
const oidcFlowTTL = 10 * time.Minute

type oidcLogin struct {
	opts     OIDCOptions
	config   oauth2.Config
	verifier *oidc.IDTokenVerifier
}

// oidcFlow is what the console remembers, in a signed cookie, while the
// browser is at the provider.
type oidcFlow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Expires  int64  `json:"e"`
}

func newOIDCLogin(ctx context.Context, o OIDCOptions) (*oidcLogin, error) {
	switch {
	case o.Issuer == "" || o.ClientID == "" || o.RedirectURL == "":
		return nil, errors.New("console: OIDC sign-in needs an issuer, a client id and a redirect URL")
	case len(o.Admins) == 0 && len(o.Viewers) == 0:
		return nil, errors.New("console: OIDC sign-in needs admins or viewers: nobody could sign in")
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, o.HTTPClient), o.Issuer)
	if err != nil {
		return nil, fmt.Errorf("console: OIDC provider %s: %w", o.Issuer, err)
	}
	return &oidcLogin{
		opts: o,
		config: oauth2.Config{
			ClientID: o.ClientID, ClientSecret: o.ClientSecret, RedirectURL: o.RedirectURL,
			Endpoint: p.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "email", "profile"},
		},
		verifier: p.Verifier(&oidc.Config{ClientID: o.ClientID}),
	}, nil
}

// role is what the provider's user may be here, or "".
func (o *oidcLogin) role(ids ...string) string {
	for _, list := range []struct {
		names []string
		role  string
	}{{o.opts.Admins, RoleAdmin}, {o.opts.Viewers, RoleViewer}} {
		if slices.Contains(list.names, "*") {
			return list.role
		}
		for _, id := range ids {
			if id != "" && slices.Contains(list.names, id) {
				return list.role
			}
		}
	}
	return ""
}

func (c *Console) oidcStart(w http.ResponseWriter, r *http.Request) {
	if c.oidc == nil {
		http.NotFound(w, r)
		return
	}
	f := oidcFlow{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(), Expires: c.now().Add(oidcFlowTTL).Unix()}
	v, err := c.sealer.seal(oidcCookie, f)
	if err != nil {
		c.renderError(w, r, nil, http.StatusInternalServerError, err.Error())
		return
	}
	setCookieLax(w, oidcCookie, v, oidcFlowTTL)
	http.Redirect(w, r, c.oidc.config.AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)), http.StatusSeeOther)
}

func (c *Console) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if c.oidc == nil {
		http.NotFound(w, r)
		return
	}
	fail := func(status int, msg string, err error) {
		c.log.Warn("console: OIDC sign-in refused", zap.String("why", msg), zap.Error(err))
		clearCookie(w, oidcCookie)
		c.showLogin(w, status, msg)
	}
	var f oidcFlow
	ck, err := r.Cookie(oidcCookie)
	if err != nil || c.sealer.open(oidcCookie, ck.Value, &f) != nil || !c.now().Before(time.Unix(f.Expires, 0)) {
		fail(http.StatusBadRequest, "The sign-in took too long or did not start here. Try again.", err)
		return
	}
	q := r.URL.Query()
	if q.Get("state") != f.State {
		fail(http.StatusBadRequest, "The provider's answer does not belong to this sign-in. Try again.", nil)
		return
	}
	if e := q.Get("error"); e != "" {
		fail(http.StatusUnauthorized, "The provider refused the sign-in: "+e+" "+q.Get("error_description"), nil)
		return
	}
	ctx := oidc.ClientContext(r.Context(), c.oidc.opts.HTTPClient)
	tok, err := c.oidc.config.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		fail(http.StatusBadGateway, "The provider did not confirm the sign-in.", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := c.oidc.verifier.Verify(ctx, raw)
	if err != nil {
		fail(http.StatusUnauthorized, "The provider's ID token did not verify.", err)
		return
	}
	if idt.Nonce != f.Nonce {
		fail(http.StatusUnauthorized, "The provider's ID token was not made for this sign-in.", nil)
		return
	}
	var claims struct {
		Email         string `json:"email"`
		EmailVerified bool   `json:"email_verified"`
	}
	if err := idt.Claims(&claims); err != nil {
		fail(http.StatusUnauthorized, "The provider's ID token is unreadable.", err)
		return
	}
	user := idt.Subject
	ids := []string{idt.Subject}
	if claims.Email != "" && claims.EmailVerified {
		user = claims.Email
		ids = append(ids, claims.Email)
	}
	role := c.oidc.role(ids...)
	if role == "" {
		fail(http.StatusForbidden, fmt.Sprintf("%s may not use this console (see control.console.oidc admins and viewers).", user), nil)
		return
	}
	clearCookie(w, oidcCookie)
	if err := c.startSession(w, user, role, "oidc"); err != nil {
		c.renderError(w, r, nil, http.StatusInternalServerError, err.Error())
		return
	}
	c.log.Info("console: signed in", zap.String("user", user), zap.String("role", role), zap.String("via", "oidc"))
	http.Redirect(w, r, Path, http.StatusSeeOther)
}
