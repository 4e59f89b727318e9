package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	passportpkg "github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/vault/kms"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

// homeWithCredentials is an initialized data directory holding two
// credentials, with a passport issued under its issuer key.
func homeWithCredentials(t *testing.T, tr *transcript) (home, passport string) {
	t.Helper()
	home = initHome(t)
	tr.run(t, home, cliSecretA, 0, "vault", "put", "stripe", "--host", "api.stripe.com", "--render", "bearer")
	tr.run(t, home, cliSecretB, 0, "vault", "put", "github", "--host", "api.github.com", "--render", "bearer")
	return home, issuePassport(t, home, "bot")
}

// issuePassport issues a passport and returns it (stdout only: stderr may
// carry log lines).
func issuePassport(t *testing.T, home, agent string) string {
	t.Helper()
	code, out, errs := runStack(t, home, "", "passport", "issue", "--agent", agent, "--role", "billing-reporter")
	if code != 0 {
		t.Fatalf("passport issue exited %d: %s", code, errs)
	}
	return strings.TrimSpace(out)
}

// dirState is every file in the data directory and a hash of its content.
func dirState(t *testing.T, home string) map[string][32]byte {
	t.Helper()
	entries, err := os.ReadDir(home)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][32]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(home, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = sha256.Sum256(b)
	}
	return out
}

func wantDirState(t *testing.T, home string, want map[string][32]byte) {
	t.Helper()
	got := dirState(t, home)
	for name := range want {
		if _, ok := got[name]; !ok {
			t.Errorf("%s is gone", name)
		} else if got[name] != want[name] {
			t.Errorf("%s changed", name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s was left behind", name)
		}
	}
}

// wantWorking checks what a user does next: the vault checks out under
// the configured KMS, the old passport verifies, a new one can be issued
// and the sidecar starts (and runs until the test ends).
func wantWorking(t *testing.T, tr *transcript, home, kmsURI, oldPassport string) {
	t.Helper()
	if out := tr.run(t, home, "", 0, "vault", "check"); !strings.Contains(out, "2 credential(s) ok under "+kmsURI) {
		t.Fatalf("vault check said %q", out)
	}
	tr.run(t, home, "", 0, "passport", "verify", oldPassport)
	tr.run(t, home, "", 0, "passport", "verify", issuePassport(t, home, "bot2"))
	info := startSidecar(t, home)
	// The run file appears just before the sidecar says it is ready.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + info.Admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar /readyz = %d after 10s", resp.StatusCode)
		}
	}
}

// wantConfigChangedOnlyAt checks that stack.yaml kept every line but the
// one holding kms.uri.
func wantConfigChangedOnlyAt(t *testing.T, before, after []byte, uri string) {
	t.Helper()
	bl, al := strings.Split(string(before), "\n"), strings.Split(string(after), "\n")
	if len(bl) != len(al) {
		t.Fatalf("stack.yaml went from %d to %d lines", len(bl), len(al))
	}
	changed := 0
	for i := range bl {
		if bl[i] == al[i] {
			continue
		}
		changed++
		if al[i] != fmt.Sprintf("  uri: %q", uri) {
			t.Errorf("stack.yaml line %d became %q", i+1, al[i])
		}
	}
	if changed != 1 {
		t.Errorf("%d lines of stack.yaml changed, want 1", changed)
	}
}

// The whole data directory moves to AWS KMS (moto) in one command, and
// works without the local key afterwards.
func TestRewrapLocalToAWSMovesEverything(t *testing.T) {
	ep := kmstest.StartMoto(t)
	kmstest.SetAWSEnv(t, ep)
	kmstest.CreateAWSAlias(t, ep, "alias/stack-rewrap", kmstest.CreateAWSKey(t, ep))
	const awsURI = "awskms://alias/stack-rewrap"
	var tr transcript
	home, passport := homeWithCredentials(t, &tr)
	listBefore := tr.run(t, home, "", 0, "vault", "list", "--json")
	cfgBefore, _ := os.ReadFile(filepath.Join(home, "stack.yaml"))

	out := tr.run(t, home, "", 0, "vault", "rewrap", "--to", awsURI)
	for _, want := range []string{"2 credential(s)", "issuer-keys.json", "ca-key.json", "stack.yaml"} {
		if !strings.Contains(out, want) {
			t.Errorf("rewrap does not mention %q:\n%s", want, out)
		}
	}
	cfgAfter, _ := os.ReadFile(filepath.Join(home, "stack.yaml"))
	wantConfigChangedOnlyAt(t, cfgBefore, cfgAfter, awsURI)
	for _, f := range []struct{ name, field string }{{"issuer-keys.json", `"wrapper": "` + awsURI}, {"ca-key.json", `"kms_uri": "` + awsURI}} {
		if b, _ := os.ReadFile(filepath.Join(home, f.name)); !strings.Contains(string(b), f.field) {
			t.Errorf("%s is not wrapped under %s:\n%s", f.name, awsURI, b)
		}
	}

	// Nothing needs the old key any more.
	if err := os.Remove(filepath.Join(home, "kms.key")); err != nil {
		t.Fatal(err)
	}
	wantStored(t, home, awsURI, "stripe", cliSecretA)
	wantStored(t, home, awsURI, "github", cliSecretB)
	if listAfter := tr.run(t, home, "", 0, "vault", "list", "--json"); listAfter != listBefore {
		t.Fatalf("rewrap changed the listing:\n%s\n%s", listBefore, listAfter)
	}
	wantWorking(t, &tr, home, awsURI, passport)
	tr.wantNoSecrets(t, home)
}

