package vault_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stackctl/stack/vault"
	"github.com/stackctl/stack/vault/kms"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

// secretA and secretB are distinctive so that a grep of the file cannot
// match by accident.
const (
	secretA = "sk_live_51HxAbCdEfGhIjKlMnOpQrStUv"
	secretB = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openKMS(t testing.TB, uri string) kms.KMS {
	t.Helper()
	k, err := kms.Open(ctxT(t), uri, kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// openVault opens a vault and, when the test ends, closes it and checks
// the bbolt file's consistency.
func openVault(t testing.TB, path string, k kms.KMS, opts vault.Options) *vault.Vault {
	t.Helper()
	v, err := vault.Open(path, k, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		checkConsistent(t, path)
	})
	return v
}

func checkConsistent(t testing.TB, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Errorf("reopen for check: %v", err)
		return
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Errorf("bbolt consistency: %v", err)
	}
}

func mustRender(t testing.TB, s string) vault.Render {
	t.Helper()
	r, err := vault.ParseRender(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func put(t testing.TB, v *vault.Vault, name, secret string, hosts ...string) *vault.Credential {
	t.Helper()
	c, err := v.Put(ctxT(t), name, []byte(secret), vault.PutOptions{Hosts: hosts, Render: mustRender(t, "bearer")})
	if err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
	return c
}

func wantSecret(t testing.TB, v *vault.Vault, name, want string) {
	t.Helper()
	_, got, err := v.Get(ctxT(t), name)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	if string(got) != want {
		t.Fatalf("get %s returned another secret", name)
	}
}

func fileHash(t testing.TB, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// wantErr checks err wraps want, is a *vault.Error naming name, and does
// not contain a secret.
func wantErr(t testing.TB, err, want error, name string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	var ve *vault.Error
	if !errors.As(err, &ve) {
		t.Fatalf("err %v is not a *vault.Error", err)
	}
	if name != "" && !strings.Contains(err.Error(), name) {
		t.Fatalf("err %q does not name %s", err, name)
	}
	for _, s := range []string{secretA, secretB} {
		if strings.Contains(err.Error(), s) {
			t.Fatal("error contains a secret")
		}
	}
}

func TestLifecycle(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	v := openVault(t, filepath.Join(t.TempDir(), "vault.db"), kmstest.Local(t), vault.Options{Now: func() time.Time { return now }})

	c, err := v.Put(ctxT(t), "stripe", []byte(secretA), vault.PutOptions{
		Hosts:  []string{"API.Stripe.com", "*.stripe.com", "api.stripe.com"},
		Render: mustRender(t, "header:X-Api-Key=Key {secret}"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != 1 || !c.Created.Equal(now) || c.Render.String() != "header:X-Api-Key=Key {secret}" {
		t.Fatalf("put returned %+v", c)
	}
	if want := []string{"*.stripe.com", "api.stripe.com"}; strings.Join(c.Hosts, ",") != strings.Join(want, ",") {
		t.Fatalf("hosts = %v, want %v", c.Hosts, want)
	}
	if !strings.HasPrefix(c.Fingerprint, "hmac-sha256:") || len(c.Fingerprint) != len("hmac-sha256:")+24 {
		t.Fatalf("fingerprint = %q", c.Fingerprint)
	}
	if !c.BoundTo("files.stripe.com") || !c.BoundTo("API.STRIPE.COM") || c.BoundTo("stripe.com") || c.BoundTo("evil.com") || c.BoundTo("a.b.stripe.com") {
		t.Fatal("BoundTo disagrees with the bound hosts")
	}
	got, secret, err := v.Get(ctxT(t), "stripe")
	if err != nil || string(secret) != secretA || got.Fingerprint != c.Fingerprint {
		t.Fatalf("get = %+v, %v", got, err)
	}

	_, err = v.Put(ctxT(t), "stripe", []byte(secretB), vault.PutOptions{Hosts: []string{"x.com"}, Render: mustRender(t, "bearer")})
	wantErr(t, err, vault.ErrExists, "stripe")

	now = now.Add(time.Hour)
	r, err := v.Rotate(ctxT(t), "stripe", []byte(secretB))
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != 2 || !r.Created.Equal(now) || r.Fingerprint == c.Fingerprint || r.Render != c.Render {
		t.Fatalf("rotate returned %+v", r)
	}
	wantSecret(t, v, "stripe", secretB) // the cache was dropped on rotate

	put(t, v, "github", secretA, "api.github.com")
	list, err := v.List()
	if err != nil || len(list) != 2 || list[0].Name != "github" || list[1].Name != "stripe" {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if list[0].Fingerprint != c.Fingerprint {
		t.Fatal("the same secret has two fingerprints in one vault")
	}

	if err := v.Delete("stripe"); err != nil {
		t.Fatal(err)
	}
	_, _, err = v.Get(ctxT(t), "stripe")
	wantErr(t, err, vault.ErrNotFound, "stripe")
	wantErr(t, v.Delete("stripe"), vault.ErrNotFound, "stripe")
	_, err = v.Rotate(ctxT(t), "stripe", []byte(secretA))
	wantErr(t, err, vault.ErrNotFound, "stripe")

	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, err = v.Get(ctxT(t), "github")
	wantErr(t, err, vault.ErrClosed, "github")
}

func TestPutRefusesBadInput(t *testing.T) {
	v := openVault(t, filepath.Join(t.TempDir(), "vault.db"), kmstest.Local(t), vault.Options{})
	bearer := mustRender(t, "bearer")
	tests := []struct {
		name, cred, secret string
		hosts              []string
		render             vault.Render
	}{
		{"bad name", "Stripe Key", secretA, []string{"a.com"}, bearer},
		{"empty name", "", secretA, []string{"a.com"}, bearer},
		{"no hosts", "a", secretA, nil, bearer},
		{"host with port", "a", secretA, []string{"a.com:443"}, bearer},
		{"host with scheme", "a", secretA, []string{"https://a.com"}, bearer},
		{"wildcard tld", "a", secretA, []string{"*.com"}, bearer},
		{"no render", "a", secretA, []string{"a.com"}, vault.Render{}},
		{"empty secret", "a", "", []string{"a.com"}, bearer},
		{"newline in secret", "a", secretA + "\r\nX-Evil: 1", []string{"a.com"}, bearer},
		{"basic without colon", "a", secretA, []string{"a.com"}, mustRender(t, "basic")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Put(ctxT(t), tt.cred, []byte(tt.secret), vault.PutOptions{Hosts: tt.hosts, Render: tt.render})
			wantErr(t, err, vault.ErrInvalid, "")
		})
	}
	if list, _ := v.List(); len(list) != 0 {
		t.Fatalf("refused puts stored %d records", len(list))
	}
}

// TestRoundTripEveryBackend stores and reads the same credential through
// local, gcpkms (in-process server) and awskms (moto).
func TestRoundTripEveryBackend(t *testing.T) {
	backends := map[string]func(t *testing.T) kms.KMS{
		"local": func(t *testing.T) kms.KMS { return kmstest.Local(t) },
		"gcpkms": func(t *testing.T) kms.KMS {
			kmstest.SetGCPEnv(t, kmstest.StartGCP(t))
			return openKMS(t, kmstest.GCPKeyURI("vault"))
		},
		"awskms": func(t *testing.T) kms.KMS {
			ep := kmstest.StartMoto(t)
			kmstest.SetAWSEnv(t, ep)
			return openKMS(t, "awskms://"+kmstest.CreateAWSKey(t, ep))
		},
	}
	for name, newKMS := range backends {
		t.Run(name, func(t *testing.T) {
			k := newKMS(t)
			path := filepath.Join(t.TempDir(), "vault.db")
			v := openVault(t, path, k, vault.Options{CacheTTL: -1})
			c := put(t, v, "stripe", secretA, "api.stripe.com")
			wantSecret(t, v, "stripe", secretA)
			if _, err := v.Rotate(ctxT(t), "stripe", []byte(secretB)); err != nil {
				t.Fatal(err)
			}
			wantSecret(t, v, "stripe", secretB)
			for _, r := range v.Check(ctxT(t)) {
				if r.Err != nil {
					t.Errorf("check %s: %v", r.Name, r.Err)
				}
			}
			if c.Fingerprint == "" {
				t.Fatal("no fingerprint")
			}
			wantAbsent(t, path, secretA, secretB)
		})
	}
}

// wantAbsent fails when the raw file contains any of the secrets.
func wantAbsent(t testing.TB, path string, secrets ...string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if bytes.Contains(raw, []byte(s)) {
			t.Fatalf("%s contains a plaintext secret", path)
		}
	}
}

func TestPlaintextNeverInFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	k := kmstest.Local(t)
	v := openVault(t, path, k, vault.Options{})
	put(t, v, "stripe", secretA, "api.stripe.com")
	put(t, v, "github", secretB, "api.github.com")
	wantSecret(t, v, "stripe", secretA)
	if _, err := v.Rotate(ctxT(t), "stripe", []byte(secretB)); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Rewrap(ctxT(t), kmstest.Local(t)); err != nil {
		t.Fatal(err)
	}
	if err := v.Delete("github"); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	wantAbsent(t, path, secretA, secretB)
}

// editRecord rewrites credential name's stored JSON with f while the
// vault is closed.
func editRecord(t *testing.T, path string, f func(recs map[string]map[string]any)) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("credentials"))
		recs := map[string]map[string]any{}
		if err := b.ForEach(func(k, v []byte) error {
			var m map[string]any
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			recs[string(k)] = m
			return nil
		}); err != nil {
			return err
		}
		f(recs)
		for k, m := range recs {
			data, err := json.Marshal(m)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(k), data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func setRaw(t *testing.T, path, name string, data []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("credentials")).Put([]byte(name), data)
	}); err != nil {
		t.Fatal(err)
	}
}

func getRaw(t *testing.T, path, name string) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []byte
	db.View(func(tx *bolt.Tx) error {
		out = bytes.Clone(tx.Bucket([]byte("credentials")).Get([]byte(name)))
		return nil
	})
	return out
}

// TestDamagedRecordsFailClearly: a swapped ciphertext, a record read
// under the wrong KMS key, and a truncated record each fail with a clear
// error naming the credential, leave the file untouched, and leave the
// other records readable.
func TestDamagedRecordsFailClearly(t *testing.T) {
	swapFields := func(fields ...string) func(recs map[string]map[string]any) {
		return func(recs map[string]map[string]any) {
			for _, f := range fields {
				recs["stripe"][f], recs["github"][f] = recs["github"][f], recs["stripe"][f]
			}
		}
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
		other  bool // open with another KMS key
		want   error
	}{
		{"ciphertext swapped", func(t *testing.T, path string) {
			editRecord(t, path, swapFields("nonce", "ciphertext"))
		}, false, vault.ErrCorrupt},
		{"data key and ciphertext swapped", func(t *testing.T, path string) {
			editRecord(t, path, swapFields("wrapped_key", "nonce", "ciphertext"))
		}, false, vault.ErrUnwrap},
		{"record moved under another name", func(t *testing.T, path string) {
			setRaw(t, path, "stripe", getRaw(t, path, "github"))
		}, false, vault.ErrCorrupt},
		{"hosts edited", func(t *testing.T, path string) {
			editRecord(t, path, func(recs map[string]map[string]any) { recs["stripe"]["hosts"] = []string{"evil.example.com"} })
		}, false, vault.ErrCorrupt},
		{"render edited", func(t *testing.T, path string) {
			editRecord(t, path, func(recs map[string]map[string]any) { recs["stripe"]["render"] = "query:leak" })
		}, false, vault.ErrCorrupt},
		{"truncated record", func(t *testing.T, path string) {
			raw := getRaw(t, path, "stripe")
			setRaw(t, path, "stripe", raw[:len(raw)-20])
		}, false, vault.ErrCorrupt},
		{"truncated ciphertext", func(t *testing.T, path string) {
			editRecord(t, path, func(recs map[string]map[string]any) {
				ct := recs["stripe"]["ciphertext"].(string)
				recs["stripe"]["ciphertext"] = ct[:len(ct)-8]
			})
		}, false, vault.ErrCorrupt},
		{"wrong KMS key", func(t *testing.T, path string) {}, true, vault.ErrUnwrap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "vault.db")
			k := kmstest.Local(t)
			v, err := vault.Open(path, k, vault.Options{})
			if err != nil {
				t.Fatal(err)
			}
			put(t, v, "stripe", secretA, "api.stripe.com")
			put(t, v, "github", secretB, "api.github.com")
			put(t, v, "openai", secretB, "api.openai.com")
			v.Close()
			tt.damage(t, path)

			if tt.other {
				k = kmstest.Local(t)
			}
			v = openVault(t, path, k, vault.Options{})
			before := fileHash(t, path)
			_, secret, err := v.Get(ctxT(t), "stripe")
			if secret != nil {
				t.Fatal("a secret was returned with the error")
			}
			wantErr(t, err, tt.want, "stripe")
			if tt.other && !strings.Contains(err.Error(), k.URI()) {
				t.Fatalf("wrong-key error %q does not name the KMS", err)
			}
			// Rewrap must refuse the whole vault and change nothing.
			if _, err := v.Rewrap(ctxT(t), kmstest.Local(t)); err == nil {
				t.Fatal("rewrap over a damaged record succeeded")
			}
			var bad int
			for _, r := range v.Check(ctxT(t)) {
				if r.Err != nil {
					bad++
					if r.Name != "stripe" && !tt.other && !strings.Contains(tt.name, "swapped") {
						t.Errorf("check blamed %s: %v", r.Name, r.Err)
					}
				}
			}
			if bad == 0 {
				t.Fatal("check found nothing wrong")
			}
			if !tt.other {
				wantSecret(t, v, "openai", secretB)
			}
			if fileHash(t, path) != before {
				t.Fatal("a failed read, rewrap or check changed the file")
			}
		})
	}
}

