package kms_test

import (
	"context"
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

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func open(t *testing.T, uri string, opts kms.Options) kms.KMS {
	t.Helper()
	k, err := kms.Open(testCtx(t), uri, opts)
	if err != nil {
		t.Fatalf("open %s: %v", uri, err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func newLocalKey(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kms.key")
	if err := kms.CreateLocalKey(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLocalConformance(t *testing.T) {
	kmstest.Conformance(t, func(t *testing.T) kmstest.Backend {
		return kmstest.Backend{
			KMS:   open(t, "local://"+newLocalKey(t), kms.Options{}),
			Other: open(t, "local://"+newLocalKey(t), kms.Options{}),
		}
	})
}

func TestGCPConformance(t *testing.T) {
	kmstest.SetGCPEnv(t, kmstest.StartGCP(t))
	kmstest.Conformance(t, func(t *testing.T) kmstest.Backend {
		return kmstest.Backend{
			KMS:   open(t, kmstest.GCPKeyURI("a"), kms.Options{}),
			Other: open(t, kmstest.GCPKeyURI("b"), kms.Options{}),
			Down: func(t *testing.T) kms.KMS {
				srv := kmstest.StartGCPServer(t)
				kmstest.SetGCPEnv(t, srv.Endpoint)
				k := open(t, kmstest.GCPKeyURI("a"), kms.Options{})
				if _, err := k.Wrap(testCtx(t), []byte("up"), nil); err != nil {
					t.Fatalf("wrap while the server is up: %v", err)
				}
				srv.Stop()
				return k
			},
		}
	})
}

func TestAWSConformance(t *testing.T) {
	ep := kmstest.StartMoto(t)
	kmstest.SetAWSEnv(t, ep)
	kmstest.Conformance(t, func(t *testing.T) kmstest.Backend {
		return kmstest.Backend{
			KMS:   open(t, "awskms://"+kmstest.CreateAWSKey(t, ep), kms.Options{}),
			Other: open(t, "awskms://"+kmstest.CreateAWSKey(t, ep), kms.Options{}),
			Down: func(t *testing.T) kms.KMS {
				kmstest.SetAWSEnv(t, kmstest.DeadEndpoint(t))
				return open(t, "awskms://"+kmstest.CreateAWSKey(t, ep), kms.Options{})
			},
		}
	})
}

func TestAWSAlias(t *testing.T) {
	ep := kmstest.StartMoto(t)
	kmstest.SetAWSEnv(t, ep)
	id := kmstest.CreateAWSKey(t, ep)
	kmstest.CreateAWSAlias(t, ep, "alias/stack-test", id)
	byAlias := open(t, "awskms://alias/stack-test", kms.Options{})
	byID := open(t, "awskms://"+id, kms.Options{})
	w, err := byAlias.Wrap(testCtx(t), []byte("k"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := byID.Unwrap(testCtx(t), w, []byte("aad"))
	if err != nil || string(got) != "k" {
		t.Fatalf("unwrap by key ID of a value wrapped by alias = %q, %v", got, err)
	}
}

// TestGCPReal runs the suite against a real Cloud KMS key when
// STACK_TEST_GCPKMS_KEY names one (gcpkms://... or the bare resource name).
func TestGCPReal(t *testing.T) {
	key := os.Getenv("STACK_TEST_GCPKMS_KEY")
	if key == "" {
		t.Skip("STACK_TEST_GCPKMS_KEY not set")
	}
	if !strings.HasPrefix(key, "gcpkms://") {
		key = "gcpkms://" + key
	}
	t.Setenv(kms.GCPEndpointEnv, "")
	kmstest.Conformance(t, func(t *testing.T) kmstest.Backend {
		// Another key cannot be assumed to exist: WrongKey runs only when
		// STACK_TEST_GCPKMS_OTHER_KEY names one.
		b := kmstest.Backend{KMS: open(t, key, kms.Options{})}
		if other := os.Getenv("STACK_TEST_GCPKMS_OTHER_KEY"); other != "" {
			if !strings.HasPrefix(other, "gcpkms://") {
				other = "gcpkms://" + other
			}
			b.Other = open(t, other, kms.Options{})
		}
		return b
	})
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose.key")
	if err := os.WriteFile(loose, make([]byte, 32), 0o644); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(short, make([]byte, 16), 0o600); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(dir, "long.key")
	if err := os.WriteFile(long, make([]byte, 33), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		uri      string
		env      string
		want     error
		contains string
	}{
		{"unknown scheme", "vault://x", "", kms.ErrUnknownScheme, "local://"},
		{"empty", "", "", kms.ErrUnknownScheme, "awskms://"},
		{"local empty path", "local://", "", kms.ErrInvalidURI, "empty path"},
		{"local missing", "local://" + filepath.Join(dir, "none.key"), "", kms.ErrKeyFile, "no such file"},
		{"local loose mode", "local://" + loose, "", kms.ErrKeyFile, "0644"},
		{"local short", "local://" + short, "", kms.ErrKeyFile, "16 bytes"},
		{"local long", "local://" + long, "", kms.ErrKeyFile, "more than 32"},
		{"local directory", "local://" + dir, "", kms.ErrKeyFile, "not a regular file"},
		{"gcp short name", "gcpkms://projects/p/locations/l", "", kms.ErrInvalidURI, "cryptoKeys"},
		{"gcp wrong segment", "gcpkms://projects/p/regions/l/keyRings/r/cryptoKeys/k", "", kms.ErrInvalidURI, "locations"},
		{"gcp empty segment", "gcpkms://projects//locations/l/keyRings/r/cryptoKeys/k", "", kms.ErrInvalidURI, "segment 2"},
		{"gcp plaintext off loopback", kmstest.GCPKeyURI("k"), "http://10.0.0.1:443", kms.ErrInvalidURI, "loopback"},
		{"gcp other scheme", kmstest.GCPKeyURI("k"), "https://kms.example.com", kms.ErrInvalidURI, "HOST:PORT"},
		{"aws empty", "awskms://", "", kms.ErrInvalidURI, "alias/NAME"},
		{"aws bare alias", "awskms://alias/", "", kms.ErrInvalidURI, "alias"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(kms.GCPEndpointEnv, tt.env)
			k, err := kms.Open(testCtx(t), tt.uri, kms.Options{})
			if err == nil {
				k.Close()
				t.Fatal("open succeeded")
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("err %q does not mention %q", err, tt.contains)
			}
			if !strings.Contains(err.Error(), tt.uri) {
				t.Fatalf("err %q does not name the URI", err)
			}
		})
	}
}

func TestAWSNoRegion(t *testing.T) {
	kmstest.SetAWSEnv(t, kmstest.DeadEndpoint(t))
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	_, err := kms.Open(testCtx(t), "awskms://alias/x", kms.Options{})
	if !errors.Is(err, kms.ErrInvalidURI) || !strings.Contains(err.Error(), "AWS_REGION") {
		t.Fatalf("open without region = %v", err)
	}
	k, err := kms.Open(testCtx(t), "awskms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", kms.Options{})
	if err != nil {
		t.Fatalf("open with an ARN and no region: %v", err)
	}
	k.Close()
}

func TestCreateLocalKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kms.key")
	if err := kms.CreateLocalKey(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != kms.LocalKeySize {
		t.Fatalf("key file mode %v size %d", st.Mode().Perm(), st.Size())
	}
	before, _ := os.ReadFile(path)
	err = kms.CreateLocalKey(path)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second create = %v, want fs.ErrExist", err)
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatal("second create changed the key file")
	}
	other := filepath.Join(t.TempDir(), "kms.key")
	if err := kms.CreateLocalKey(other); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(other); string(b) == string(before) {
		t.Fatal("two keys are equal")
	}
}

func TestLocalRelativePath(t *testing.T) {
	dir := t.TempDir()
	if err := kms.CreateLocalKey(filepath.Join(dir, "kms.key")); err != nil {
		t.Fatal(err)
	}
	k := open(t, "local://kms.key", kms.Options{BaseDir: dir})
	if k.URI() != "local://kms.key" {
		t.Fatalf("URI = %q", k.URI())
	}
	abs := open(t, "local://"+filepath.Join(dir, "kms.key"), kms.Options{BaseDir: "/nonexistent"})
	w, err := k.Wrap(testCtx(t), []byte("x"), []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := abs.Unwrap(testCtx(t), w, []byte("a")); err != nil || string(got) != "x" {
		t.Fatalf("same file by absolute path: %q, %v", got, err)
	}
}

func TestLocalUnknownFormat(t *testing.T) {
	k := open(t, "local://"+newLocalKey(t), kms.Options{})
	w, err := k.Wrap(testCtx(t), []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	w[0] = 9
	if _, err := k.Unwrap(testCtx(t), w, nil); !errors.Is(err, kms.ErrIntegrity) {
		t.Fatalf("unwrap of format 9 = %v, want ErrIntegrity", err)
	}
}

func TestCanceledContext(t *testing.T) {
	k := open(t, "local://"+newLocalKey(t), kms.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := k.Wrap(ctx, []byte("x"), nil); !errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("wrap with a canceled context = %v", err)
	}
}

func TestLocalKeyPath(t *testing.T) {
	tests := []struct {
		uri, base, want string
		ok              bool
	}{
		{"local://kms.key", "/home/s", "/home/s/kms.key", true},
		{"local:///etc/k", "/home/s", "/etc/k", true},
		{"local://kms.key", "", "kms.key", true},
		{"local://", "/home/s", "", false},
		{"awskms://alias/x", "/home/s", "", false},
	}
	for _, tt := range tests {
		got, ok := kms.LocalKeyPath(tt.uri, kms.Options{BaseDir: tt.base})
		if got != tt.want || ok != tt.ok {
			t.Errorf("LocalKeyPath(%q, %q) = %q, %v; want %q, %v", tt.uri, tt.base, got, ok, tt.want, tt.ok)
		}
	}
}
