package vault_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stackctl/stack/vault"
	"github.com/stackctl/stack/vault/kms"
)

func Example() {
	dir, _ := os.MkdirTemp("", "vault-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	// Development key; in production use gcpkms:// or awskms://.
	if err := kms.CreateLocalKey(filepath.Join(dir, "kms.key")); err != nil {
		panic(err)
	}
	k, err := kms.Open(ctx, "local://kms.key", kms.Options{BaseDir: dir})
	if err != nil {
		panic(err)
	}
	defer k.Close()

	v, err := vault.Open(filepath.Join(dir, "vault.db"), k, vault.Options{})
	if err != nil {
		panic(err)
	}
	defer v.Close()

	render, _ := vault.ParseRender("bearer")
	if _, err := v.Put(ctx, "stripe", []byte("sk_test_123"), vault.PutOptions{Hosts: []string{"api.stripe.com"}, Render: render}); err != nil {
		panic(err)
	}
	cred, secret, err := v.Get(ctx, "stripe")
	if err != nil {
		panic(err)
	}
	fmt.Println(cred.Name, cred.Hosts, cred.Render, cred.Version, len(secret))
	// Output: stripe [api.stripe.com] bearer 1 11
}