func TestRewrap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	from, to := kmstest.Local(t), kmstest.NewFailing(kmstest.Local(t))
	v := openVault(t, path, from, vault.Options{CacheTTL: -1})
	put(t, v, "stripe", secretA, "api.stripe.com")
	put(t, v, "github", secretB, "api.github.com")
	listBefore, _ := v.List()
	ctBefore := ciphertexts(t, v, path)

	n, err := v.Rewrap(ctxT(t), to)
	if err != nil || n != 2 {
		t.Fatalf("rewrap = %d, %v", n, err)
	}
	if v.KMS() != to {
		t.Fatal("vault still uses the old KMS")
	}
	wantSecret(t, v, "stripe", secretA)
	wantSecret(t, v, "github", secretB)
	listAfter, _ := v.List()
	for i := range listBefore {
		if listBefore[i].Fingerprint != listAfter[i].Fingerprint || listBefore[i].Version != listAfter[i].Version {
			t.Fatal("rewrap changed a credential")
		}
	}
	if got := ciphertexts(t, v, path); got != ctBefore {
		t.Fatal("rewrap touched a secret's ciphertext")
	}
	// A new credential after rewrap shares the fingerprint salt.
	c := put(t, v, "dup", secretA, "x.example.com")
	if c.Fingerprint != listBefore[1].Fingerprint {
		t.Fatal("fingerprint salt lost in rewrap")
	}
	v.Close()
	// The old key no longer opens anything.
	old := openVault(t, path, from, vault.Options{})
	_, _, err = old.Get(ctxT(t), "stripe")
	wantErr(t, err, vault.ErrUnwrap, "stripe")
}

