package mint

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/oauthtest"

	"github.com/stackctl/stack/internal/testclock"
	"github.com/stackctl/stack/passport"
)

const (
	oauthClientID = "stack-agent"
	oauthSecret   = "Zq7rV2mXk9LpT4sWc8Hn"
)

func oauthParams(tb testing.TB, p OAuth2Params) json.RawMessage {
	tb.Helper()
	b, err := Check(KindOAuth2, encodeParams(p), []byte(oauthSecret))
	if err != nil {
		tb.Fatalf("Check: %v", err)
	}
	return b
}

func TestOAuth2MintsATokenTheServerAccepts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		basic     bool
		authStyle string
		requests  int64 // token requests per mint
	}{
		{"header", true, AuthStyleHeader, 1},
		{"params", false, AuthStyleParams, 1},
		{"autodetect, server takes the header", true, "", 1},
		// The header is tried first and refused.
		{"autodetect, server takes params", false, "", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := oauthtest.Start(t, oauthtest.Options{
				ClientID: oauthClientID, Secret: oauthSecret,
				Scopes: []string{"read:orders", "write:orders"}, Exp: time.Hour, Basic: tc.basic,
			})
			params := oauthParams(t, OAuth2Params{
				TokenURL: as.TokenURL(), ClientID: oauthClientID, AuthStyle: tc.authStyle,
				Scopes: []string{"read:orders", "write:orders"},
			})
			tok, err := Mint(context.Background(), Env{HTTPClient: as.Client()},
				Request{Kind: KindOAuth2, Params: params, Root: []byte(oauthSecret), Agent: "a"})
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			if got := as.Requests(); got != tc.requests {
				t.Errorf("token requests = %d, want %d", got, tc.requests)
			}
			status, info := as.Whoami(t, tok.Value)
			if status != http.StatusOK || info["client_id"] != oauthClientID || info["scope"] != "read:orders write:orders" {
				t.Fatalf("resource answered %d %v, want 200 for %s with both scopes", status, info, oauthClientID)
			}
			if status, _ := as.Whoami(t, []byte("forged")); status != http.StatusUnauthorized {
				t.Fatalf("resource accepted a forged token: %d", status)
			}
		})
	}
}

func TestOAuth2NarrowedScopesAreWhatTheServerSaw(t *testing.T) {
	as := oauthtest.Start(t, oauthtest.Options{
		ClientID: oauthClientID, Secret: oauthSecret, Scopes: []string{"read:orders", "write:orders"}, Exp: time.Hour,
	})
	params := oauthParams(t, OAuth2Params{
		TokenURL: as.TokenURL(), ClientID: oauthClientID, Scopes: []string{"read:orders", "write:orders"},
		Audience: "https://orders.example/api",
	})
	tok, err := Mint(context.Background(), Env{HTTPClient: as.Client()}, Request{
		Kind: KindOAuth2, Params: params, Root: []byte(oauthSecret), Agent: "a",
		Narrow: &passport.Narrowing{Scopes: []string{"read:orders"}, Actions: []string{"s3:GetObject"}},
	})
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	status, info := as.Whoami(t, tok.Value)
	if status != http.StatusOK || info["scope"] != "read:orders" {
		t.Fatalf("resource answered %d %v, want the scope read:orders only", status, info)
	}
	if info["audience"] != "https://orders.example/api" {
		t.Fatalf("the token is for audience %q, want the credential's", info["audience"])
	}
}

func TestOAuth2ScopeOutsideTheCredentialIsRefusedBeforeAnyCall(t *testing.T) {
	as := oauthtest.Start(t, oauthtest.Options{
		ClientID: oauthClientID, Secret: oauthSecret, Scopes: []string{"read:orders", "admin"}, Exp: time.Hour,
	})
	params := oauthParams(t, OAuth2Params{TokenURL: as.TokenURL(), ClientID: oauthClientID, Scopes: []string{"read:orders"}})
	_, err := Mint(context.Background(), Env{HTTPClient: as.Client()}, Request{
		Kind: KindOAuth2, Params: params, Root: []byte(oauthSecret),
		Narrow: &passport.Narrowing{Scopes: []string{"read:orders", "admin"}},
	})
	if !errors.Is(err, ErrNarrow) || errors.Is(err, ErrMint) || !strings.Contains(err.Error(), `"admin"`) {
		t.Fatalf("Mint = %v, want ErrNarrow naming the scope admin", err)
	}
	if n := as.Requests(); n != 0 {
		t.Fatalf("the token endpoint was called %d times", n)
	}
}

