package main

import (
	"encoding/json"
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
