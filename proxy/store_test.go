package proxy

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stackctl/stack/vault"
	"github.com/stackctl/stack/vault/kms"
)

func TestVaultStoreBoundCredentialsFollowReload(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "kms.key")
	if err := kms.CreateLocalKey(keyPath); err != nil {
		t.Fatal(err)
	}
	k, err := kms.Open(ctx, "local://"+keyPath, kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	v, err := vault.Open(filepath.Join(dir, "vault.db"), k, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	bearer, _ := vault.ParseRender("bearer")
	put := func(name, host string) {
		t.Helper()
		if _, err := v.Put(ctx, name, []byte("sk_"+name), vault.PutOptions{Hosts: []string{host}, Render: bearer}); err != nil {
			t.Fatal(err)
		}
	}
	put("stripe", "api.stripe.com")
	s, err := NewVaultStore(v)
	if err != nil {
		t.Fatal(err)
	}
	names := func(host string) []string {
		var out []string
		for _, c := range s.BoundCredentials(host) {
			out = append(out, c.Name)
		}
		return out
	}
	if got := names("api.stripe.com"); len(got) != 1 || got[0] != "stripe" {
		t.Fatalf("bound to api.stripe.com: %v", got)
	}
	if got := names("api.stripe.com"); len(got) != 1 {
		t.Fatalf("second answer differs: %v", got)
	}
	if got := names("evil.test"); len(got) != 0 {
		t.Fatalf("bound to evil.test: %v", got)
	}
	put("stripe-b", "api.stripe.com")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := names("api.stripe.com"); len(got) != 2 {
		t.Fatalf("after Reload, bound to api.stripe.com: %v, want both credentials", got)
	}
}
