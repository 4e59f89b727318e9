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

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/stackctl/stack/config"
	"github.com/stackctl/stack/control"
)

// waitForServer is how long a server command may take to listen: far
// more than it needs, for a loaded machine.
const waitForServer = 30 * time.Second

// etcdControlHome makes a control plane's data directory whose state
// lives in the etcd at endpoint. With peer set it shares peer's local KMS
// key, as replicas share their KMS, and has issuer keys of its own.
func etcdControlHome(t *testing.T, endpoint, peer string) string {
	t.Helper()
	ctl := filepath.Join(t.TempDir(), "ctl")
	if peer != "" {
		key, err := os.ReadFile(filepath.Join(peer, "kms.key"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(ctl, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ctl, "kms.key"), key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, ctl, "", "init", "--control")
	cfgFile := filepath.Join(ctl, config.FileName)
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	for old, repl := range map[string]string{
		"    endpoints: []\n":                    "    endpoints: [" + endpoint + "]\n",
		"  store: " + config.DefaultControlStore: "  store: etcd",
	} {
		if !strings.Contains(string(b), old) {
			t.Fatalf("%s has no %q to set", config.FileName, old)
		}
		b = []byte(strings.Replace(string(b), old, repl, 1))
	}
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return ctl
}

// storedKeys is the issuer key set stack control keeps in etcd, as the
// key file's JSON.
type storedKeys struct {
	Keys []struct {
		KID         string    `json:"kid"`
		ActiveAt    time.Time `json:"active_at"`
		WrappedSeed string    `json:"wrapped_seed"`
	} `json:"keys"`
}

func readStoredKeys(t *testing.T, endpoint string) storedKeys {
	t.Helper()
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	resp, err := client.Get(t.Context(), config.DefaultEtcdPrefix+control.KeyIssuerKeys)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("no issuer keys at %s%s in etcd", config.DefaultEtcdPrefix, control.KeyIssuerKeys)
	}
	var ks storedKeys
	if err := json.Unmarshal(resp.Kvs[0].Value, &ks); err != nil {
		t.Fatal(err)
	}
	return ks
}

// On etcd, stack control imports its keys file into the store, and
// `stack passport rotate-key` rotates the set there through the control
// plane, leaving the keys file alone.
func TestRotateKeyOnEtcd(t *testing.T) {
	endpoint := startEtcd(t)
	ctl := etcdControlHome(t, endpoint, "")
	keysFile := filepath.Join(ctl, config.DefaultKeysPath)
	before, err := os.ReadFile(keysFile)
	if err != nil {
		t.Fatal(err)
	}
	var info controlRunInfo
	startServer(t, ctl, controlRunFile, []string{"control", "--listen", "127.0.0.1:0"},
		func(b []byte) bool { return json.Unmarshal(b, &info) == nil && info.URL != "" })

	imported := readStoredKeys(t, endpoint)
	if len(imported.Keys) != 1 || !strings.Contains(string(before), imported.Keys[0].KID) {
		t.Fatalf("etcd holds %+v, want the keys file's one key", imported.Keys)
	}

	start := time.Now()
	out := mustRun(t, ctl, "", "passport", "rotate-key")
	end := time.Now()
	rotated := readStoredKeys(t, endpoint)
	if len(rotated.Keys) != 2 || rotated.Keys[0].KID != imported.Keys[0].KID {
		t.Fatalf("after rotate-key etcd holds %+v, want the old key and a new one", rotated.Keys)
	}
	newKey := rotated.Keys[1]
	if !strings.Contains(out, newKey.KID) || !strings.Contains(out, "signing from "+newKey.ActiveAt.UTC().Format(time.RFC3339)) {
		t.Errorf("rotate-key said:\n%s\nwant the new key %s and when it signs", out, newKey.KID)
	}
	if delay := config.DefaultKeyActivationDelay; newKey.ActiveAt.Before(start.Add(delay)) || newKey.ActiveAt.After(end.Add(delay)) {
		t.Errorf("the new key signs from %s, want %s after the rotation (%s to %s)", newKey.ActiveAt, delay, start, end)
	}
	if after, _ := os.ReadFile(keysFile); !bytes.Equal(after, before) {
		t.Error("rotate-key on etcd changed the keys file")
	}
	// The CLI's JWKS is the shared one, pending key included.
	var jwks struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, ctl, "", "passport", "jwks")), &jwks); err != nil {
		t.Fatal(err)
	}
	if len(jwks.Keys) != 2 || jwks.Keys[0].KID != newKey.KID {
		t.Errorf("passport jwks on etcd = %+v, want the new key first and the old one", jwks.Keys)
	}
}

// A replica that did not import its keys file signs its audit
// checkpoints with the shared key: stack audit verify in its data
// directory checks them with that key.
func TestAuditVerifyOnEtcdReplica(t *testing.T) {
	endpoint := startEtcd(t)
	first := etcdControlHome(t, endpoint, "")
	second := etcdControlHome(t, endpoint, first)
	var info controlRunInfo
	startServer(t, first, controlRunFile, []string{"control", "--listen", "127.0.0.1:0"},
		func(b []byte) bool { return json.Unmarshal(b, &info) == nil && info.URL != "" })

	// The second replica runs, records a revocation and stops, signing a
	// checkpoint as it closes its audit log.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var errb syncBuffer
	go func() {
		done <- run(ctx, []string{"--home", second, "control", "--listen", "127.0.0.1:0"}, strings.NewReader(""), &bytes.Buffer{}, &errb)
	}()
	for deadline := time.Now().Add(waitForServer); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(second, controlRunFile)); err == nil && json.Unmarshal(b, &info) == nil && info.URL != "" {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("the second replica exited %d before listening: %s", code, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second replica is not listening after %s: %s", waitForServer, errb.String())
		}
	}
	mustRun(t, second, "", "agent", "register", "bot", "--grant", "host=api.example.test,methods=GET,credentials=example")
	mustRun(t, second, "", "passport", "revoke", "--agent", "bot", "--reason", "test")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("the second replica exited %d: %s", code, errb.String())
	}
	out := mustRun(t, second, "", "audit", "verify")
	if !strings.Contains(out, "checkpoint") {
		t.Fatalf("audit verify checked no checkpoint:\n%s", out)
	}
}