// A move to a new local key file creates it, and the old one can go.
func TestRewrapLocalToLocal(t *testing.T) {
	var tr transcript
	home, passport := homeWithCredentials(t, &tr)
	cfgBefore, _ := os.ReadFile(filepath.Join(home, "stack.yaml"))
	// A control plane's home also holds the fleet log's key.
	k, err := kms.Open(context.Background(), "local://kms.key", kms.Options{BaseDir: home})
	if err != nil {
		t.Fatal(err)
	}
	fks, err := passportpkg.GenerateKeySet(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := fks.Save(context.Background(), filepath.Join(home, fleetKeysFile), k); err != nil {
		t.Fatal(err)
	}
	k.Close()
	fleetKey := tr.run(t, home, "", 0, "control", "fleet-key")

	out := tr.run(t, home, "", 0, "vault", "rewrap", "--to", "local://kms-2.key")
	if !strings.Contains(out, "fleet audit log key") {
		t.Errorf("rewrap does not list the fleet log's key:\n%s", out)
	}
	newKey := filepath.Join(home, "kms-2.key")
	if !strings.Contains(out, "created "+newKey) {
		t.Errorf("rewrap does not say it created the key:\n%s", out)
	}
	if fi, err := os.Stat(newKey); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Fatalf("new key: %v, %v", fi, err)
	}
	cfgAfter, _ := os.ReadFile(filepath.Join(home, "stack.yaml"))
	wantConfigChangedOnlyAt(t, cfgBefore, cfgAfter, "local://kms-2.key")
	if err := os.Remove(filepath.Join(home, "kms.key")); err != nil {
		t.Fatal(err)
	}
	wantStored(t, home, "local://"+newKey, "stripe", cliSecretA)
	wantWorking(t, &tr, home, "local://"+newKey, passport)
	if got := tr.run(t, home, "", 0, "control", "fleet-key"); got != fleetKey {
		t.Errorf("the fleet key after the move: %q, before %q", got, fleetKey)
	}
	tr.wantNoSecrets(t, home)
}

// kmsThatDies forwards the first n requests to the KMS at endpoint and
// then goes down: later connections are closed unanswered, as when the
// KMS's host dies. calls counts the requests it received.
func kmsThatDies(t *testing.T, endpoint string, n int64) (url string, calls *atomic.Int64) {
	t.Helper()
	u, err := neturl.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	fwd := httputil.NewSingleHostReverseProxy(u)
	calls = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= n {
			fwd.ServeHTTP(w, r)
			return
		}
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, calls
}

