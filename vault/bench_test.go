package vault_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stackctl/stack/vault"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

func benchGet(b *testing.B, opts vault.Options) {
	v := openVault(b, filepath.Join(b.TempDir(), "vault.db"), kmstest.Local(b), opts)
	put(b, v, "stripe", secretA, "api.stripe.com")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := v.Get(ctx, "stripe"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetCached fetches a secret held in the cache.
func BenchmarkGetCached(b *testing.B) { benchGet(b, vault.Options{}) }

// BenchmarkGetUncached reads the record, unwraps its data key through the
// local KMS and decrypts the secret on every call.
func BenchmarkGetUncached(b *testing.B) { benchGet(b, vault.Options{CacheTTL: -1}) }
