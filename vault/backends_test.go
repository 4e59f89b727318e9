package vault_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/vault"
	"github.com/stackctl/stack/vault/kms"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

// vaultHome is where a vault's records live: a file, or a control store.
type vaultHome struct {
	// open opens a Vault on the home, closed when the test ends. A file
	// has one at a time; a store as many as there are replicas.
	open func(t *testing.T, k kms.KMS, opts vault.Options) *vault.Vault
	// raw returns every byte the home keeps.
	raw func(t *testing.T) []byte
	// st is the store (nil for a file), for tests that damage records.
	st store.Store
}

// homes are the places a vault can live, each made new and empty.
var homes = []struct {
	name string
	new  func(t *testing.T) *vaultHome
}{
	{"file", func(t *testing.T) *vaultHome {
		path := filepath.Join(t.TempDir(), "vault.db")
		return &vaultHome{
			open: func(t *testing.T, k kms.KMS, opts vault.Options) *vault.Vault { return openVault(t, path, k, opts) },
			raw:  func(t *testing.T) []byte { return readFile(t, path) },
		}
	}},
	{"bolt store", func(t *testing.T) *vaultHome {
		path := filepath.Join(t.TempDir(), "control.db")
		s, err := store.OpenBolt(path, store.BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		h := storeHome(s)
		raw := h.raw
		h.raw = func(t *testing.T) []byte { return append(raw(t), readFile(t, path)...) }
		return h
	}},
	{"etcd store", func(t *testing.T) *vaultHome {
		return storeHome(openEtcdStore(t, "", nil))
	}},
}

func storeHome(s store.Store) *vaultHome {
	return &vaultHome{
		st:   s,
		open: func(t *testing.T, k kms.KMS, opts vault.Options) *vault.Vault { return openStoreVault(t, s, k, opts) },
		raw: func(t *testing.T) []byte {
			kvs, _, err := s.List(ctxT(t), "")
			if err != nil {
				t.Fatal(err)
			}
			var all []byte
			for _, kv := range kvs {
				all = append(append(all, kv.Key...), kv.Value...)
			}
			return all
		},
	}
}

func openStoreVault(t testing.TB, s store.Store, k kms.KMS, opts vault.Options) *vault.Vault {
	t.Helper()
	v, err := vault.OpenStore(ctxT(t), s, k, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return v
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forEachHome runs f against a new home of every kind.
func forEachHome(t *testing.T, f func(t *testing.T, h *vaultHome)) {
	for _, h := range homes {
		t.Run(h.name, func(t *testing.T) { f(t, h.new(t)) })
	}
}

func TestHomesLifecycle(t *testing.T) {
	forEachHome(t, func(t *testing.T, h *vaultHome) {
		k := kmstest.Local(t)
		v := h.open(t, k, vault.Options{})
		c := put(t, v, "stripe", secretA, "api.stripe.com")
		if c.Version != 1 {
			t.Fatalf("put returned version %d", c.Version)
		}
		wantSecret(t, v, "stripe", secretA)
		_, err := v.Put(ctxT(t), "stripe", []byte(secretB), vault.PutOptions{Hosts: []string{"x.com"}, Render: mustRender(t, "bearer")})
		wantErr(t, err, vault.ErrExists, "stripe")

		r, err := v.Rotate(ctxT(t), "stripe", []byte(secretB))
		if err != nil || r.Version != 2 || r.Fingerprint == c.Fingerprint {
			t.Fatalf("rotate = %+v, %v", r, err)
		}
		wantSecret(t, v, "stripe", secretB)
		_, err = v.Replace(ctxT(t), "stripe", []byte(secretA), vault.PutOptions{Hosts: []string{"files.stripe.com"}, Render: mustRender(t, "basic")})
		if err == nil {
			t.Fatal("replace took a basic secret without a colon")
		}
		r, err = v.Replace(ctxT(t), "stripe", []byte(secretA), vault.PutOptions{Hosts: []string{"files.stripe.com"}, Render: mustRender(t, "bearer")})
		if err != nil || r.Version != 3 || !r.BoundTo("files.stripe.com") || r.Fingerprint != c.Fingerprint {
			t.Fatalf("replace = %+v, %v", r, err)
		}
		put(t, v, "github", secretB, "api.github.com")
		list, err := v.List()
		if err != nil || len(list) != 2 || list[0].Name != "github" || list[1].Name != "stripe" || list[1].Version != 3 {
			t.Fatalf("list = %+v, %v", list, err)
		}
		for _, res := range v.Check(ctxT(t)) {
			if res.Err != nil {
				t.Errorf("check %s: %v", res.Name, res.Err)
			}
		}

		if err := v.Delete("stripe"); err != nil {
			t.Fatal(err)
		}
		_, _, err = v.Get(ctxT(t), "stripe")
		wantErr(t, err, vault.ErrNotFound, "stripe")
		wantErr(t, v.Delete("stripe"), vault.ErrNotFound, "stripe")
		_, err = v.Rotate(ctxT(t), "stripe", []byte(secretA))
		wantErr(t, err, vault.ErrNotFound, "stripe")
		_, err = v.Replace(ctxT(t), "stripe", []byte(secretA), vault.PutOptions{Hosts: []string{"a.com"}, Render: mustRender(t, "bearer")})
		wantErr(t, err, vault.ErrNotFound, "stripe")

		if raw := h.raw(t); bytes.Contains(raw, []byte(secretA)) || bytes.Contains(raw, []byte(secretB)) {
			t.Fatal("the vault's home holds a plaintext secret")
		}
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
		_, _, err = v.Get(ctxT(t), "github")
		wantErr(t, err, vault.ErrClosed, "github")
	})
}

// TestHomesSnapshot: WriteSnapshot writes a vault file that Open reads
// with the same KMS, whatever the vault's home.
func TestHomesSnapshot(t *testing.T) {
	forEachHome(t, func(t *testing.T, h *vaultHome) {
		k := kmstest.Local(t)
		v := h.open(t, k, vault.Options{})
		put(t, v, "stripe", secretA, "api.stripe.com")
		put(t, v, "github", secretB, "api.github.com")
		var buf bytes.Buffer
		if err := v.WriteSnapshot(&buf); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(buf.Bytes(), []byte(secretA)) || bytes.Contains(buf.Bytes(), []byte(secretB)) {
			t.Fatal("the snapshot holds a plaintext secret")
		}
		path := filepath.Join(t.TempDir(), "snap.db")
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		snap := openVault(t, path, k, vault.Options{ReadOnly: true})
		want, _ := v.List()
		got, err := snap.List()
		if err != nil || len(got) != len(want) {
			t.Fatalf("snapshot lists %+v, %v; want %+v", got, err, want)
		}
		for i := range want {
			if got[i].Name != want[i].Name || got[i].Fingerprint != want[i].Fingerprint || got[i].Version != want[i].Version {
				t.Fatalf("snapshot lists %+v, want %+v", got[i], want[i])
			}
		}
		wantSecret(t, snap, "stripe", secretA)
		wantSecret(t, snap, "github", secretB)
		if fp, err := snap.Fingerprint(ctxT(t), []byte(secretA)); err != nil || fp != want[1].Fingerprint {
			t.Fatalf("the snapshot's fingerprint salt differs: %q, %v", fp, err)
		}
	})
}

// TestStoreDamagedRecords: a record altered in the store fails clearly,
// naming it, and a rewrap over it writes nothing.
func TestStoreDamagedRecords(t *testing.T) {
	for _, h := range homes[1:] {
		t.Run(h.name, func(t *testing.T) {
			home := h.new(t)
			k := kmstest.Local(t)
			v := home.open(t, k, vault.Options{CacheTTL: -1})
			put(t, v, "stripe", secretA, "api.stripe.com")
			put(t, v, "github", secretB, "api.github.com")
			key := vault.StorePrefix + "records/stripe"
			kv, err := home.st.Get(ctxT(t), key)
			if err != nil {
				t.Fatal(err)
			}
			edited := bytes.Replace(kv.Value, []byte(`"api.stripe.com"`), []byte(`"evil.example.com"`), 1)
			if _, err := home.st.Put(ctxT(t), key, edited); err != nil {
				t.Fatal(err)
			}
			_, secret, err := v.Get(ctxT(t), "stripe")
			if secret != nil {
				t.Fatal("a secret was returned with the error")
			}
			wantErr(t, err, vault.ErrCorrupt, "stripe")
			rev, _ := home.st.Rev(ctxT(t))
			if _, err := v.Rewrap(ctxT(t), kmstest.Local(t)); err == nil {
				t.Fatal("rewrap over a damaged record succeeded")
			}
			if now, _ := home.st.Rev(ctxT(t)); now != rev {
				t.Fatal("a failed rewrap wrote to the store")
			}
			wantSecret(t, v, "github", secretB)
		})
	}
}

// TestStoreFileOnlyOperations: what only a file can do says what to do
// instead.
func TestStoreFileOnlyOperations(t *testing.T) {
	s := homes[1].new(t)
	v := s.open(t, kmstest.Local(t), vault.Options{})
	if v.Path() != "" {
		t.Fatalf("Path = %q for a vault in a store", v.Path())
	}
	_, err := v.RewrapCopy(ctxT(t), filepath.Join(t.TempDir(), "copy.db"), kmstest.Local(t))
	if err == nil || !strings.Contains(err.Error(), "cannot be changed") {
		t.Fatalf("RewrapCopy of a vault in a store: %v", err)
	}
	if _, err := v.Rewrap(ctxT(t), kmstest.Local(t)); err == nil || !strings.Contains(err.Error(), "cannot be changed") {
		t.Fatalf("Rewrap of a vault in a store: %v", err)
	}
}

// TestReplicas: two Vaults on one store, as two control-plane replicas
// (on etcd, each talking to another member), see each other's changes at
// once and lose none of them.
func TestReplicas(t *testing.T) {
	pairs := map[string]func(t *testing.T) (store.Store, store.Store){
		"bolt store": func(t *testing.T) (store.Store, store.Store) {
			s := homes[1].new(t).st
			return s, s
		},
		"etcd store": func(t *testing.T) (store.Store, store.Store) {
			eps := etcdEndpoints(t)
			prefix := newEtcdPrefix()
			return openEtcdStore(t, prefix, eps[:1]), openEtcdStore(t, prefix, eps[1:2])
		},
	}
	for name, pair := range pairs {
		t.Run(name, func(t *testing.T) {
			sa, sb := pair(t)
			k := kmstest.Local(t)
			// Long cache lifetimes: what either serves must still follow
			// the other's changes.
			opts := vault.Options{CacheTTL: 1 << 40}
			a, b := openStoreVault(t, sa, k, opts), openStoreVault(t, sb, k, opts)

			// Both make the fingerprint salt at once: one must win, and
			// the same secret has one fingerprint in either.
			var ca, cb *vault.Credential
			var errA, errB error
			opt := vault.PutOptions{Hosts: []string{"x.example.com"}, Render: mustRender(t, "bearer")}
			var wg sync.WaitGroup
			wg.Go(func() { ca, errA = a.Put(ctxT(t), "one", []byte(secretA), opt) })
			wg.Go(func() { cb, errB = b.Put(ctxT(t), "two", []byte(secretA), opt) })
			wg.Wait()
			if err := errors.Join(errA, errB); err != nil {
				t.Fatal(err)
			}
			if ca.Fingerprint != cb.Fingerprint {
				t.Fatal("two replicas made two fingerprint salts")
			}

			put(t, a, "stripe", secretA, "api.stripe.com")
			wantSecret(t, b, "stripe", secretA) // b caches it
			if _, err := a.Rotate(ctxT(t), "stripe", []byte(secretB)); err != nil {
				t.Fatal(err)
			}
			wantSecret(t, b, "stripe", secretB)

			// Both put one name at once: one gets it, the other ErrExists.
			wg.Go(func() { _, errA = a.Put(ctxT(t), "race", []byte(secretA), opt) })
			wg.Go(func() { _, errB = b.Put(ctxT(t), "race", []byte(secretB), opt) })
			wg.Wait()
			if (errA == nil) == (errB == nil) {
				t.Fatalf("concurrent puts: %v and %v, want one success and one ErrExists", errA, errB)
			}
			if err := errors.Join(errA, errB); !errors.Is(err, vault.ErrExists) {
				t.Fatalf("the losing put: %v", err)
			}

			// Concurrent rotations from both: each gets its own version.
			// 2×8 rotations: at most 16 races, which maxVersionTries (16)
			// absorbs; more would make the test depend on scheduling.
			const each = 8
			secrets := map[string]bool{}
			for _, v := range []*vault.Vault{a, b} {
				for i := range each {
					s := fmt.Sprintf("%s-%p-%d", secretB, v, i)
					secrets[s] = true
					wg.Go(func() {
						if _, err := v.Rotate(ctxT(t), "stripe", []byte(s)); err != nil {
							t.Errorf("rotate: %v", err)
						}
					})
				}
			}
			wg.Wait()
			ga, sa2, err := a.Get(ctxT(t), "stripe")
			if err != nil {
				t.Fatal(err)
			}
			gb, sb2, err := b.Get(ctxT(t), "stripe")
			if err != nil {
				t.Fatal(err)
			}
			if want := 2 + 2*each; ga.Version != want || gb.Version != want {
				t.Fatalf("after %d rotations versions are %d and %d, want %d", 1+2*each, ga.Version, gb.Version, want)
			}
			if string(sa2) != string(sb2) || !secrets[string(sa2)] {
				t.Fatal("the replicas serve different secrets after the rotations")
			}

			if err := b.Delete("stripe"); err != nil {
				t.Fatal(err)
			}
			_, _, err = a.Get(ctxT(t), "stripe")
			wantErr(t, err, vault.ErrNotFound, "stripe")

			raw := storeHome(sa).raw(t)
			for s := range secrets {
				if bytes.Contains(raw, []byte(s)) {
					t.Fatal("the store holds a plaintext secret")
				}
			}
			if bytes.Contains(raw, []byte(secretA)) {
				t.Fatal("the store holds a plaintext secret")
			}
		})
	}
}

// TestImport: a vault file moves into a store once, records and salt as
// they are, whoever imports first; a store with a vault of its own is
// left alone.
func TestImport(t *testing.T) {
	k := kmstest.Local(t)
	path := filepath.Join(t.TempDir(), "vault.db")
	file := openVault(t, path, k, vault.Options{})
	put(t, file, "stripe", secretA, "api.stripe.com")
	put(t, file, "github", secretB, "api.github.com")
	want, _ := file.List()

	s := homes[1].new(t).st
	a := openStoreVault(t, s, k, vault.Options{})
	b := openStoreVault(t, s, k, vault.Options{})
	var got [2][]string
	var errs [2]error
	var wg sync.WaitGroup
	for i, v := range []*vault.Vault{a, b} {
		wg.Go(func() { got[i], errs[i] = v.Import(ctxT(t), file) })
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatal(err)
	}
	if n := len(got[0]) + len(got[1]); n != 2 {
		t.Fatalf("imported %v and %v: want each record once", got[0], got[1])
	}
	list, err := b.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("list after import = %+v, %v", list, err)
	}
	for i := range want {
		if list[i].Name != want[i].Name || list[i].Fingerprint != want[i].Fingerprint || list[i].Version != want[i].Version {
			t.Fatalf("imported %+v, want %+v", list[i], want[i])
		}
	}
	wantSecret(t, a, "stripe", secretA)
	wantSecret(t, b, "github", secretB)
	// New credentials share the imported salt.
	if c := put(t, a, "dup", secretA, "x.example.com"); c.Fingerprint != want[1].Fingerprint {
		t.Fatal("a credential put after the import has another fingerprint salt")
	}
	if names, err := a.Import(ctxT(t), file); err != nil || len(names) != 0 {
		t.Fatalf("import again = %v, %v; want nothing", names, err)
	}
	// A credential deleted once the import ran does not come back from
	// the file at the next start.
	if err := a.Delete("stripe"); err != nil {
		t.Fatal(err)
	}
	if names, err := b.Import(ctxT(t), file); err != nil || len(names) != 0 {
		t.Fatalf("import after a delete = %v, %v; want nothing", names, err)
	}
	if _, _, err := b.Get(ctxT(t), "stripe"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("a deleted credential after another import: %v, want ErrNotFound", err)
	}

	other := openStoreVault(t, homes[1].new(t).st, k, vault.Options{})
	put(t, other, "own", secretB, "own.example.com")
	names, err := other.Import(ctxT(t), file)
	wantErr(t, err, vault.ErrExists, "")
	if len(names) != 0 {
		t.Fatalf("imported %v into a store with a vault of its own", names)
	}
	if list, _ := other.List(); len(list) != 1 {
		t.Fatalf("the store's own vault changed: %+v", list)
	}
}
