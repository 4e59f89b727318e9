package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Wrapper encrypts and decrypts the CA private key with a key the caller
// holds, typically a KMS. vault/kms.KMS satisfies it.
type Wrapper interface {
	// Wrap encrypts plaintext bound to aad.
	Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	// Unwrap reverses Wrap; it fails when aad differs.
	Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error)
	// URI names the wrapping key; it is recorded next to the wrapped key.
	URI() string
}

const (
	// KeyFileFormat identifies the key file layout written by Save.
	KeyFileFormat = "stack-mitm-ca-key/v1"

	// keyAAD binds the wrapped key to its purpose, so a blob wrapped for
	// anything else under the same KMS key does not unwrap as a CA key.
	keyAAD = "stack/mitm-ca-key"
)

// keyFile is the JSON layout of the key file.
type keyFile struct {
	Format  string `json:"format"`
	KMSURI  string `json:"kms_uri"`
	Wrapped []byte `json:"wrapped"` // base64 in JSON
}

// Save writes the certificate in PEM to certPath (mode 0644) and the private
// key, wrapped by w, to keyPath (mode 0600). Each file is written to a
// temporary file, synced, then linked into place, so a crash leaves either
// no file or a whole one. Save never overwrites: if either path exists it
// returns an error wrapping fs.ErrExist and writes nothing.
func (c *CA) Save(ctx context.Context, certPath, keyPath string, w Wrapper) error {
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("ca: save %s: %w", p, fs.ErrExist)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ca: save %s: %w", p, err)
		}
	}
	if err := c.saveKey(ctx, keyPath, w); err != nil {
		return err
	}
	if err := writeNew(certPath, c.certPEM, 0o644); err != nil {
		// Without its certificate the key file is useless and would block the
		// next Save: take back what this call wrote.
		_ = os.Remove(keyPath)
		return fmt.Errorf("ca: save certificate: %w", err)
	}
	return nil
}

// saveKey writes the private key, wrapped by w, to keyPath (mode 0600),
// which must not exist.
func (c *CA) saveKey(ctx context.Context, keyPath string, w Wrapper) error {
	der, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		return fmt.Errorf("ca: save: marshal key: %w", err)
	}
	wrapped, err := w.Wrap(ctx, der, []byte(keyAAD))
	clear(der)
	if err != nil {
		return fmt.Errorf("ca: save: wrap key with %s: %w", w.URI(), err)
	}
	body, err := json.MarshalIndent(keyFile{Format: KeyFileFormat, KMSURI: w.URI(), Wrapped: wrapped}, "", "  ")
	if err != nil {
		return fmt.Errorf("ca: save: %w", err)
	}
	body = append(body, '\n')
	if err := writeNew(keyPath, body, 0o600); err != nil {
		return fmt.Errorf("ca: save key: %w", err)
	}
	return nil
}

// RewrapKey writes the CA's key file keyPath to newKeyPath with the key
// unwrapped by from and wrapped by to, then loads the CA from certPath and
// newKeyPath with to, so a key that to cannot give back is never reported
// as moved. keyPath is not changed; newKeyPath must not exist, and is
// removed again when the check fails.
func RewrapKey(ctx context.Context, certPath, keyPath, newKeyPath string, from, to Wrapper) error {
	c, err := Load(ctx, certPath, keyPath, from)
	if err != nil {
		return err
	}
	if err := c.saveKey(ctx, newKeyPath, to); err != nil {
		return err
	}
	// Load checks that the key is the certificate's, hence the same key.
	if _, err := Load(ctx, certPath, newKeyPath, to); err != nil {
		_ = os.Remove(newKeyPath)
		return err
	}
	return nil
}

// Load reads a CA written by Save, unwrapping the key with w, and checks
// that the certificate is an ECDSA P-256 CA that may sign certificates and
// that the key is its own.
func Load(ctx context.Context, certPath, keyPath string, w Wrapper) (*CA, error) {
	cert, err := readCert(certPath)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca: load key: %w", err)
	}
	var kf keyFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kf); err != nil {
		return nil, fmt.Errorf("ca: load key %s: %w: %w", keyPath, ErrKeyFormat, err)
	}
	if kf.Format != KeyFileFormat || len(kf.Wrapped) == 0 {
		return nil, fmt.Errorf("ca: load key %s: %w: format %q", keyPath, ErrKeyFormat, kf.Format)
	}
	der, err := w.Unwrap(ctx, kf.Wrapped, []byte(keyAAD))
	if err != nil {
		return nil, fmt.Errorf("ca: load key %s (wrapped by %s, unwrapping with %s): %w: %w",
			keyPath, kf.KMSURI, w.URI(), ErrUnwrap, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	clear(der)
	if err != nil {
		return nil, fmt.Errorf("ca: load key %s: %w: %w", keyPath, ErrKeyFormat, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("ca: load key %s: %w: not an ECDSA P-256 key", keyPath, ErrKeyFormat)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("ca: load %s and %s: %w", certPath, keyPath, ErrKeyMismatch)
	}
	return newCA(cert, key), nil
}

func readCert(certPath string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("ca: load certificate: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("ca: load certificate %s: %w: no PEM CERTIFICATE block", certPath, ErrCertFormat)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: load certificate %s: %w: %w", certPath, ErrCertFormat, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 ||
		!ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("ca: load certificate %s: %w", certPath, ErrNotCA)
	}
	return cert, nil
}

// writeNew creates path with data and mode perm, atomically and without
// replacing an existing file: the data goes to a temporary file in the same
// directory, is synced, and is hard-linked to path (link, unlike rename,
// fails when path exists). On file systems without hard links it falls back
// to rename after checking that path is absent.
func writeNew(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		_ = os.Remove(tmp)
	}()
	if err := f.Chmod(perm); err != nil {
		_ = f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		if _, serr := os.Lstat(path); serr == nil {
			return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
