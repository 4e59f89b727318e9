package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/stackctl/stack/control"
)

// adminReload asks the sidecar to reload and returns the status and body.
func adminReload(t *testing.T, home, admin string) (int, string) {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(home, adminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+admin+"/v1/reload", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// copyDir copies the regular files of src into a new directory dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			if err := os.WriteFile(filepath.Join(dst, e.Name()), readFile(t, filepath.Join(src, e.Name())), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// revokeOnDrift is a stack.yaml that changes the detector policy: a call
// outside the passport's scope is blocked and the passport revoked,
// instead of refused as out of scope.
const revokeOnDrift = "detect:\n  scope_drift:\n    mode: revoke\n"

// A reload that fails at any step leaves everything as it was: the
// detector policy of the same stack.yaml is not applied, and neither are
// the issuer keys. A reload that succeeds applies both, without opening
// the KMS again.
func TestReloadFailureKeepsRunningState(t *testing.T) {
	home := initHome(t)
	// rotated is the same data directory after `passport rotate-key`: its
	// issuer-keys.json, wrapped by the same KMS key, is what the sidecar
	// should take on at the next good reload.
	rotated := filepath.Join(t.TempDir(), "rotated")
	copyDir(t, home, rotated)
	mustRun(t, rotated, "", "passport", "rotate-key")
	oldTok := "Bearer " + strings.TrimSpace(mustRun(t, home, "", "passport", "issue", "--agent", "old-key", "--grant", "host=api.example.com,methods=GET"))
	newTok := "Bearer " + strings.TrimSpace(mustRun(t, rotated, "", "passport", "issue", "--agent", "new-key", "--grant", "host=api.example.com,methods=GET"))

	info := startSidecar(t, home)
	keysPath := filepath.Join(home, "issuer-keys.json")
	oldKeys, newKeys := readFile(t, keysPath), readFile(t, filepath.Join(rotated, "issuer-keys.json"))
	cfgPath := filepath.Join(home, "stack.yaml")
	oldCfg := readFile(t, cfgPath)

	unchanged := func(t *testing.T) {
		t.Helper()
		if got := proxyReason(t, info.Listen, oldTok); got != "scope_denied" {
			t.Errorf("passport of the running key, out of scope: %q, want scope_denied (the old detector policy)", got)
		}
		if got := proxyReason(t, info.Listen, newTok); got != "passport_invalid" {
			t.Errorf("passport of the rotated key: %q, want passport_invalid (the old keys)", got)
		}
	}
	unchanged(t)

	for _, tc := range []struct {
		name string
		// cfg is stack.yaml for the reload: the new policy, at least.
		cfg string
		// keys is issuer-keys.json for the reload.
		keys []byte
		// wantErr is in the error the reload answers.
		wantErr string
	}{
		{
			name:    "invalid stack.yaml",
			cfg:     revokeOnDrift + "log:\n  level: loudest\n",
			keys:    newKeys,
			wantErr: "log.level",
		},
		{
			name:    "issuer keys unreadable",
			cfg:     revokeOnDrift,
			keys:    []byte(`{"version": 1, "keys": [`),
			wantErr: "issuer keys",
		},
		{
			// The same key under another name: the old build opened it
			// and carried on with a KMS the vault and CA do not use.
			name:    "kms.uri changed",
			cfg:     revokeOnDrift + "kms:\n  uri: local://" + filepath.Join(rotated, "kms.key") + "\n",
			keys:    newKeys,
			wantErr: "restart",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, cfgPath, tc.cfg)
			writeFile(t, keysPath, string(tc.keys))
			t.Cleanup(func() {
				writeFile(t, cfgPath, string(oldCfg))
				writeFile(t, keysPath, string(oldKeys))
			})
			code, body := adminReload(t, home, info.Admin)
			if code == http.StatusOK || !strings.Contains(body, tc.wantErr) {
				t.Errorf("reload: %d %s; want a failure naming %q", code, body, tc.wantErr)
			}
			unchanged(t)
		})
	}

	// The KMS was opened at start; a reload does not open it again, so
	// its key file is not read.
	kmsKey := filepath.Join(home, "kms.key")
	if err := os.Rename(kmsKey, kmsKey+".away"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Rename(kmsKey+".away", kmsKey) })
	writeFile(t, cfgPath, revokeOnDrift)
	writeFile(t, keysPath, string(newKeys))
	if code, body := adminReload(t, home, info.Admin); code != http.StatusOK {
		t.Fatalf("good reload: %d %s", code, body)
	}
	if got := proxyReason(t, info.Listen, newTok); got != "detector_blocked" {
		t.Errorf("after a good reload, passport of the rotated key out of scope: %q, want detector_blocked", got)
	}
	if got := proxyReason(t, info.Listen, oldTok); got != "detector_blocked" {
		t.Errorf("after a good reload, passport of the previous key (still published) out of scope: %q, want detector_blocked", got)
	}
}

