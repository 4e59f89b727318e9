// Package passport issues and verifies passports: short-lived, signed
// statements of what one agent may do through the STACK proxy.
//
// # Basics
//
// A passport is a compact JWS (alg EdDSA, typ passport+jwt, kid naming
// the issuer key) whose claims carry the agent (sub), lifetime (iat, nbf,
// exp), a random jti, a Scope of grants, an enforcement Mode and, for
// delegated passports, the chain of parent jtis (del).
//
//	keys, _ := passport.GenerateKeySet(time.Now())
//	iss := &passport.Issuer{Keys: keys}
//	token, claims, err := iss.Issue(ctx, passport.IssueRequest{Agent: "billing-bot", Scope: scope})
//
//	v, _ := passport.NewVerifier(passport.VerifierOptions{Keys: keys.JWKS(time.Now()), Revocations: store})
//	claims, err = v.Verify(token)
//	d := claims.Scope.Allows(passport.Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/balance"})
//
// Verification needs only the JWKS, so any standard JOSE library can check
// a passport too. Only EdDSA is accepted; tokens over MaxTokenSize are
// refused unread. Verified tokens are cached by their SHA-256 in a bounded
// LRU; dates and revocation are checked again on every hit.
//
// # Scopes
//
// A grant names hosts (exact, or "*.example.com" for exactly one more
// label: the hostmatch rules credential bindings follow too), methods,
// path patterns ("*" within a segment, a final "/**" for any remainder),
// credential names and parameter constraints (eq, in, prefix, regex) on
// query parameters or top-level body fields. Scope.Allows says which grant
// allowed a request, or why none did. Scope.Covers checks that a delegated
// scope only narrows its parent's.
//
// # Keys and revocation
//
// A KeySet holds the issuer's keys; Rotate starts a new current key and
// keeps the old one published until the passports it signed have expired.
// Private keys are stored wrapped by a Wrapper (a KMS). RevocationStore
// keeps revoked jtis and agents in a bbolt file and in memory, so checks
// are map lookups.
//
// # Caveats
//
// Claims returned by Verify may share their slices with the cache: do not
// modify them. The revocation store's file is held by one process at a
// time; others get ErrStoreLocked after the open timeout.
package passport
