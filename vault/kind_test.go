package vault_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/vault"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

const clientSecret = "Zq7rV2mXk9LpT4sWc8Hn"

var oauthParams = json.RawMessage(`{"client_id":"stack","token_url":"https://auth.example.com/oauth/token","scopes":["orders.read"]}`)

// A minting kind's root material is stored like a static secret, with its
// kind and normalized parameters beside it; Rotate keeps both.
func TestMintingKindRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	k := kmstest.Local(t)
	v := openVault(t, path, k, vault.Options{})
	ctx := ctxT(t)
	c, err := v.Put(ctx, "orders", []byte(clientSecret), vault.PutOptions{Hosts: []string{"api.orders.example"},
		Render: vault.Render{Kind: vault.RenderBearer}, Kind: mint.KindOAuth2, Params: oauthParams})
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != mint.KindOAuth2 || !c.Minted() || !json.Valid(c.Params) || !strings.Contains(string(c.Params), `"token_url":"https://auth.example.com/oauth/token"`) {
		t.Fatalf("stored %+v", c)
	}
	got, root, err := v.Get(ctx, "orders")
	if err != nil || string(root) != clientSecret || string(got.Params) != string(c.Params) {
		t.Fatalf("Get = %+v %q %v", got, root, err)
	}
	// A minting kind left without a render sends a bearer token.
	if d, err := v.Put(ctx, "orders2", []byte(clientSecret), vault.PutOptions{Hosts: []string{"api.orders.example"},
		Kind: mint.KindOAuth2, Params: oauthParams}); err != nil || d.Render.Kind != vault.RenderBearer {
		t.Fatalf("default render: %+v, %v", d, err)
	}
	if err := v.Delete("orders2"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Put(ctx, "stripe", []byte(secretA), vault.PutOptions{Hosts: []string{"api.stripe.com"}, Render: vault.Render{Kind: vault.RenderBearer}}); err != nil {
		t.Fatal(err)
	}
	list, err := v.List()
	if err != nil || len(list) != 2 || list[0].Kind != mint.KindOAuth2 || list[1].Kind != mint.KindStatic || list[1].Params != nil {
		t.Fatalf("List = %+v, %v", list, err)
	}
	r, err := v.Rotate(ctx, "orders", []byte("n3wClientSecret"))
	if err != nil || r.Kind != mint.KindOAuth2 || string(r.Params) != string(c.Params) || r.Version != 2 {
		t.Fatalf("Rotate = %+v, %v", r, err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}

	// The parameters are bound to the ciphertext: pointing the token
	// endpoint elsewhere in the file breaks the record.
	editRecord(t, path, func(recs map[string]map[string]any) {
		recs["orders"]["params"] = map[string]any{"client_id": "stack", "token_url": "https://evil.example/token", "scopes": []string{"orders.read"}}
	})
	v2 := openVault(t, path, k, vault.Options{})
	if _, _, err := v2.Get(ctxT(t), "orders"); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("Get of a record with altered parameters = %v, want ErrCorrupt", err)
	}
	if _, s, err := v2.Get(ctxT(t), "stripe"); err != nil || string(s) != secretA {
		t.Fatalf("a static record beside it: %q %v", s, err)
	}
}

func TestMintingKindRefusals(t *testing.T) {
	v := openVault(t, filepath.Join(t.TempDir(), "vault.db"), kmstest.Local(t), vault.Options{})
	ctx := ctxT(t)
	hosts := []string{"api.example.com"}
	bearer, sigv4 := vault.Render{Kind: vault.RenderBearer}, vault.Render{Kind: vault.RenderSigV4}
	for _, tc := range []struct {
		name, want string
		secret     string
		opts       vault.PutOptions
	}{
		{"unknown kind", "unknown kind", clientSecret, vault.PutOptions{Hosts: hosts, Render: bearer, Kind: "magic"}},
		{"static with parameters", "takes no parameters", clientSecret, vault.PutOptions{Hosts: hosts, Render: bearer, Params: oauthParams}},
		{"static rendered sigv4", "sigv4 is for kind aws-sts", clientSecret, vault.PutOptions{Hosts: hosts, Render: sigv4}},
		{"oauth2 rendered sigv4", "sigv4 is for kind aws-sts", clientSecret, vault.PutOptions{Hosts: hosts, Render: sigv4, Kind: mint.KindOAuth2, Params: oauthParams}},
		{"oauth2 without parameters", "token_url", clientSecret, vault.PutOptions{Hosts: hosts, Render: bearer, Kind: mint.KindOAuth2}},
		{"oauth2 over http", "https", clientSecret, vault.PutOptions{Hosts: hosts, Render: bearer, Kind: mint.KindOAuth2,
			Params: json.RawMessage(`{"client_id":"c","token_url":"http://auth.example.com/token"}`)}},
		{"empty root material", "empty", "", vault.PutOptions{Hosts: hosts, Render: bearer, Kind: mint.KindOAuth2, Params: oauthParams}},
	} {
		_, err := v.Put(ctx, "c", []byte(tc.secret), tc.opts)
		if !errors.Is(err, vault.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Put = %v, want ErrInvalid saying %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), clientSecret) {
			t.Errorf("%s: the error holds the secret", tc.name)
		}
	}
}

// Secret serves static credentials only: a minting kind's root material
// is never handed out for injection, cached or not.
func TestSecretRefusesRootMaterial(t *testing.T) {
	v := openVault(t, filepath.Join(t.TempDir(), "vault.db"), kmstest.Local(t), vault.Options{})
	ctx := ctxT(t)
	if _, err := v.Put(ctx, "orders", []byte(clientSecret), vault.PutOptions{Hosts: []string{"api.orders.example"},
		Kind: mint.KindOAuth2, Params: oauthParams}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // uncached, then cached
		if b, err := v.Secret(ctx, "orders"); !errors.Is(err, vault.ErrInvalid) || b != nil {
			t.Fatalf("Secret #%d of a minting kind = %q, %v", i+1, b, err)
		}
		if _, root, err := v.Get(ctx, "orders"); err != nil || string(root) != clientSecret {
			t.Fatalf("Get = %q, %v", root, err)
		}
	}
}
