package passport_test

import (
	"context"
	"fmt"
	"time"

	"github.com/stackctl/stack/passport"
)

func Example() {
	ctx := context.Background()
	now := func() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }

	keys, err := passport.GenerateKeySet(now())
	if err != nil {
		panic(err)
	}
	issuer := &passport.Issuer{Keys: keys, Now: now}
	role := passport.ReferenceRoles()["billing-reporter"]
	token, _, err := issuer.Issue(ctx, passport.IssueRequest{Agent: "billing-bot", Scope: role.Scope, TTL: role.TTL})
	if err != nil {
		panic(err)
	}

	// The verifier needs only the published JWKS.
	v, err := passport.NewVerifier(passport.VerifierOptions{Keys: keys.JWKS(now()), Now: now})
	if err != nil {
		panic(err)
	}
	claims, err := v.Verify(token)
	if err != nil {
		panic(err)
	}
	fmt.Println(claims.Subject, claims.Expiry.Sub(claims.IssuedAt))

	d := claims.Scope.Allows(passport.Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges/ch_1", Credential: "stripe"})
	fmt.Println(d.Allowed)
	d = claims.Scope.Allows(passport.Request{Host: "api.stripe.com", Method: "POST", Path: "/v1/transfers", Credential: "stripe"})
	fmt.Println(d.Allowed, d.Reason)

	_, err = v.Verify(token[:len(token)-8] + "AAAAAAAA")
	fmt.Println(passport.Reason(err))
	// Output:
	// billing-bot 15m0s
	// true
	// false method not granted: POST
	// passport_invalid
}