// When the new KMS dies partway, at any point, nothing changes: the data
// directory is byte for byte what it was and works under the old key.
func TestRewrapTargetDiesPartway(t *testing.T) {
	ep := kmstest.StartMoto(t)
	kmstest.SetAWSEnv(t, ep)
	awsURI := "awskms://" + kmstest.CreateAWSKey(t, ep)
	// One attempt per call: the failure shows at once instead of after
	// the SDK's retries.
	t.Setenv("AWS_MAX_ATTEMPTS", "1")

	// Count the calls a whole move makes to the new KMS...
	var tr transcript
	home, _ := homeWithCredentials(t, &tr)
	url, calls := kmsThatDies(t, ep, math.MaxInt64)
	t.Setenv("AWS_ENDPOINT_URL_KMS", url)
	tr.run(t, home, "", 0, "vault", "rewrap", "--to", awsURI)
	total := calls.Load()
	if total < 10 {
		// Two data keys and the salt, the issuer key, the CA key: each
		// wrapped and unwrapped back.
		t.Fatalf("a move made %d calls to the new KMS, want at least 10", total)
	}
	// ... and let it die before each one.
	for n := range total {
		t.Run(fmt.Sprintf("after %d calls", n), func(t *testing.T) {
			var tr transcript
			home, passport := homeWithCredentials(t, &tr)
			localURI := "local://" + filepath.Join(home, "kms.key")
			before := dirState(t, home)

			url, _ := kmsThatDies(t, ep, n)
			t.Setenv("AWS_ENDPOINT_URL_KMS", url)
			out := tr.run(t, home, "", 1, "vault", "rewrap", "--to", awsURI)
			if !strings.Contains(out, "nothing was changed") || !strings.Contains(out, "kms unavailable") {
				t.Errorf("rewrap said %q", out)
			}
			wantDirState(t, home, before)
			wantWorking(t, &tr, home, localURI, passport)
			tr.wantNoSecrets(t, home)
		})
	}
}

