package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stackctl/stack/vault"
)

// listCredential returns one credential as `vault list --json` shows it.
func listCredential(t *testing.T, tr *transcript, home, name string) vault.Credential {
	t.Helper()
	out := tr.run(t, home, "", 0, "vault", "list", "--json")
	var creds []vault.Credential
	if err := json.Unmarshal([]byte(out), &creds); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	for _, c := range creds {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no credential %s in %s", name, out)
	return vault.Credential{}
}

// A name already in the vault: an error that says what to do, --if-absent
// (for init containers that run again) leaves it, --update replaces it.
func TestVaultPutExistingName(t *testing.T) {
	home := initHome(t)
	kmsURI := "local://" + filepath.Join(home, "kms.key")
	var tr transcript
	put := []string{"vault", "put", "stripe", "--host", "api.stripe.com", "--render", "bearer"}
	tr.run(t, home, cliSecretA, 0, put...)
	before := listCredential(t, &tr, home, "stripe")

	code, out, errs := runStack(t, home, cliSecretB, put...)
	tr.WriteString(out + errs)
	if code != exitFailure || !strings.Contains(errs, "already exists") || !strings.Contains(errs, "--update") || !strings.Contains(errs, "--if-absent") {
		t.Errorf("put on an existing name: exit %d, stderr %q; want 1 naming --update and --if-absent", code, errs)
	}

	code, out, errs = runStack(t, home, cliSecretB, append(put, "--if-absent")...)
	tr.WriteString(out + errs)
	if code != 0 || out != "" || !strings.Contains(errs, "stripe already exists") {
		t.Errorf("--if-absent: exit %d, stdout %q, stderr %q; want 0, nothing, and a note on stderr", code, out, errs)
	}
	if got := listCredential(t, &tr, home, "stripe"); got.Version != before.Version || got.Fingerprint != before.Fingerprint {
		t.Errorf("--if-absent changed the credential: %+v, was %+v", got, before)
	}
	wantStored(t, home, kmsURI, "stripe", cliSecretA)

	out = tr.run(t, home, cliSecretB, 0, "vault", "put", "stripe", "--host", "api.stripe.com", "--host", "files.stripe.com",
		"--render", "header:Authorization=Bearer {secret}", "--update")
	if !strings.Contains(out, "stripe version 2") {
		t.Errorf("--update said %q", out)
	}
	got := listCredential(t, &tr, home, "stripe")
	if got.Version != 2 || strings.Join(got.Hosts, ",") != "api.stripe.com,files.stripe.com" ||
		got.Render.String() != "header:Authorization=Bearer {secret}" || got.Fingerprint == before.Fingerprint {
		t.Errorf("after --update: %+v", got)
	}
	wantStored(t, home, kmsURI, "stripe", cliSecretB)

	// --update stores a name not yet in the vault; --if-absent too.
	tr.run(t, home, cliSecretA, 0, "vault", "put", "github", "--host", "api.github.com", "--render", "bearer", "--update")
	tr.run(t, home, cliSecretA, 0, "vault", "put", "openai", "--host", "api.openai.com", "--render", "bearer", "--if-absent")
	wantStored(t, home, kmsURI, "github", cliSecretA)
	wantStored(t, home, kmsURI, "openai", cliSecretA)

	tr.run(t, home, cliSecretA, 2, append(put, "--update", "--if-absent")...)
	tr.wantNoSecrets(t, home)
}

// While a sidecar runs, put goes through its admin API: --if-absent and
// --update work there too, and what the API cannot do is refused plainly.
func TestVaultPutExistingNameThroughSidecar(t *testing.T) {
	home := initHome(t)
	startSidecar(t, home)
	var tr transcript
	put := []string{"vault", "put", "stripe", "--host", "api.stripe.com", "--render", "bearer"}
	tr.run(t, home, cliSecretA, 0, put...)
	tr.run(t, home, cliSecretB, 1, put...)

	out := tr.run(t, home, cliSecretB, 0, append(put, "--if-absent")...)
	if !strings.Contains(out, "stripe already exists") {
		t.Errorf("--if-absent said %q", out)
	}
	if got := listCredential(t, &tr, home, "stripe"); got.Version != 1 {
		t.Errorf("--if-absent changed the credential: %+v", got)
	}

	out = tr.run(t, home, cliSecretB, 0, append(put, "--update")...)
	if !strings.Contains(out, "stripe version 2") {
		t.Errorf("--update said %q", out)
	}
	if got := listCredential(t, &tr, home, "stripe"); got.Version != 2 {
		t.Errorf("--update through the sidecar: %+v", got)
	}

	tr.run(t, home, cliSecretA, 0, "vault", "put", "stripe", "--host", "api.stripe.com", "--host", "files.stripe.com", "--render", "header:X-Api-Key={secret}", "--update")
	if got := listCredential(t, &tr, home, "stripe"); got.Version != 3 || len(got.Hosts) != 2 || got.Render.String() != "header:X-Api-Key={secret}" {
		t.Errorf("--update of the hosts and render through the sidecar: %+v", got)
	}
	tr.wantNoSecrets(t, home)
}

// vault put --kind stores a minting kind from its flags, with the render
// the kind implies; flags of another kind, missing parameters and a
// static credential without --render are usage errors; vault list shows
// the kind and the minted credential's lifetime.
func TestVaultPutKinds(t *testing.T) {
	home := initHome(t)
	var tr transcript
	tr.run(t, home, "Zq7rV2mXk9LpT4sWc8Hn", 0, "vault", "put", "orders", "--kind", "oauth2-client-credentials", "--host", "api.orders.example",
		"--token-url", "https://auth.orders.example/oauth/token", "--client-id", "stack", "--scope", "orders.read", "--scope", "orders.write")
	c := listCredential(t, &tr, home, "orders")
	if c.Kind != "oauth2-client-credentials" || c.Render.Kind != vault.RenderBearer ||
		!strings.Contains(compactJSON(t, c.Params), `"scopes":["orders.read","orders.write"]`) {
		t.Fatalf("stored %+v params %s", c, c.Params)
	}
	key := filepath.Join(t.TempDir(), "app.pem")
	writeRSAKey(t, key)
	tr.run(t, home, "", 0, "vault", "put", "gh", "--kind", "github-app", "--host", "api.github.com", "--app-id", "12345",
		"--installation-id", "678", "--permission", "contents=read", "--repository", "docs", "--from-file", key)
	if c := listCredential(t, &tr, home, "gh"); c.Kind != "github-app" || !strings.Contains(compactJSON(t, c.Params), `"permissions":{"contents":"read"}`) {
		t.Fatalf("stored %+v params %s", c, c.Params)
	}
	out := tr.run(t, home, "", 0, "vault", "list")
	for _, want := range []string{"KIND", "TTL", "oauth2-client-credentials  issuer", "github-app                 1h0m0s"} {
		if !strings.Contains(out, want) {
			t.Errorf("vault list does not show %q:\n%s", want, out)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--kind", "oauth2-client-credentials", "--host", "a.example", "--role-arn", "arn:aws:iam::1:role/x"}, "--role-arn: not a flag of kind oauth2-client-credentials"},
		{[]string{"--kind", "oauth2-client-credentials", "--host", "a.example", "--client-id", "c"}, "token_url"},
		{[]string{"--kind", "sorcery", "--host", "a.example"}, "--kind \"sorcery\""},
		{[]string{"--host", "a.example"}, "--render is required"},
	} {
		code, _, errs := runStack(t, home, "s3cret", append([]string{"vault", "put", "x"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("vault put %v: exit %d, stderr %q; want 2 saying %q", tc.args, code, errs, tc.want)
		}
	}
}

// writeRSAKey writes a new RSA private key, PKCS#1 PEM, as GitHub hands
// out app keys.
func writeRSAKey(t *testing.T, path string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}