// ciphertexts returns the stored nonces and ciphertexts, concatenated.
func ciphertexts(t *testing.T, v *vault.Vault, path string) string {
	t.Helper()
	var s strings.Builder
	err := func() error {
		// The vault holds the file lock, so read a copy of the file.
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		snap := filepath.Join(t.TempDir(), "snap.db")
		if err := os.WriteFile(snap, raw, 0o600); err != nil {
			return err
		}
		for _, name := range []string{"stripe", "github"} {
			var m map[string]any
			if err := json.Unmarshal(getRaw(t, snap, name), &m); err != nil {
				return err
			}
			s.WriteString(m["nonce"].(string) + m["ciphertext"].(string))
		}
		return nil
	}()
	if err != nil {
		t.Fatal(err)
	}
	return s.String()
}

// TestKMSOutage: cached secrets are served until their TTL while the KMS
// is down; anything else fails closed with one error naming the KMS URI.
func TestKMSOutage(t *testing.T) {
	srv := kmstest.StartGCPServer(t)
	kmstest.SetGCPEnv(t, srv.Endpoint)
	k := openKMS(t, kmstest.GCPKeyURI("outage"))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v := openVault(t, filepath.Join(t.TempDir(), "vault.db"), k, vault.Options{CacheTTL: time.Minute, Now: func() time.Time { return now }})
	put(t, v, "stripe", secretA, "api.stripe.com")
	put(t, v, "github", secretB, "api.github.com")
	wantSecret(t, v, "stripe", secretA) // now cached

	srv.Stop()
	short := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		t.Cleanup(cancel)
		return c
	}
	if _, s, err := v.Get(short(), "stripe"); err != nil || string(s) != secretA {
		t.Fatalf("cached secret not served during the outage: %v", err)
	}
	if s, err := v.Secret(short(), "stripe"); err != nil || string(s) != secretA {
		t.Fatalf("cached secret not served by Secret during the outage: %v", err)
	}
	_, _, err := v.Get(short(), "github")
	wantErr(t, err, vault.ErrKMSUnavailable, "github")
	if !strings.Contains(err.Error(), k.URI()) {
		t.Fatalf("outage error %q does not name the KMS", err)
	}
	_, err = v.Secret(short(), "github")
	wantErr(t, err, vault.ErrKMSUnavailable, "github")
	now = now.Add(time.Minute)
	_, _, err = v.Get(short(), "stripe")
	wantErr(t, err, vault.ErrKMSUnavailable, "stripe")
	_, err = v.Secret(short(), "stripe")
	wantErr(t, err, vault.ErrKMSUnavailable, "stripe")
}

func TestLockedAndReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	k := kmstest.Local(t)
	v := openVault(t, path, k, vault.Options{})
	put(t, v, "stripe", secretA, "api.stripe.com")
	_, err := vault.Open(path, k, vault.Options{OpenTimeout: 50 * time.Millisecond})
	wantErr(t, err, vault.ErrLocked, "")
	v.Close()

	ro := openVault(t, path, k, vault.Options{ReadOnly: true})
	wantSecret(t, ro, "stripe", secretA)
	_, err = ro.Put(ctxT(t), "github", []byte(secretB), vault.PutOptions{Hosts: []string{"a.com"}, Render: mustRender(t, "bearer")})
	wantErr(t, err, vault.ErrReadOnly, "github")
	wantErr(t, ro.Delete("stripe"), vault.ErrReadOnly, "stripe")

	_, err = vault.Open(filepath.Join(t.TempDir(), "none.db"), k, vault.Options{ReadOnly: true})
	if err == nil {
		t.Fatal("read-only open of a missing file succeeded")
	}
}

func TestFingerprintIsPerVault(t *testing.T) {
	k := kmstest.Local(t)
	v1 := openVault(t, filepath.Join(t.TempDir(), "a.db"), k, vault.Options{})
	v2 := openVault(t, filepath.Join(t.TempDir(), "b.db"), k, vault.Options{})
	c1 := put(t, v1, "stripe", secretA, "api.stripe.com")
	c2 := put(t, v2, "stripe", secretA, "api.stripe.com")
	if c1.Fingerprint == c2.Fingerprint {
		t.Fatal("two vaults give the same fingerprint: it is guessable from the secret alone")
	}
	plain := sha256.Sum256([]byte(secretA))
	if strings.Contains(c1.Fingerprint, hex.EncodeToString(plain[:12])) {
		t.Fatal("fingerprint looks like a plain hash")
	}
	fp, err := v1.Fingerprint(ctxT(t), []byte(secretA))
	if err != nil || fp != c1.Fingerprint {
		t.Fatalf("Fingerprint = %q, %v, want %q", fp, err, c1.Fingerprint)
	}
}

