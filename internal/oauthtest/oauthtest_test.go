package oauthtest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func TestServerIssuesTokensItAccepts(t *testing.T) {
	s := Start(t, Options{ClientID: "c", Secret: "s3cret", Scopes: []string{"read"}, Exp: time.Minute, Basic: true})
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, s.Client())
	tok, err := (&clientcredentials.Config{ClientID: "c", ClientSecret: "s3cret", TokenURL: s.TokenURL(), Scopes: []string{"read"}}).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	status, info := s.Whoami(t, []byte(tok.AccessToken))
	if status != http.StatusOK || info["client_id"] != "c" || info["scope"] != "read" || s.Requests() != 1 {
		t.Fatalf("whoami = %d %v after %d token requests", status, info, s.Requests())
	}
	if status, _ := s.Whoami(t, []byte("forged")); status != http.StatusUnauthorized {
		t.Fatalf("a forged token: %d", status)
	}
	if _, err := (&clientcredentials.Config{ClientID: "c", ClientSecret: "s3cret", TokenURL: s.TokenURL(), Scopes: []string{"admin"}}).Token(ctx); err == nil {
		t.Fatal("a scope the client is not registered for was granted")
	}
}
