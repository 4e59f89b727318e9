package main

import (
	"bytes"
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

// etcdControlHome makes a control plane's data directory whose state
// lives in the etcd at endpoint.
func etcdControlHome(t *testing.T, endpoint string) string {
	t.Helper()
	ctl := filepath.Join(t.TempDir(), "ctl")
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
	ctl := etcdControlHome(t, endpoint)
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
}
