package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/stackctl/stack/config"
	"github.com/stackctl/stack/vault"
)

// TestControlVaultOnEtcd: `stack control --store etcd` imports the vault
// file it finds into etcd, keeps credentials put through it there, never
// in plaintext, and the vault commands work through it.
func TestControlVaultOnEtcd(t *testing.T) {
	const first, second = "sk_live_imported_from_the_file", "sk_live_put_through_the_control_plane"
	endpoint := startEtcd(t)
	ctl := filepath.Join(t.TempDir(), "ctl")
	mustRun(t, ctl, "", "init", "--control")
	// Before the move to etcd: a credential in vault.db.
	mustRun(t, ctl, first, "vault", "put", "imported", "--host", "api.example.test", "--render", "bearer")
	cfgFile := filepath.Join(ctl, config.FileName)
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	const unset = "    endpoints: []\n"
	if !strings.Contains(string(b), unset) {
		t.Fatalf("config.yaml has no %q to set", unset)
	}
	b = []byte(strings.Replace(string(b), unset, "    endpoints: ["+endpoint+"]\n", 1))
	// In the file, as operators set it, so that every command knows.
	b = []byte(strings.Replace(string(b), "  store: bbolt\n", "  store: etcd\n", 1))
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}

	var info controlRunInfo
	startServer(t, ctl, controlRunFile, []string{"control", "--listen", "127.0.0.1:0"},
		func(b []byte) bool { return json.Unmarshal(b, &info) == nil && info.URL != "" })
	mustRun(t, ctl, second, "vault", "put", "added", "--host", "api.example.test", "--render", "bearer")
	var creds []*vault.Credential
	if err := json.Unmarshal([]byte(mustRun(t, ctl, "", "vault", "list", "--json")), &creds); err != nil {
		t.Fatal(err)
	}
	if len(creds) != 2 || creds[0].Name != "added" || creds[1].Name != "imported" {
		t.Fatalf("vault list through the control plane: %+v", creds)
	}
	if out := mustRun(t, ctl, "", "vault", "check"); !strings.Contains(out, "2 credential(s) ok") {
		t.Fatalf("vault check through the control plane:\n%s", out)
	}
	if code, _, errs := runStack(t, ctl, "", "vault", "rewrap", "--to", "local://other.key"); code == 0 || !strings.Contains(errs, "etcd") {
		t.Fatalf("vault rewrap with the vault in etcd: exit %d, %s", code, errs)
	}

	client, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	resp, err := client.Get(t.Context(), "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	records := map[string]bool{}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Value), first) || strings.Contains(string(kv.Value), second) {
			t.Fatalf("etcd holds a plaintext secret under %s", kv.Key)
		}
		if name, ok := strings.CutPrefix(string(kv.Key), config.DefaultEtcdPrefix+vault.StorePrefix+"records/"); ok {
			records[name] = true
		}
	}
	if !records["imported"] || !records["added"] {
		t.Fatalf("records in etcd: %v, want imported and added", records)
	}
}