func TestConcurrentUse(t *testing.T) {
	v := openVault(t, filepath.Join(t.TempDir(), "vault.db"), kmstest.Local(t), vault.Options{CacheSize: 2})
	for _, n := range []string{"a", "b", "c", "d"} {
		put(t, v, n, secretA+n, n+".example.com")
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				n := string(rune('a' + (i+j)%4))
				_, s, err := v.Get(context.Background(), n)
				if err != nil || string(s) != secretA+n {
					t.Errorf("get %s: %v", n, err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := v.Rewrap(context.Background(), kmstest.Local(t)); err != nil {
			t.Errorf("rewrap: %v", err)
		}
	}()
	wg.Wait()
}

func TestRenderParse(t *testing.T) {
	good := []struct {
		in   string
		want vault.Render
	}{
		{"bearer", vault.Render{Kind: vault.RenderBearer}},
		{"basic", vault.Render{Kind: vault.RenderBasic}},
		{"header:X-Api-Key={secret}", vault.Render{Kind: vault.RenderHeader, Name: "X-Api-Key", Template: "{secret}"}},
		{"header:Authorization=Token {secret}", vault.Render{Kind: vault.RenderHeader, Name: "Authorization", Template: "Token {secret}"}},
		{"header:X-K=a=b{secret}", vault.Render{Kind: vault.RenderHeader, Name: "X-K", Template: "a=b{secret}"}},
		{"query:api_key", vault.Render{Kind: vault.RenderQuery, Name: "api_key"}},
	}
	for _, tt := range good {
		got, err := vault.ParseRender(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseRender(%q) = %+v, %v", tt.in, got, err)
		}
		if got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
	for _, in := range []string{
		"", "Bearer", "bearer:x", "basic:u", "cookie", "header", "header:", "header:X-K", "header:X-K=nosecret",
		"header:X-K={secret}{secret}", "header:Bad Name={secret}", "header:Host={secret}", "header:content-length={secret}",
		"header:X-K={secret}\r\nX-Evil: 1", "query:", "query:a&b", "query:a=b", "query",
	} {
		if r, err := vault.ParseRender(in); err == nil {
			t.Errorf("ParseRender(%q) = %+v, want an error", in, r)
		} else if !errors.Is(err, vault.ErrInvalid) {
			t.Errorf("ParseRender(%q) error %v is not ErrInvalid", in, err)
		}
	}
}

func FuzzParseRender(f *testing.F) {
	for _, s := range []string{"bearer", "basic", "header:X-Api-Key={secret}", "query:k", "header:A=b {secret} c", "header:=", "query:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := vault.ParseRender(s)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed render %+v does not validate: %v", r, err)
		}
		if r.String() != s {
			t.Fatalf("String() = %q, parsed from %q", r.String(), s)
		}
		r2, err := vault.ParseRender(r.String())
		if err != nil || r2 != r {
			t.Fatalf("round trip %q: %+v, %v", s, r2, err)
		}
		if r.Kind == vault.RenderHeader && strings.ContainsAny(r.Template, "\r\n") {
			t.Fatal("template with a line break accepted")
		}
	})
}

