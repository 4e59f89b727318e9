package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/vault/kms"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

func paths(t *testing.T) (string, string) {
	dir := t.TempDir()
	return filepath.Join(dir, "mitm-ca.pem"), filepath.Join(dir, "mitm-ca.key.json")
}

func TestSaveLoadRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := mustGenerate(t, time.Now())
	w := kmstest.Local(t)
	certPath, keyPath := paths(t)
	if err := c.Save(ctx, certPath, keyPath, w); err != nil {
		t.Fatal(err)
	}

	for path, want := range map[string]fs.FileMode{certPath: 0o644, keyPath: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", filepath.Base(path), fi.Mode().Perm(), want)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(certPath))
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want 2 (no temporary files left)", len(entries))
	}

	raw, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	var kf map[string]any
	if err := json.Unmarshal(raw, &kf); err != nil {
		t.Fatalf("key file is not JSON: %v", err)
	}
	if kf["format"] != KeyFileFormat || kf["kms_uri"] != w.URI() || kf["wrapped"] == "" || len(kf) != 3 {
		t.Errorf("key file fields = %v", kf)
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, der) || strings.Contains(string(raw), "PRIVATE KEY") {
		t.Error("key file holds the private key in the clear")
	}
	if pemFile, _ := os.ReadFile(certPath); !bytes.Equal(pemFile, c.CertPEM()) {
		t.Error("certificate file differs from CertPEM")
	}

	loaded, err := Load(ctx, certPath, keyPath, w)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Certificate().Equal(c.Certificate()) {
		t.Error("loaded certificate differs")
	}
	if !loaded.key.Equal(c.key) {
		t.Error("loaded key differs")
	}
	leaf, err := loaded.Leaf("api.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.Leaf.CheckSignatureFrom(c.Certificate()); err != nil {
		t.Errorf("leaf from the loaded CA does not chain to the original: %v", err)
	}
}

func TestSaveRefusesToOverwrite(t *testing.T) {
	ctx := context.Background()
	w := kmstest.Local(t)
	tests := []struct {
		name     string
		existing func(certPath, keyPath string) string // creates a file, returns its path
	}{
		{"certificate exists", func(c, _ string) string { return c }},
		{"key exists", func(_, k string) string { return k }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPath, keyPath := paths(t)
			existing := tt.existing(certPath, keyPath)
			if err := os.WriteFile(existing, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			err := mustGenerate(t, time.Now()).Save(ctx, certPath, keyPath, w)
			if !errors.Is(err, fs.ErrExist) {
				t.Fatalf("err = %v, want fs.ErrExist", err)
			}
			if got, _ := os.ReadFile(existing); string(got) != "precious" {
				t.Error("existing file was changed")
			}
			entries, _ := os.ReadDir(filepath.Dir(certPath))
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only the existing file", len(entries))
			}
		})
	}
}

func TestWriteNewRefusesExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := writeNew(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeNew(path, []byte("two"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("err = %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "one" {
		t.Errorf("file holds %q", got)
	}
}

func TestLoadFailures(t *testing.T) {
	ctx := context.Background()
	w := kmstest.Local(t)
	c := mustGenerate(t, time.Now())
	other := mustGenerate(t, time.Now())

	saved := func(t *testing.T) (string, string) {
		certPath, keyPath := paths(t)
		if err := c.Save(ctx, certPath, keyPath, w); err != nil {
			t.Fatal(err)
		}
		return certPath, keyPath
	}
	replace := func(t *testing.T, path string, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	leaf, err := c.Leaf("api.example.test")
	if err != nil {
		t.Fatal(err)
	}

	otherKey := kmstest.Local(t)
	tests := []struct {
		name    string
		wrapper Wrapper
		mangle  func(t *testing.T, certPath, keyPath string)
		want    error
		inMsg   string
	}{
		{
			name:    "wrong KMS key",
			wrapper: otherKey,
			want:    ErrUnwrap,
			inMsg:   otherKey.URI(),
		},
		{
			name: "key of another CA",
			mangle: func(t *testing.T, certPath, _ string) {
				replace(t, certPath, other.CertPEM())
			},
			want: ErrKeyMismatch,
		},
		{
			name: "certificate is a leaf",
			mangle: func(t *testing.T, certPath, _ string) {
				replace(t, certPath, pemCert(leaf.Leaf))
			},
			want: ErrNotCA,
		},
		{
			name:   "certificate file is not PEM",
			mangle: func(t *testing.T, certPath, _ string) { replace(t, certPath, []byte("hello")) },
			want:   ErrCertFormat,
		},
		{
			name:   "key file is not JSON",
			mangle: func(t *testing.T, _, keyPath string) { replace(t, keyPath, []byte("-----BEGIN")) },
			want:   ErrKeyFormat,
		},
		{
			name: "key file of another format",
			mangle: func(t *testing.T, _, keyPath string) {
				replace(t, keyPath, []byte(`{"format":"v0","kms_uri":"x","wrapped":"AAAA"}`))
			},
			want: ErrKeyFormat,
		},
		{
			name: "key file with an unknown field",
			mangle: func(t *testing.T, _, keyPath string) {
				raw, _ := os.ReadFile(keyPath)
				replace(t, keyPath, bytes.Replace(raw, []byte("{"), []byte(`{"extra":1,`), 1))
			},
			want: ErrKeyFormat,
		},
		{
			name: "wrapped key tampered with",
			mangle: func(t *testing.T, _, keyPath string) {
				raw, _ := os.ReadFile(keyPath)
				var kf keyFile
				if err := json.Unmarshal(raw, &kf); err != nil {
					t.Fatal(err)
				}
				kf.Wrapped[len(kf.Wrapped)-1] ^= 1
				out, _ := json.Marshal(kf)
				replace(t, keyPath, out)
			},
			want: ErrUnwrap,
		},
		{
			name:   "key file missing",
			mangle: func(t *testing.T, _, keyPath string) { os.Remove(keyPath) },
			want:   fs.ErrNotExist,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPath, keyPath := saved(t)
			if tt.mangle != nil {
				tt.mangle(t, certPath, keyPath)
			}
			wr := tt.wrapper
			if wr == nil {
				wr = w
			}
			got, err := Load(ctx, certPath, keyPath, wr)
			if got != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Load = %v, %v; want error %v", got, err, tt.want)
			}
			if tt.inMsg != "" && !strings.Contains(err.Error(), tt.inMsg) {
				t.Errorf("error %q does not name %q", err, tt.inMsg)
			}
		})
	}
}

func pemCert(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

func TestRewrapKey(t *testing.T) {
	ctx := context.Background()
	c := mustGenerate(t, time.Now())
	from := kmstest.Local(t)
	to := kmstest.NewFailing(kmstest.Local(t))
	certPath, keyPath := paths(t)
	if err := c.Save(ctx, certPath, keyPath, from); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(keyPath)
	newKeyPath := keyPath + ".new"
	if err := RewrapKey(ctx, certPath, keyPath, newKeyPath, from, to); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(keyPath); !bytes.Equal(before, after) {
		t.Error("RewrapKey changed the old key file")
	}
	loaded, err := Load(ctx, certPath, newKeyPath, to)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.key.Equal(c.key) {
		t.Error("the rewrapped key differs")
	}
	if _, err := Load(ctx, certPath, newKeyPath, from); !errors.Is(err, ErrUnwrap) {
		t.Errorf("the old wrapper unwraps the new file: %v", err)
	}
	if fi, err := os.Stat(newKeyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new key file: %v, %v", fi, err)
	}
	raw, _ := os.ReadFile(newKeyPath)
	if !strings.Contains(string(raw), `"kms_uri": "`+to.URI()+`"`) {
		t.Errorf("new key file does not name its wrapper:\n%s", raw)
	}

	// It never overwrites, and leaves nothing when the target fails.
	if err := RewrapKey(ctx, certPath, keyPath, newKeyPath, from, to); !errors.Is(err, fs.ErrExist) {
		t.Errorf("rewrap over an existing file: %v", err)
	}
	to.FailUnwrap(kms.ErrUnwrap)
	other := keyPath + ".other"
	if err := RewrapKey(ctx, certPath, keyPath, other, from, to); err == nil {
		t.Error("rewrap with a wrapper that cannot unwrap succeeded")
	}
	if _, err := os.Stat(other); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed rewrap left %s: %v", other, err)
	}
}
