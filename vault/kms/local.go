package kms

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

const (
	localScheme = "local://"
	// LocalKeySize is the size of a local key file in bytes (AES-256).
	LocalKeySize = 32
	// localFormatV1 is the first byte of every value wrapped by a local
	// key: version || nonce (12) || AES-256-GCM ciphertext and tag.
	localFormatV1 = 0x01
	// localAADPrefix separates local wrapping from any other use of the key.
	localAADPrefix = "stack-kms-local-v1\x00"
)

// CreateLocalKey writes a new random 32-byte key file at path with mode
// 0600. It refuses to overwrite an existing file: the error then wraps
// fs.ErrExist. Losing the file loses every secret wrapped under it.
func CreateLocalKey(path string) error {
	key := make([]byte, LocalKeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("create local key %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create local key %s: %w", path, err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("create local key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("create local key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("create local key %s: %w", path, err)
	}
	return nil
}

// local wraps with AES-256-GCM under a key read from a file once at Open.
type local struct {
	uri  string
	aead cipher.AEAD

	mu     sync.RWMutex
	closed bool
}

// LocalKeyPath returns the key file a local:// URI names, resolved
// against opts.BaseDir as Open resolves it; ok is false for other schemes
// and for an empty path.
func LocalKeyPath(uri string, opts Options) (path string, ok bool) {
	path, ok = strings.CutPrefix(uri, localScheme)
	if !ok || path == "" {
		return "", false
	}
	if !filepath.IsAbs(path) && opts.BaseDir != "" {
		path = filepath.Join(opts.BaseDir, path)
	}
	return path, true
}

func openLocal(uri string, opts Options) (KMS, error) {
	path, ok := LocalKeyPath(uri, opts)
	if !ok {
		return nil, opError(uri, "open", ErrInvalidURI, errors.New("empty path (want local://PATH)"))
	}
	key, err := readKeyFile(path)
	if err != nil {
		return nil, opError(uri, "open", ErrKeyFile, err)
	}
	block, err := aes.NewCipher(key)
	clear(key)
	if err != nil {
		return nil, opError(uri, "open", ErrKeyFile, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, opError(uri, "open", ErrKeyFile, err)
	}
	return &local{uri: uri, aead: aead}, nil
}

// readKeyFile reads a key file, refusing one that group or others may
// read or write: a key anyone can read protects nothing.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o; it must be 0600 or stricter (chmod 600 %s)", path, perm, path)
	}
	key := make([]byte, LocalKeySize+1)
	n, err := io.ReadFull(f, key)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, err
	}
	if n != LocalKeySize {
		clear(key)
		return nil, fmt.Errorf("%s holds %s bytes; want exactly %d", path, sizeWord(n), LocalKeySize)
	}
	return key[:LocalKeySize], nil
}

func sizeWord(n int) string {
	if n > LocalKeySize {
		return "more than 32"
	}
	return fmt.Sprint(n)
}

func (l *local) URI() string { return l.uri }

func localAAD(aad []byte) []byte {
	return append([]byte(localAADPrefix), aad...)
}

func (l *local) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	if err := l.usable(ctx, "wrap"); err != nil {
		return nil, err
	}
	ns := l.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+l.aead.Overhead())
	out[0] = localFormatV1
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, opError(l.uri, "wrap", ErrWrap, err)
	}
	return l.aead.Seal(out, out[1:], plaintext, localAAD(aad)), nil
}

func (l *local) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if err := l.usable(ctx, "unwrap"); err != nil {
		return nil, err
	}
	ns := l.aead.NonceSize()
	if len(wrapped) < 1+ns+l.aead.Overhead() {
		return nil, opError(l.uri, "unwrap", ErrUnwrap, errors.New("wrapped value too short"))
	}
	if wrapped[0] != localFormatV1 {
		return nil, opError(l.uri, "unwrap", ErrIntegrity, fmt.Errorf("unknown wrapped format version %d", wrapped[0]))
	}
	pt, err := l.aead.Open(nil, wrapped[1:1+ns], wrapped[1+ns:], localAAD(aad))
	if err != nil {
		return nil, opError(l.uri, "unwrap", ErrUnwrap, nil)
	}
	return pt, nil
}

func (l *local) usable(ctx context.Context, op string) error {
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	if closed {
		return opError(l.uri, op, ErrClosed, nil)
	}
	if err := ctx.Err(); err != nil {
		return opError(l.uri, op, ErrUnavailable, err)
	}
	return nil
}

func (l *local) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return nil
}
