package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/proxy/ca"
)

// startControl runs `stack control` in-process on an ephemeral port and
// returns its URL; it is stopped (and must exit cleanly) at the end of
// the test.
func startControl(t *testing.T, home string) string {
	t.Helper()
	var info controlRunInfo
	startServer(t, home, controlRunFile, []string{"control", "--listen", "127.0.0.1:0"},
		func(b []byte) bool { return json.Unmarshal(b, &info) == nil && info.URL != "" })
	return info.URL
}

func mustRun(t *testing.T, home, stdin string, args ...string) string {
	t.Helper()
	code, out, errs := runStack(t, home, stdin, args...)
	if code != 0 {
		t.Fatalf("stack %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func scrape(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func readyz(t *testing.T, admin string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The whole fleet workflow through the CLI: a control plane, an agent, a
// credential, a join token, a sidecar that joins, status, a revocation.
func TestControlPlaneCLI(t *testing.T) {
	ctl := filepath.Join(t.TempDir(), "ctl")
	out := mustRun(t, ctl, "", "init", "--control")
	for _, f := range []string{controlCACertFile, "control.token"} {
		if !strings.Contains(out, filepath.Join(ctl, f)) {
			t.Errorf("init --control did not mention %s:\n%s", f, out)
		}
	}
	if _, err := os.Stat(filepath.Join(ctl, controlCAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(ctl, "control.token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("operator token: %v %v", fi, err)
	}
	// Without a control plane the fleet commands say what is missing.
	if code, _, errs := runStack(t, ctl, "", "agent", "list"); code != 1 || !strings.Contains(errs, "control.url") {
		t.Fatalf("agent list without a control plane: %d %s", code, errs)
	}
	url := startControl(t, ctl)
	if code, _, errs := runStack(t, ctl, "", "control", "--listen", "127.0.0.1:0"); code != 1 || !strings.Contains(errs, "held by another process") {
		t.Fatalf("a second control plane on the same data directory: %d %s", code, errs)
	}

	mustRun(t, ctl, "", "agent", "register", "bot", "--grant", "host=api.example.test,methods=GET,credentials=example", "--ttl", "5m", "--label", "team=pay")
	if code, _, errs := runStack(t, ctl, "", "agent", "register", "bot", "--role", "billing-reporter"); code != 1 || !strings.Contains(errs, "already") {
		t.Fatalf("registering twice: %d %s", code, errs)
	}
	if code, _, errs := runStack(t, ctl, "", "agent", "register", "x", "--role", "no-such-role"); code != 2 || !strings.Contains(errs, "no role") {
		t.Fatalf("unknown role: %d %s", code, errs)
	}
	if out := mustRun(t, ctl, "", "agent", "list"); !strings.Contains(out, "bot") || !strings.Contains(out, "team=pay") {
		t.Fatalf("agent list:\n%s", out)
	}
	var ag control.Agent
	if err := json.Unmarshal([]byte(mustRun(t, ctl, "", "agent", "show", "bot")), &ag); err != nil || len(ag.Scope) != 1 {
		t.Fatalf("agent show: %+v %v", ag, err)
	}
	// The running control plane owns the vault: the CLI goes through it.
	mustRun(t, ctl, "sk_live_cli_secret_value", "vault", "put", "example", "--host", "api.example.test", "--render", "bearer")
	// A minting kind's parameters travel through the control plane's API.
	mustRun(t, ctl, "Zq7rV2mXk9LpT4sWc8Hn", "vault", "put", "orders", "--kind", "oauth2-client-credentials", "--host", "api.orders.test",
		"--token-url", "https://auth.orders.test/oauth/token", "--client-id", "stack", "--scope", "orders.read")
	if out := mustRun(t, ctl, "", "vault", "list"); !strings.Contains(out, "example") || !strings.Contains(out, "oauth2-client-credentials  issuer  api.orders.test") {
		t.Fatalf("vault list:\n%s", out)
	}
	token := strings.TrimSpace(mustRun(t, ctl, "", "control", "join-token", "--agent", "bot"))
	if !strings.HasPrefix(token, "stkj_") || strings.Contains(token, "\n") {
		t.Fatalf("join-token printed %q", token)
	}
	caFile := filepath.Join(t.TempDir(), "control-ca.pem")
	if err := os.WriteFile(caFile, []byte(mustRun(t, ctl, "", "control", "ca", "export")), 0o644); err != nil {
		t.Fatal(err)
	}

	sc := initHome(t)
	// Listed first, a replica that is down: the sidecar joins through the
	// next one.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "https://" + l.Addr().String()
	l.Close()
	info := startSidecar(t, sc, "--control", down+","+url, "--control-ca", caFile, "--join-token", token)
	if st, body := readyz(t, info.Admin); st != http.StatusOK || !strings.Contains(body, "control: agent bot") || !strings.Contains(body, "connected to "+url) {
		t.Fatalf("readyz of a joined sidecar: %d %s", st, body)
	}
	if m := scrape(t, info.Admin); !strings.Contains(m, "\nstack_control_replica_moves_total 1\n") || !strings.Contains(m, "\nstack_credential_leases 1\n") {
		t.Fatalf("metrics of a sidecar that moved past a replica, holding one lease:\n%s", m)
	}
	if out := mustRun(t, ctl, "", "control", "status"); !strings.Contains(out, "1 sidecars") || !strings.Contains(out, "bot") {
		t.Fatalf("status:\n%s", out)
	}
	// An operator's machine needs no data directory: the URL, the token
	// and the CA are enough.
	// With replicas listed, the CLI goes to the first that answers.
	t.Setenv("STACK_CONTROL_URL", down+","+url)
	t.Setenv("STACK_CONTROL_TOKEN_FILE", filepath.Join(ctl, "control.token"))
	t.Setenv("STACK_CONTROL_CA", caFile)
	if out := mustRun(t, filepath.Join(t.TempDir(), "nothing-here"), "", "agent", "list"); !strings.Contains(out, "bot") {
		t.Fatalf("agent list from an operator's machine:\n%s", out)
	}
	os.Unsetenv("STACK_CONTROL_URL")
	os.Unsetenv("STACK_CONTROL_TOKEN_FILE")
	os.Unsetenv("STACK_CONTROL_CA")

	// The sidecar's directory has no operator token: fleet commands from
	// there say so.
	if code, _, errs := runStack(t, sc, "", "agent", "list", "--log-level", "error"); code == 0 {
		t.Fatalf("agent list from the sidecar's home: %d %s", code, errs)
	}

	// A key rotated while the control plane runs is served at once, and an
	// agent that presents a passport of its own (a multi-agent sidecar) is
	// verified against the control plane's keys, the new one fetched when
	// first met.
	if out := mustRun(t, ctl, "", "passport", "rotate-key"); !strings.Contains(out, "control plane reloaded") {
		t.Fatalf("rotate-key with a running control plane:\n%s", out)
	}
	other := strings.TrimSpace(mustRun(t, ctl, "", "passport", "issue", "--agent", "helper", "--grant", "host=api.example.test,methods=GET"))
	if got := proxyReason(t, info.Listen, "Bearer "+other); got == "passport_invalid" || got == "passport_missing" {
		t.Fatalf("a control-plane passport presented to a joined sidecar: %s", got)
	}
	forged := strings.TrimSpace(mustRun(t, initHome(t), "", "passport", "issue", "--agent", "helper", "--grant", "host=api.example.test,methods=GET"))
	if got := proxyReason(t, info.Listen, "Bearer "+forged); got != "passport_invalid" {
		t.Fatalf("a passport from another issuer: %s", got)
	}

	if out := mustRun(t, ctl, "", "passport", "revoke", "--agent", "bot", "--reason", "test"); !strings.Contains(out, "every sidecar") {
		t.Fatalf("revoke:\n%s", out)
	}
	if out := mustRun(t, ctl, "", "agent", "list"); !strings.Contains(out, "disabled") {
		t.Fatalf("revoked agent not disabled:\n%s", out)
	}
	// The control plane's audit log, read while it holds the file.
	if out := mustRun(t, ctl, "", "audit", "tail", "-n", "50"); !strings.Contains(out, "credential_leased") || !strings.Contains(out, "passport_revoked") {
		t.Fatalf("control plane audit:\n%s", out)
	}
	mustRun(t, ctl, "", "audit", "verify")
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, body := readyz(t, info.Admin)
		if st == http.StatusServiceUnavailable && strings.Contains(body, "revoked: agent bot") {
			// The lease went with the revocation, not later.
			if m := scrape(t, info.Admin); !strings.Contains(m, "\nstack_credential_leases 0\n") {
				t.Fatalf("a revoked sidecar still holds leases:\n%s", m)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar did not hear of the revocation: %d %s", st, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestControlConfigErrors(t *testing.T) {
	home := initHome(t)
	for _, tc := range []struct {
		env, want string
	}{
		{"STACK_CONTROL_URL=http://x:1", "control.url"},
		{"STACK_CONTROL_MAX_STALENESS=-1s", "control.max_staleness"},
		{"STACK_CONTROL_STORE=etcd", "control.store"},
		{"STACK_CONTROL_HEARTBEAT=1ms", "control.heartbeat"},
	} {
		k, v, _ := strings.Cut(tc.env, "=")
		t.Setenv(k, v)
		code, _, errs := runStack(t, home, "", "config", "check")
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d, %s", tc.env, code, errs)
		}
		os.Unsetenv(k)
	}
	cfg := filepath.Join(home, "stack.yaml")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(b), "  oidc_issuers: []", "  oidc_issuers:\n    - issuer: https://k8s.example\n      rules:\n        - agent: bot", 1)
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runStack(t, home, "", "config", "check"); code != 2 || !strings.Contains(errs, "control.oidc_issuers[0].rules[0].claims") {
		t.Fatalf("a rule without claims: %d %s", code, errs)
	}
}

// proxyReason sends a plain HTTP request through the proxy with the
// given Proxy-Authorization and returns the refusal's reason, if any.
func proxyReason(t *testing.T, listen, auth string) string {
	t.Helper()
	return proxyReasonFor(t, listen, "http://api.example.test/v1/x", auth)
}

// proxyReasonFor is proxyReason for a request to target.
func proxyReasonFor(t *testing.T, listen, target, auth string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Proxy-Authorization", auth)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: func(*http.Request) (*url.URL, error) {
		return url.Parse("http://" + listen)
	}}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get("X-Stack-Reason")
}

// A certificate of one's own (--tls-cert, --tls-key) replaces the one
// made from the control CA; clients trust its issuer through control.ca.
func TestControlOwnCertificate(t *testing.T) {
	ctl := filepath.Join(t.TempDir(), "ctl")
	mustRun(t, ctl, "", "init", "--control")
	authority, err := ca.Generate(time.Now(), "my company's CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := authority.Leaf("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		data []byte
	}{
		{certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]})},
		{keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})},
		{caFile, authority.CertPEM()},
	} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var info controlRunInfo
	startServer(t, ctl, controlRunFile, []string{"control", "--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile},
		func(b []byte) bool { return json.Unmarshal(b, &info) == nil && info.URL != "" })
	t.Setenv("STACK_CONTROL_URL", info.URL)
	t.Setenv("STACK_CONTROL_CA", caFile)
	mustRun(t, ctl, "", "agent", "register", "bot", "--role", "billing-reporter")
	// The control CA of the data directory does not verify it.
	t.Setenv("STACK_CONTROL_CA", filepath.Join(ctl, controlCACertFile))
	if code, _, errs := runStack(t, ctl, "", "agent", "list"); code != 1 || !strings.Contains(errs, "certificate") {
		t.Fatalf("with the wrong CA: %d %s", code, errs)
	}
}
