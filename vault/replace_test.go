package vault_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stackctl/stack/vault"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

func TestReplace(t *testing.T) {
	v := openVault(t, filepath.Join(t.TempDir(), "vault.db"), kmstest.Local(t), vault.Options{CacheTTL: 1 << 40})
	old := put(t, v, "stripe", secretA, "api.stripe.com")
	wantSecret(t, v, "stripe", secretA) // cached

	c, err := v.Replace(ctxT(t), "stripe", []byte(secretB), vault.PutOptions{
		Hosts:  []string{"files.stripe.com", "API.stripe.com"},
		Render: mustRender(t, "header:X-Api-Key={secret}"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != 2 || strings.Join(c.Hosts, ",") != "api.stripe.com,files.stripe.com" ||
		c.Render.String() != "header:X-Api-Key={secret}" || c.Fingerprint == old.Fingerprint {
		t.Fatalf("replace returned %+v", c)
	}
	wantSecret(t, v, "stripe", secretB) // not the cached old secret
	list, err := v.List()
	if err != nil || len(list) != 1 || list[0].Version != 2 || !list[0].BoundTo("files.stripe.com") {
		t.Fatalf("list = %+v, %v", list, err)
	}

	_, err = v.Replace(ctxT(t), "github", []byte(secretA), vault.PutOptions{Hosts: []string{"api.github.com"}, Render: mustRender(t, "bearer")})
	wantErr(t, err, vault.ErrNotFound, "github")
	_, err = v.Replace(ctxT(t), "stripe", []byte(secretA), vault.PutOptions{Hosts: []string{"*.com"}, Render: mustRender(t, "bearer")})
	wantErr(t, err, vault.ErrInvalid, "stripe")
	_, err = v.Replace(ctxT(t), "stripe", []byte(secretA+"\nX: y"), vault.PutOptions{Hosts: []string{"api.stripe.com"}, Render: mustRender(t, "bearer")})
	wantErr(t, err, vault.ErrInvalid, "stripe")
	wantSecret(t, v, "stripe", secretB) // refused replacements changed nothing
}
