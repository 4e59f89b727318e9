package mint

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/oauthtest"

	"github.com/stackctl/stack/passport"
)

// benchKind is one kind's loopback issuer and a request it mints.
type benchKind struct {
	name   string
	client *http.Client
	req    Request
}

func benchKinds(b *testing.B) []benchKind {
	b.Helper()
	as := oauthtest.Start(b, oauthtest.Options{
		ClientID: oauthClientID, Secret: oauthSecret, Scopes: []string{"read:orders", "write:orders"}, Exp: time.Hour,
	})
	oauthP := oauthParams(b, OAuth2Params{
		TokenURL: as.TokenURL(), ClientID: oauthClientID, AuthStyle: AuthStyleParams,
		Scopes: []string{"read:orders", "write:orders"},
	})
	gcpTS, gcpKey, gcpP := gcpFixture(b)
	gh, ghRoot, ghP := githubFixture(b, GitHubParams{
		Permissions: map[string]string{"contents": "write"}, Repositories: []string{"api", "web"},
	})
	return []benchKind{
		{KindOAuth2, as.Client(), Request{Kind: KindOAuth2, Params: oauthP, Root: []byte(oauthSecret), Agent: "a",
			Narrow: &passport.Narrowing{Scopes: []string{"read:orders"}}}},
		{KindGCP, gcpTS.Client(), Request{Kind: KindGCP, Params: gcpP, Root: gcpKey, Agent: "a",
			Narrow: &passport.Narrowing{Scopes: gcpScopes[:1]}}},
		{KindGitHub, gh.Client(), Request{Kind: KindGitHub, Params: ghP, Root: ghRoot, Agent: "a",
			Narrow: &passport.Narrowing{Permissions: map[string]string{"contents": "read"}, Repositories: []string{"api"}}}},
	}
}

// BenchmarkMint is a request that needs a fresh mint: one call to the
// kind's issuer on loopback TLS (connections kept alive).
func BenchmarkMint(b *testing.B) {
	ctx := context.Background()
	for _, k := range benchKinds(b) {
		b.Run(k.name, func(b *testing.B) {
			env := Env{HTTPClient: k.client}
			for b.Loop() {
				if _, err := Mint(ctx, env, k.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCacheHit is a request served from the cache: the token was
// minted before.
func BenchmarkCacheHit(b *testing.B) {
	ctx := context.Background()
	for _, k := range benchKinds(b) {
		b.Run(k.name, func(b *testing.B) {
			c := NewCache(CacheOptions{Env: Env{HTTPClient: k.client}})
			defer c.Close()
			key := Key{Credential: k.name, Version: 1, Agent: k.req.Agent, Narrow: k.req.Narrow.Key()}
			load := func(context.Context) (Request, error) {
				r := k.req
				r.Root = slices.Clone(r.Root) // the cache clears it
				return r, nil
			}
			if _, err := c.Get(ctx, key, load); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := c.Get(ctx, key, load); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
