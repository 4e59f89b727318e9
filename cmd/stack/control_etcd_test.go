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
	"github.com/stackctl/stack/internal/etcdtest"
)

// startEtcd runs a one-member etcd cluster in the test and returns its
// client URL; it stops when the test ends.
func startEtcd(t *testing.T) string { return etcdtest.Start(t, 1)[0] }

// TestControlOnEtcd runs `stack control` with its state in etcd and checks
// that what the CLI does through it lands there, under the prefix.
func TestControlOnEtcd(t *testing.T) {
	endpoint := startEtcd(t)
	ctl := filepath.Join(t.TempDir(), "ctl")
	mustRun(t, ctl, "", "init", "--control")
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
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}

	var info controlRunInfo
	startServer(t, ctl, controlRunFile, []string{"control", "--listen", "127.0.0.1:0", "--store", "etcd"},
		func(b []byte) bool { return json.Unmarshal(b, &info) == nil && info.URL != "" })
	mustRun(t, ctl, "", "agent", "register", "bot", "--grant", "host=api.example.test,methods=GET,credentials=example")
	if out := mustRun(t, ctl, "", "agent", "list"); !strings.Contains(out, "bot") {
		t.Fatalf("agent list:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(ctl, "control.db")); !os.IsNotExist(err) {
		t.Errorf("control.db exists beside the etcd store: %v", err)
	}

	client, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	resp, err := client.Get(t.Context(), "/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var agent bool
	for _, kv := range resp.Kvs {
		if !strings.HasPrefix(string(kv.Key), config.DefaultEtcdPrefix) {
			t.Errorf("key %q outside the prefix %s", kv.Key, config.DefaultEtcdPrefix)
		}
		agent = agent || strings.Contains(string(kv.Key), "bot")
	}
	if !agent {
		t.Fatalf("no key of agent bot in etcd; keys: %d", len(resp.Kvs))
	}
}