// catchSIGHUP is this test binary's own SIGHUP handler, for the test's
// length: a SIGHUP that arrives when no server has one registered must not
// end the tests.
func catchSIGHUP(t *testing.T) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	t.Cleanup(func() { signal.Stop(hup) })
}

// reloadConcurrently sends this process SIGHUP six times while calling
// reload six times, all at once, and fails the test for any reload that
// is not 200.
func reloadConcurrently(t *testing.T, reload func() (int, string)) {
	t.Helper()
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if code, body := reload(); code != http.StatusOK {
				t.Errorf("reload: %d %s", code, body)
			}
		})
	}
	wg.Wait()
}

// SIGHUP and POST /v1/reload at once: every reload succeeds, the race
// detector finds nothing, and the policy is in force after.
func TestConcurrentReloads(t *testing.T) {
	catchSIGHUP(t)

	home := initHome(t)
	info := startSidecar(t, home)
	tok := "Bearer " + strings.TrimSpace(mustRun(t, home, "", "passport", "issue", "--agent", "drifter", "--grant", "host=api.example.com,methods=GET"))
	writeFile(t, filepath.Join(home, "stack.yaml"), revokeOnDrift)

	reloadConcurrently(t, func() (int, string) { return adminReload(t, home, info.Admin) })
	if got := proxyReason(t, info.Listen, tok); got != "detector_blocked" {
		t.Errorf("after the reloads, out of scope: %q, want detector_blocked", got)
	}
}

// The control plane's reload (SIGHUP, POST /v1/reload) serves the keys of
// the last good read, one reload at a time, through the KMS opened at
// start; a reload that fails keeps the keys in force.
func TestControlReload(t *testing.T) {
	catchSIGHUP(t)

	ctl := filepath.Join(t.TempDir(), "ctl")
	mustRun(t, ctl, "", "init", "--control")
	rotated := filepath.Join(t.TempDir(), "rotated")
	copyDir(t, ctl, rotated)
	mustRun(t, rotated, "", "passport", "rotate-key")
	url := startControl(t, ctl)

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(readFile(t, filepath.Join(ctl, controlCACertFile))) {
		t.Fatal("no control CA")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(client.CloseIdleConnections)
	operator := strings.TrimSpace(string(readFile(t, filepath.Join(ctl, "control.token"))))
	reload := func() (int, string) {
		req, _ := http.NewRequest(http.MethodPost, url+control.PathReload, nil)
		req.Header.Set("Authorization", "Bearer "+operator)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	kids := func() []string {
		resp, err := client.Get(url + control.PathJWKS)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var set jose.JSONWebKeySet
		if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range set.Keys {
			out = append(out, k.KeyID)
		}
		slices.Sort(out)
		return out
	}
	before := kids()

	keysPath := filepath.Join(ctl, "issuer-keys.json")
	writeFile(t, keysPath, `{"version": 1, "keys": [`)
	if code, body := reload(); code == http.StatusOK || !strings.Contains(body, "issuer keys") {
		t.Errorf("reload of a broken key file: %d %s; want a failure naming the issuer keys", code, body)
	}
	if got := kids(); !slices.Equal(got, before) {
		t.Errorf("after a failed reload the JWKS holds %v, want %v", got, before)
	}

	kmsKey := filepath.Join(ctl, "kms.key")
	if err := os.Rename(kmsKey, kmsKey+".away"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Rename(kmsKey+".away", kmsKey) })
	writeFile(t, keysPath, string(readFile(t, filepath.Join(rotated, "issuer-keys.json"))))
	reloadConcurrently(t, reload)
	if got := kids(); len(got) != len(before)+1 {
		t.Errorf("after the reloads the JWKS holds %v, want the rotated key beside %v", got, before)
	}
}
