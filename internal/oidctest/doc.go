// Package oidctest runs a real OpenID Connect issuer on loopback TLS for
// tests. It signs workload-identity tokens the way the Kubernetes API
// server does, and it signs people in with the authorization-code flow
// the way a login provider does, so that code which verifies either meets
// the discovery document, key set, endpoints and token layout it meets
// outside tests.
//
// # Workload identity
//
// The issuer serves /.well-known/openid-configuration and /openid/v1/jwks
// as kube-apiserver does, signs with one RSA 2048 key (RS256, kid derived
// from the public key as the API server derives it), and can rotate that
// key or go away (503) mid-test. ServiceAccountToken issues a projected
// service-account token; Sign issues tokens with arbitrary claims, for
// issuers other than Kubernetes such as a CI system.
//
//	kube := oidctest.NewIssuer(t)
//	token := kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{})
//
// # Sign-in
//
// The same issuer is a login provider for the clients registered with
// AddClient. Its discovery document names /authorize and /token.
// GET /authorize checks the client and its redirect URI and shows a
// sign-in page: a form with a text input (id and name "username") and a
// submit button (id "sign-in"). Whoever types a name is that user; the
// form posts back to /authorize, which redirects (303) to the client's
// redirect URI with a one-time code and the state. POST /token exchanges
// the code for an ID token signed with the issuer's current key, checking
// the client's secret, the redirect URI and, when the authorization
// request carried a code_challenge, the PKCE verifier (S256 only).
// SetUser gives a name claims of its own; HTTPClient talks to the issuer
// over its TLS, for golang.org/x/oauth2 and go-oidc contexts.
//
//	idp := oidctest.NewIssuer(t)
//	idp.AddClient(oidctest.Client{ID: "console", Secret: "s3cret", RedirectURLs: []string{callback}})
//	idp.SetUser("alice", map[string]any{"email": "alice@corp.test"})
//	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, idp.HTTPClient()), idp.URL())
//
// A headless browser then fills in #username, clicks #sign-in and lands
// on the callback with code and state.
//
// # Caveats
//
// The issuer keeps no session: every visit to /authorize shows the form.
// A code lives CodeTTL and is spent by its first presentation, right or
// wrong. There are no refresh tokens and no userinfo endpoint. The server
// presents a certificate of its own: a browser must trust CAPEM (or be
// told to ignore certificate errors). SetNow sets the clock that dates
// codes and tokens.
package oidctest