// A move killed while switching files leaves some new and some old: every
// command then refuses to run, naming the fix, and running the move again
// finishes it.
func TestRewrapInterruptedWhileSwitching(t *testing.T) {
	for i, name := range []string{"vault.db", "issuer-keys.json", "ca-key.json", "stack.yaml"} {
		t.Run("before "+name, func(t *testing.T) {
			var tr transcript
			home, passport := homeWithCredentials(t, &tr)
			crash := errors.New("killed")
			switched := 0
			rewrapFailpoint = func(path string) error {
				if switched == i {
					return crash
				}
				switched++
				return nil
			}
			t.Cleanup(func() { rewrapFailpoint = nil })
			out := tr.run(t, home, "", 1, "vault", "rewrap", "--to", "local://kms-2.key")
			if !strings.Contains(out, "decided but was not finished") || !strings.Contains(out, "killed") {
				t.Fatalf("interrupted rewrap said %q", out)
			}
			rewrapFailpoint = nil

			fix := "run `stack vault rewrap --to local://kms-2.key` to finish it"
			for _, args := range [][]string{
				{"vault", "check"},
				{"vault", "list"},
				{"passport", "issue", "--agent", "bot", "--role", "billing-reporter"},
				{"proxy", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"},
			} {
				if out := tr.run(t, home, "", 1, args...); !strings.Contains(out, fix) {
					t.Errorf("%v during an interrupted move said %q", args, out)
				}
			}

			out = tr.run(t, home, "", 0, "vault", "rewrap", "--to", "local://kms-2.key")
			if !strings.Contains(out, "finished the interrupted move") {
				t.Fatalf("second rewrap said %q", out)
			}
			if _, err := os.Stat(filepath.Join(home, rewrapJournalFile)); !os.IsNotExist(err) {
				t.Fatalf("journal left behind: %v", err)
			}
			if err := os.Remove(filepath.Join(home, "kms.key")); err != nil {
				t.Fatal(err)
			}
			wantWorking(t, &tr, home, "local://"+filepath.Join(home, "kms-2.key"), passport)
		})
	}
}

// Finishing a pending move to one key while asked for another finishes it
// and says the second move still has to be run.
func TestRewrapFinishesPendingBeforeAnother(t *testing.T) {
	var tr transcript
	home, _ := homeWithCredentials(t, &tr)
	rewrapFailpoint = func(string) error { return errors.New("killed") }
	t.Cleanup(func() { rewrapFailpoint = nil })
	tr.run(t, home, "", 1, "vault", "rewrap", "--to", "local://kms-2.key")
	rewrapFailpoint = nil
	out := tr.run(t, home, "", 1, "vault", "rewrap", "--to", "local://kms-3.key")
	if !strings.Contains(out, "finished the interrupted move") || !strings.Contains(out, "run the command again to move to local://kms-3.key") {
		t.Fatalf("rewrap said %q", out)
	}
	if _, err := os.Stat(filepath.Join(home, "kms-3.key")); !os.IsNotExist(err) {
		t.Errorf("the second move began: %v", err)
	}
	tr.run(t, home, "", 0, "vault", "check")
}

func TestRewrapRefusesWhileSidecarRuns(t *testing.T) {
	var tr transcript
	home, _ := homeWithCredentials(t, &tr)
	startSidecar(t, home)
	before := dirState(t, home)
	out := tr.run(t, home, "", 1, "vault", "rewrap", "--to", "local://kms-2.key")
	if !strings.Contains(out, "stop it (SIGTERM)") {
		t.Fatalf("rewrap with a sidecar running said %q", out)
	}
	wantDirState(t, home, before)
	tr.run(t, home, "", 0, "vault", "check")
}

// STACK_KMS_URI overrides the kms.uri the move writes: the move goes
// ahead from the key it names, and says the variable must change too.
func TestRewrapReportsEnvironmentOverride(t *testing.T) {
	var tr transcript
	home, _ := homeWithCredentials(t, &tr)
	t.Setenv("STACK_KMS_URI", "local://"+filepath.Join(home, "kms.key"))
	_, out, errs := runStack(t, home, "", "vault", "rewrap", "--to", "local://kms-2.key")
	if !strings.Contains(errs, "STACK_KMS_URI=local://"+filepath.Join(home, "kms.key")+" overrides kms.uri: set it to local://kms-2.key") {
		t.Fatalf("rewrap under STACK_KMS_URI: stdout %q stderr %q", out, errs)
	}
	t.Setenv("STACK_KMS_URI", "")
	tr.run(t, home, "", 0, "vault", "check")
}

// With no stack.yaml (everything at its defaults), the move writes one
// holding kms.uri.
func TestRewrapWithoutConfigFile(t *testing.T) {
	var tr transcript
	home, passport := homeWithCredentials(t, &tr)
	if err := os.Remove(filepath.Join(home, "stack.yaml")); err != nil {
		t.Fatal(err)
	}
	tr.run(t, home, "", 0, "vault", "rewrap", "--to", "local://kms-2.key")
	if b, _ := os.ReadFile(filepath.Join(home, "stack.yaml")); string(b) != "kms:\n  uri: \"local://kms-2.key\"\n" {
		t.Fatalf("stack.yaml = %q", b)
	}
	wantWorking(t, &tr, home, "local://"+filepath.Join(home, "kms-2.key"), passport)
}

func TestRewrapUsage(t *testing.T) {
	home := initHome(t)
	var tr transcript
	tr.run(t, home, "", 2, "vault", "rewrap")
	out := tr.run(t, home, "", 2, "vault", "rewrap", "--to", "vault://x")
	if !strings.Contains(out, "local://") {
		t.Fatalf("unknown scheme said %q", out)
	}
	for _, same := range []string{"local://kms.key", "local://" + filepath.Join(home, "kms.key")} {
		if out := tr.run(t, home, "", 2, "vault", "rewrap", "--to", same); !strings.Contains(out, "already in use") {
			t.Errorf("--to %s said %q", same, out)
		}
	}
	if _, err := os.Stat(filepath.Join(home, "vault.db")); !os.IsNotExist(err) {
		t.Errorf("a refused rewrap created the vault: %v", err)
	}
}

// A file the old key cannot unwrap stops the move before anything
// changes, and a key file made for it is removed again.
func TestRewrapDamagedFileChangesNothing(t *testing.T) {
	var tr transcript
	home, _ := homeWithCredentials(t, &tr)
	keys := filepath.Join(home, "issuer-keys.json")
	raw, err := os.ReadFile(keys)
	if err != nil {
		t.Fatal(err)
	}
	// Flip one bit of the wrapped seed: the old key refuses to unwrap it.
	var f struct {
		Keys []map[string]any `json:"keys"`
	}
	var all map[string]any
	if json.Unmarshal(raw, &f) != nil || json.Unmarshal(raw, &all) != nil || len(f.Keys) == 0 {
		t.Fatalf("issuer-keys.json: %s", raw)
	}
	seed, err := base64.RawURLEncoding.DecodeString(f.Keys[0]["wrapped_seed"].(string))
	if err != nil {
		t.Fatal(err)
	}
	seed[len(seed)/2] ^= 1
	f.Keys[0]["wrapped_seed"] = base64.RawURLEncoding.EncodeToString(seed)
	all["keys"] = f.Keys
	damaged, _ := json.Marshal(all)
	if err := os.WriteFile(keys, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	before := dirState(t, home)
	out := tr.run(t, home, "", 1, "vault", "rewrap", "--to", "local://kms-2.key")
	if !strings.Contains(out, "nothing was changed") || !strings.Contains(out, "issuer keys") {
		t.Fatalf("rewrap over damaged issuer keys said %q", out)
	}
	wantDirState(t, home, before)
	tr.run(t, home, "", 0, "vault", "check")
}