func TestOAuth2ServerRefusals(t *testing.T) {
	as := oauthtest.Start(t, oauthtest.Options{
		ClientID: oauthClientID, Secret: oauthSecret, Scopes: []string{"read:orders"}, Exp: time.Hour, Basic: true,
	})
	for _, tc := range []struct {
		name   string
		params OAuth2Params
		secret string
		want   string
	}{
		{"wrong client secret", OAuth2Params{ClientID: oauthClientID, Scopes: []string{"read:orders"}},
			"not-the-secret-" + oauthSecret[:6], "invalid_client"},
		{"unknown client", OAuth2Params{ClientID: "someone-else", Scopes: []string{"read:orders"}},
			oauthSecret, "invalid_client"},
		{"a scope the server does not grant the client", OAuth2Params{ClientID: oauthClientID, Scopes: []string{"write:orders"}},
			oauthSecret, "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.params.TokenURL = as.TokenURL()
			tc.params.AuthStyle = AuthStyleHeader
			params, err := Check(KindOAuth2, encodeParams(tc.params), []byte(tc.secret))
			if err != nil {
				t.Fatal(err)
			}
			tok, err := Mint(context.Background(), Env{HTTPClient: as.Client()},
				Request{Kind: KindOAuth2, Params: params, Root: []byte(tc.secret)})
			if !errors.Is(err, ErrMint) || !strings.Contains(err.Error(), tc.want) || tok.Value != nil {
				t.Fatalf("Mint = %q, %v; want ErrMint with %s", tok.Value, err, tc.want)
			}
			mustNotLeak(t, err, tc.secret)
			t.Log(err)
		})
	}
}

func TestOAuth2Expiry(t *testing.T) {
	t.Run("the server's", func(t *testing.T) {
		as := oauthtest.Start(t, oauthtest.Options{
			ClientID: oauthClientID, Secret: oauthSecret, Exp: 90 * time.Second,
		})
		params := oauthParams(t, OAuth2Params{TokenURL: as.TokenURL(), ClientID: oauthClientID})
		before := time.Now()
		tok, err := Mint(context.Background(), Env{HTTPClient: as.Client()},
			Request{Kind: KindOAuth2, Params: params, Root: []byte(oauthSecret)})
		after := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		if tok.Expiry.Before(before.Add(90*time.Second)) || tok.Expiry.After(after.Add(90*time.Second)) {
			t.Fatalf("expiry %v, want 90 s after the mint (%v..%v)", tok.Expiry, before, after)
		}
		if TTL(KindOAuth2, params) != 0 {
			t.Fatal("oauth2 TTL is the issuer's to say")
		}
	})
	t.Run("none given", func(t *testing.T) {
		as := oauthtest.Start(t, oauthtest.Options{ClientID: oauthClientID, Secret: oauthSecret})
		params := oauthParams(t, OAuth2Params{TokenURL: as.TokenURL(), ClientID: oauthClientID})
		clk := testclock.New(time.Now())
		tok, err := Mint(context.Background(), Env{HTTPClient: as.Client(), Now: clk.Now},
			Request{Kind: KindOAuth2, Params: params, Root: []byte(oauthSecret)})
		if err != nil {
			t.Fatal(err)
		}
		if want := clk.Now().Add(unknownExpiry); !tok.Expiry.Equal(want) {
			t.Fatalf("expiry %v, want %v: a token without expires_in is renewed as if it lived 5 minutes", tok.Expiry, want)
		}
		if status, _ := as.Whoami(t, tok.Value); status != http.StatusOK {
			t.Fatalf("resource answered %d", status)
		}
	})
}

func TestOAuth2RefusesPlainHTTPAtMint(t *testing.T) {
	var calls atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
	defer plain.Close()
	// Parameters that skipped Check (a store written by hand).
	params := encodeParams(OAuth2Params{TokenURL: plain.URL + "/token", ClientID: oauthClientID})
	_, err := Mint(context.Background(), Env{HTTPClient: plain.Client()},
		Request{Kind: KindOAuth2, Params: params, Root: []byte(oauthSecret)})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "token_url") || calls.Load() != 0 {
		t.Fatalf("Mint = %v after %d calls, want ErrInvalid on token_url and no call", err, calls.Load())
	}
}

// A token endpoint that echoes the client secret in its error does not
// get it, or a part of it, into the error: the secret is redacted before
// the description is cut short.
func TestOAuth2ErrorHoldsNoEchoedSecret(t *testing.T) {
	for _, tc := range []struct {
		name string
		code string
		desc string
		says string
	}{
		{"in the description", "invalid_client", "client secret " + oauthSecret + " is wrong", "invalid_client: client secret [redacted] is wrong"},
		{"where the description is cut", "invalid_client", strings.Repeat("x", 290) + oauthSecret, "invalid_client: xxx"},
		{"in the code", oauthSecret, "no", "[redacted]: no"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": tc.code, "error_description": tc.desc})
			}))
			defer ts.Close()
			params := oauthParams(t, OAuth2Params{TokenURL: ts.URL + "/token", ClientID: oauthClientID, AuthStyle: AuthStyleParams})
			_, err := Mint(context.Background(), Env{HTTPClient: ts.Client()},
				Request{Kind: KindOAuth2, Params: params, Root: []byte(oauthSecret)})
			if !errors.Is(err, ErrMint) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Mint = %v, want ErrMint saying %q", err, tc.says)
			}
			mustNotLeak(t, err, oauthSecret, oauthSecret[:8])
		})
	}
}
