package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stackctl/stack/vault"
	"github.com/stackctl/stack/vault/kms"
)

const (
	cliSecretA = "sk_live_CLI_9f8e7d6c5b4a39281706"
	cliSecretB = "ghp_CLI_0a1b2c3d4e5f60718293a4b5"
)

// transcript collects every byte the CLI printed, to check no secret leaks.
type transcript struct{ bytes.Buffer }

func (tr *transcript) run(t *testing.T, home, stdin string, wantCode int, args ...string) string {
	t.Helper()
	code, out, errs := runStack(t, home, stdin, args...)
	tr.WriteString(out)
	tr.WriteString(errs)
	if code != wantCode {
		t.Fatalf("stack %v exited %d, want %d\nstdout: %s\nstderr: %s", args, code, wantCode, out, errs)
	}
	return out + errs
}

func (tr *transcript) wantNoSecrets(t *testing.T, home string) {
	t.Helper()
	for _, s := range []string{cliSecretA, cliSecretB} {
		if strings.Contains(tr.String(), s) {
			t.Fatal("CLI output contains a secret")
		}
		raw, err := os.ReadFile(filepath.Join(home, "vault.db"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(s)) {
			t.Fatal("vault.db contains a plaintext secret")
		}
	}
}

func TestVaultCommands(t *testing.T) {
	home := initHome(t)
	var tr transcript
	out := tr.run(t, home, cliSecretA+"\n", 0, "--log-level", "debug", "vault", "put", "stripe", "--host", "api.stripe.com", "--render", "bearer")
	if !strings.Contains(out, "stored stripe version 1") || !strings.Contains(out, "stk_ph_stripe") {
		t.Fatalf("put said %q", out)
	}
	t.Setenv("STACK_TEST_GH", cliSecretB)
	tr.run(t, home, "", 0, "vault", "put", "github", "--host", "api.github.com", "--host", "*.github.com", "--render", "header:Authorization=token {secret}", "--from-env", "STACK_TEST_GH")

	out = tr.run(t, home, "", 0, "vault", "list")
	for _, want := range []string{"NAME", "FINGERPRINT", "stripe", "github", "*.github.com,api.github.com", "header:Authorization=token {secret}", "hmac-sha256:"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	out = tr.run(t, home, "", 0, "vault", "list", "--json")
	var creds []vault.Credential
	if err := json.Unmarshal([]byte(out), &creds); err != nil || len(creds) != 2 {
		t.Fatalf("list --json = %q, %v", out, err)
	}
	if creds[1].Name != "stripe" || creds[1].Render.Kind != vault.RenderBearer || creds[1].Version != 1 {
		t.Fatalf("list --json entry = %+v", creds[1])
	}

	// The stored secret is exactly what was piped, less one newline.
	wantStored(t, home, "local://"+filepath.Join(home, "kms.key"), "stripe", cliSecretA)

	out = tr.run(t, home, cliSecretB+"\r\n", 0, "vault", "rotate", "stripe")
	if !strings.Contains(out, "version 2") {
		t.Fatalf("rotate said %q", out)
	}
	wantStored(t, home, "local://"+filepath.Join(home, "kms.key"), "stripe", cliSecretB)

	out = tr.run(t, home, "", 0, "vault", "check")
	if !strings.Contains(out, "ok    stripe v2") || !strings.Contains(out, "2 credential(s) ok") {
		t.Fatalf("check said %q", out)
	}
	tr.run(t, home, "", 0, "vault", "rm", "github")
	out = tr.run(t, home, "", 1, "vault", "rm", "github")
	if !strings.Contains(out, "not found") {
		t.Fatalf("second rm said %q", out)
	}
	tr.wantNoSecrets(t, home)
}

// vault rotate reads the new secret whole from --from-file, so it need
// be neither on the command line nor in the environment.
func TestVaultRotateFromFile(t *testing.T) {
	home := initHome(t)
	var tr transcript
	tr.run(t, home, cliSecretA, 0, "vault", "put", "stripe", "--host", "api.stripe.com", "--render", "bearer")
	file := filepath.Join(t.TempDir(), "new-key")
	if err := os.WriteFile(file, []byte(cliSecretB), 0o600); err != nil {
		t.Fatal(err)
	}
	out := tr.run(t, home, "", 0, "vault", "rotate", "stripe", "--from-file", file)
	if !strings.Contains(out, "rotated stripe to version 2") {
		t.Fatalf("rotate said %q", out)
	}
	wantStored(t, home, "local://"+filepath.Join(home, "kms.key"), "stripe", cliSecretB)

	t.Setenv("STACK_TEST_ROTATE", cliSecretA)
	for _, tc := range []struct {
		args []string
		say  string
	}{
		{[]string{"--from-file", filepath.Join(t.TempDir(), "absent")}, "--from-file"},
		{[]string{"--from-file", file, "--from-env", "STACK_TEST_ROTATE"}, "none of the others can be"},
	} {
		out := tr.run(t, home, "", exitUsage, append([]string{"vault", "rotate", "stripe"}, tc.args...)...)
		if !strings.Contains(out, tc.say) {
			t.Errorf("rotate %v said %q, want %q", tc.args, out, tc.say)
		}
	}
	wantStored(t, home, "local://"+filepath.Join(home, "kms.key"), "stripe", cliSecretB)
	tr.wantNoSecrets(t, home)
}

// wantStored opens the vault directly and checks a secret.
func wantStored(t *testing.T, home, kmsURI, name, want string) {
	t.Helper()
	ctx := context.Background()
	k, err := kms.Open(ctx, kmsURI, kms.Options{BaseDir: home})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	v, err := vault.Open(filepath.Join(home, "vault.db"), k, vault.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	_, got, err := v.Get(ctx, name)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	if string(got) != want {
		t.Fatalf("stored secret of %s differs from what was given", name)
	}
}

func TestVaultPutRefusals(t *testing.T) {
	home := initHome(t)
	var tr transcript
	put := []string{"vault", "put", "stripe", "--host", "api.stripe.com", "--render", "bearer"}
	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		say   string
	}{
		{"empty stdin", "", put, 2, "empty secret"},
		{"only a newline", "\n", put, 2, "empty secret"},
		{"secret as argument", "", append(append([]string{}, put...), cliSecretA), 2, "accepts 1 arg"},
		{"no host", cliSecretA, []string{"vault", "put", "stripe", "--render", "bearer"}, 2, "--host"},
		{"no render", cliSecretA, []string{"vault", "put", "stripe", "--host", "a.com"}, 2, "render"},
		{"bad render", cliSecretA, []string{"vault", "put", "stripe", "--host", "a.com", "--render", "cookie"}, 2, "want bearer"},
		{"bad host", cliSecretA, []string{"vault", "put", "stripe", "--host", "https://a.com", "--render", "bearer"}, 2, "DNS name"},
		{"unset env", "", append(append([]string{}, put...), "--from-env", "STACK_TEST_UNSET_VAR"), 2, "not set"},
		{"control character", cliSecretA + "\nX-Evil: 1\n", put, 2, "control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := tr.run(t, home, tt.stdin, tt.code, tt.args...)
			if !strings.Contains(out, tt.say) {
				t.Fatalf("output %q does not say %q", out, tt.say)
			}
		})
	}
	tr.run(t, home, cliSecretA, 0, put...)
	out := tr.run(t, home, cliSecretB, 1, put...)
	if !strings.Contains(out, "already exists") {
		t.Fatalf("second put said %q", out)
	}
	wantStored(t, home, "local://"+filepath.Join(home, "kms.key"), "stripe", cliSecretA)
	tr.wantNoSecrets(t, home)
}

func TestVaultCheckFailsOnDamage(t *testing.T) {
	home := initHome(t)
	var tr transcript
	tr.run(t, home, cliSecretA, 0, "vault", "put", "stripe", "--host", "api.stripe.com", "--render", "bearer")
	tr.run(t, home, cliSecretB, 0, "vault", "put", "github", "--host", "api.github.com", "--render", "bearer")

	db, err := bolt.Open(filepath.Join(home, "vault.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("credentials"))
		raw := bytes.Clone(b.Get([]byte("stripe")))
		return b.Put([]byte("stripe"), raw[:len(raw)/2])
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	out := tr.run(t, home, "", 1, "vault", "check")
	if !strings.Contains(out, "FAIL  stripe") || !strings.Contains(out, "corrupt record") || !strings.Contains(out, "ok    github") {
		t.Fatalf("check said %q", out)
	}
	if !strings.Contains(out, "1 of 3 record(s) failed") {
		t.Fatalf("check summary missing: %q", out)
	}
	tr.run(t, home, "", 1, "vault", "list")
	tr.run(t, home, "", 0, "vault", "rm", "stripe")
	tr.run(t, home, "", 0, "vault", "check")
	tr.wantNoSecrets(t, home)
}

func TestVaultHelpHasExamples(t *testing.T) {
	home := initHome(t)
	for _, sub := range []string{"put", "list", "rm", "rotate", "rewrap", "check"} {
		code, out, _ := runStack(t, home, "", "vault", sub, "--help")
		if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "stack vault "+sub) {
			t.Errorf("vault %s --help: exit %d, no example:\n%s", sub, code, out)
		}
	}
}
