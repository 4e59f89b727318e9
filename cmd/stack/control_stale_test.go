package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/config"
	"github.com/stackctl/stack/internal/faultproxy"
)

// TestControlStopsServingWhenCutOffFromEtcd runs `stack control` on etcd
// through a fault proxy with control.store_timeout set, cuts the link and
// checks that /readyz turns to 503 naming the stale store, then back to
// 200 once the link heals.
func TestControlStopsServingWhenCutOffFromEtcd(t *testing.T) {
	endpoint := startEtcd(t)
	proxy, err := faultproxy.New(strings.TrimPrefix(endpoint, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	ctl := filepath.Join(t.TempDir(), "ctl")
	mustRun(t, ctl, "", "init", "--control")
	cfgFile := filepath.Join(ctl, config.FileName)
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for old, repl := range map[string]string{
		"    endpoints: []\n":   "    endpoints: [http://" + proxy.Addr() + "]\n",
		"  store_timeout: 3s\n": "  store_timeout: 1s\n",
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("config.yaml has no %q to set", old)
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var info controlRunInfo
	startServer(t, ctl, controlRunFile, []string{"control", "--listen", "127.0.0.1:0", "--store", "etcd"},
		func(b []byte) bool { return json.Unmarshal(b, &info) == nil && info.URL != "" })
	// The run file is gone once the control plane stops; heal first so
	// that it stops as it would in production.
	t.Cleanup(proxy.Heal)

	caPEM, err := os.ReadFile(filepath.Join(ctl, controlCACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	readyz := func() (int, string) {
		resp, err := client.Get(info.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitReadyz := func(want int, saying, what string) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			st, body := readyz()
			if st == want && strings.Contains(body, saying) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz still %d %q after a minute, want %s", st, body, what)
			}
		}
	}

	waitReadyz(http.StatusOK, "ready", "ready")
	proxy.Partition()
	waitReadyz(http.StatusServiceUnavailable, "store stale", "503 naming the stale store while cut off")
	proxy.Heal()
	waitReadyz(http.StatusOK, "ready", "ready once healed")
}