func TestHosts(t *testing.T) {
	got, err := vault.NormalizeHosts([]string{"B.example.com", "a.example.com", "b.example.com.", "10.0.0.1", "[::1]", "*.Example.org", "my_svc.example.net"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "*.example.org,10.0.0.1,::1,a.example.com,b.example.com,my_svc.example.net"; strings.Join(got, ",") != want {
		t.Fatalf("NormalizeHosts = %v", got)
	}
	for _, bad := range []string{"", "a..b", "-a.com", "a.com:80", "http://a.com", "*", "*.com", "a.*.com", "fe80::1%eth0", "127.1", strings.Repeat("a", 64) + ".com"} {
		if _, err := vault.NormalizeHosts([]string{bad}); !errors.Is(err, vault.ErrInvalid) {
			t.Errorf("NormalizeHosts(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	// The rules are hostmatch's; these pin that a binding follows them.
	c := vault.Credential{Hosts: []string{"*.stripe.com", "::1", "api.stripe.com"}}
	for host, want := range map[string]bool{
		"api.stripe.com":          true,
		"API.Stripe.com.:443":     true,
		"api.stripe.com.evil.net": false,
		"files.stripe.com":        true,
		"stripe.com":              false,
		"a.b.stripe.com":          false,
		"evilstripe.com":          false,
		"[::1]:443":               true,
		"":                        false,
	} {
		if got := c.BoundTo(host); got != want {
			t.Errorf("BoundTo(%q) = %v", host, got)
		}
	}
}

func TestRewrapCopy(t *testing.T) {
	dir := t.TempDir()
	path, copyPath := filepath.Join(dir, "vault.db"), filepath.Join(dir, "vault.db.new")
	from, to := kmstest.Local(t), kmstest.NewFailing(kmstest.Local(t))
	v := openVault(t, path, from, vault.Options{CacheTTL: -1})
	put(t, v, "stripe", secretA, "api.stripe.com")
	put(t, v, "github", secretB, "api.github.com")
	listBefore, _ := v.List()
	before := fileHash(t, path)

	n, err := v.RewrapCopy(ctxT(t), copyPath, to)
	if err != nil || n != 2 {
		t.Fatalf("rewrap copy = %d, %v", n, err)
	}
	if fileHash(t, path) != before || v.KMS() != from {
		t.Fatal("RewrapCopy changed the vault")
	}
	wantSecret(t, v, "stripe", secretA)

	c := openVault(t, copyPath, to, vault.Options{CacheTTL: -1})
	wantSecret(t, c, "stripe", secretA)
	wantSecret(t, c, "github", secretB)
	listCopy, _ := c.List()
	for i := range listBefore {
		if listBefore[i].Fingerprint != listCopy[i].Fingerprint || listBefore[i].Version != listCopy[i].Version {
			t.Fatal("the copy changed a credential")
		}
	}
	if got := put(t, c, "dup", secretA, "x.example.com"); got.Fingerprint != listBefore[1].Fingerprint {
		t.Fatal("fingerprint salt lost in the copy")
	}
	if fi, err := os.Stat(copyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("copy: %v, %v", fi, err)
	}

	// An existing target is refused; a target KMS that fails leaves nothing.
	if _, err := v.RewrapCopy(ctxT(t), copyPath, to); err == nil {
		t.Fatal("RewrapCopy overwrote a file")
	}
	to.FailUnwrap(kms.ErrUnwrap)
	other := filepath.Join(dir, "other.db")
	if _, err := v.RewrapCopy(ctxT(t), other, to); err == nil {
		t.Fatal("RewrapCopy to a KMS that cannot unwrap succeeded")
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Fatalf("a failed RewrapCopy left %s: %v", other, err)
	}
	if fileHash(t, path) != before {
		t.Fatal("a failed RewrapCopy changed the vault")
	}
}
