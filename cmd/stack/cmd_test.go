package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// runStack runs the CLI in-process with STACK_HOME set to home.
func runStack(t *testing.T, home string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"--home", home}, args...)
	code = run(context.Background(), full, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// initHome creates a data directory with `stack init` and returns it.
func initHome(t *testing.T) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "stack")
	if code, out, errs := runStack(t, home, "", "init"); code != 0 {
		t.Fatalf("init exited %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	return home
}

func TestInitCreatesDataDirectory(t *testing.T) {
	home := initHome(t)
	checkMode := func(name string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(filepath.Join(home, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %v, want %v", name, got, want)
		}
	}
	checkMode(".", 0o700)
	checkMode("kms.key", 0o600)
	checkMode("stack.yaml", 0o600)
	checkMode("issuer-keys.json", 0o600)
	key, err := os.ReadFile(filepath.Join(home, "kms.key"))
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 32 {
		t.Errorf("kms.key holds %d bytes, want 32", len(key))
	}
	if bytes.Equal(key, make([]byte, 32)) {
		t.Error("kms.key is all zeros")
	}
	cfg, err := os.ReadFile(filepath.Join(home, "stack.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"listen: \"127.0.0.1:8080\"", "admin_listen:", "billing-reporter", "credential_burst:"} {
		if !bytes.Contains(cfg, []byte(want)) {
			t.Errorf("stack.yaml lacks %q", want)
		}
	}
	if code, out, errs := runStack(t, home, "", "config", "check"); code != 0 || !strings.Contains(out, "configuration ok") {
		t.Errorf("config check on the written file: exit %d, %s %s", code, out, errs)
	}
}

func TestInitTwiceKeepsKeys(t *testing.T) {
	home := initHome(t)
	names := []string{"kms.key", "issuer-keys.json", "stack.yaml"}
	before := map[string][]byte{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(home, n))
		if err != nil {
			t.Fatal(err)
		}
		before[n] = b
	}
	code, out, errs := runStack(t, home, "", "init")
	if code != 0 {
		t.Fatalf("second init exited %d: %s", code, errs)
	}
	for _, n := range names {
		after, err := os.ReadFile(filepath.Join(home, n))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before[n], after) {
			t.Errorf("second init changed %s", n)
		}
		if !strings.Contains(out, "kept     "+filepath.Join(home, n)) {
			t.Errorf("second init does not say %s was kept:\n%s", n, out)
		}
	}
}

func TestInitDirFlag(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"init", "--dir", dir}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("init --dir exited %d: %s", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "kms.key")); err != nil {
		t.Errorf("init --dir did not create the key there: %v", err)
	}
}

func TestHomeFromEnvironment(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "envhome")
	t.Setenv("STACK_HOME", dir)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"init"}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("init exited %d: %s", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "stack.yaml")); err != nil {
		t.Errorf("STACK_HOME not honoured: %v", err)
	}
}

func TestExitStatuses(t *testing.T) {
	home := initHome(t)
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		says string
	}{
		{"unknown command", nil, []string{"frobnicate"}, 2, "unknown command"},
		{"unknown flag", nil, []string{"init", "--nope"}, 2, "unknown flag"},
		{"bad config value", map[string]string{"STACK_PROXY_LISTEN": "nope"}, []string{"config", "check"}, 2, "proxy.listen"},
		{"bad config value names its variable", map[string]string{"STACK_PROXY_MAX_CONNECTIONS": "lots"}, []string{"config", "check"}, 2, "environment variable STACK_PROXY_MAX_CONNECTIONS"},
		{"bad log level flag", nil, []string{"--log-level", "loud", "config", "check"}, 2, "log.level"},
		{"help", nil, []string{"init", "--help"}, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, out, errs := runStack(t, home, "", tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			if tc.says != "" && !strings.Contains(errs, tc.says) {
				t.Errorf("stderr does not mention %q: %s", tc.says, errs)
			}
		})
	}
}

// Every runnable command explains itself with a short line and an example.
func TestEveryCommandHasHelpWithExample(t *testing.T) {
	a := newApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	var check func(c *cobra.Command)
	check = func(c *cobra.Command) {
		if c.Short == "" {
			t.Errorf("%q has no short description", c.CommandPath())
		}
		if c.Runnable() && c.Example == "" {
			t.Errorf("%q has no example in --help", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			check(sub)
		}
	}
	check(newRootCmd(a))
}

// One-shot commands print their result and nothing else, so that
// $(stack passport issue ...) holds the token alone even where stderr is
// captured too (a terminal, `docker compose run`). --log-level brings the
// logs back; log.level (file or STACK_LOG_LEVEL) is the sidecar's level.
func TestCommandsPrintOnlyTheirResult(t *testing.T) {
	home := initHome(t)
	t.Setenv("STACK_LOG_LEVEL", "debug") // as a compose file may set for the sidecar
	args := []string{"passport", "issue", "--agent", "billing-bot", "--role", "billing-reporter"}
	code, out, errs := runStack(t, home, "", args...)
	if code != 0 {
		t.Fatalf("passport issue: exit %d\nstderr: %s", code, errs)
	}
	if tok := strings.TrimSuffix(out, "\n"); strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, "\n {") {
		t.Errorf("stdout is not the token alone: %q", out)
	}
	if errs != "" {
		t.Errorf("passport issue wrote to stderr: %q", errs)
	}
	code, _, errs = runStack(t, home, "sk_test_x\n", "vault", "put", "stripe", "--host", "api.stripe.com", "--render", "bearer")
	if code != 0 || errs != "" {
		t.Errorf("vault put: exit %d, stderr %q; want 0 and nothing", code, errs)
	}

	code, _, errs = runStack(t, home, "", append([]string{"--log-level", "info"}, args...)...)
	if code != 0 || !strings.Contains(errs, "passport issued") {
		t.Errorf("--log-level info: exit %d, stderr %q; want the log line", code, errs)
	}

	// The sidecar, a server, logs at log.level.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var perr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--home", home, "proxy", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"},
			strings.NewReader(""), &bytes.Buffer{}, &perr)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(perr.String(), "stack proxy ready") {
		select {
		case code := <-done:
			t.Fatalf("proxy exited %d: %s", code, perr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no \"stack proxy ready\" log line from the sidecar after 20s: %q", perr.String())
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("proxy exited %d: %s", code, perr.String())
	}
}

// Every command that needs what `stack init` makes says so, and exits 1,
// in a data directory init has not made (missing, or empty).
func TestUninitialisedHomeSaysRunInit(t *testing.T) {
	tests := [][]string{
		{"vault", "list"},
		{"vault", "list", "--json"},
		{"vault", "check"},
		{"vault", "put", "stripe", "--host", "api.stripe.com", "--render", "bearer"},
		{"vault", "rotate", "stripe"},
		{"vault", "rm", "stripe"},
		{"proxy", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"},
		{"ca", "export"},
		{"passport", "issue", "--agent", "a", "--role", "billing-reporter"},
		{"passport", "verify", "a.b.c"},
		{"passport", "jwks"},
		{"passport", "revoke", "--agent", "a"},
		{"passport", "rotate-key"},
		{"audit", "verify"},
		{"audit", "tail"},
		{"audit", "export"},
		{"audit", "timeline", "--agent", "a"},
		{"audit", "prune", "--before", "1h"},
	}
	for _, kind := range []string{"missing", "empty"} {
		home := filepath.Join(t.TempDir(), "stack")
		if kind == "empty" {
			if err := os.Mkdir(home, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		for _, args := range tests {
			t.Run(kind+"/"+strings.Join(args[:2], " "), func(t *testing.T) {
				code, out, errs := runStack(t, home, "sk_test_x\n", args...)
				if code != exitFailure || !strings.Contains(errs, "run `stack init`") {
					t.Errorf("exit %d, want %d with the hint to run `stack init`\nstdout: %s\nstderr: %s", code, exitFailure, out, errs)
				}
			})
		}
		if kind == "missing" {
			if _, err := os.Stat(home); !os.IsNotExist(err) {
				t.Errorf("commands in a missing data directory created it: %v", err)
			}
		}
	}
	// What needs no data directory still works without one.
	home := filepath.Join(t.TempDir(), "none")
	for _, args := range [][]string{{"config", "check"}, {"config", "show"}, {"detect", "scan", "-"}} {
		if code, out, errs := runStack(t, home, "hello\n", args...); code != 0 {
			t.Errorf("%v without a data directory: exit %d\n%s%s", args, code, out, errs)
		}
	}
}

// An empty or damaged ca.pem is an error, not an empty certificate for
// agents to trust.
func TestCAExportRefusesEmptyCertificate(t *testing.T) {
	home := initHome(t)
	code, out, errs := runStack(t, home, "", "ca", "export")
	if code != 0 || !strings.HasPrefix(out, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("ca export: exit %d\n%s%s", code, out, errs)
	}
	for name, body := range map[string]string{"empty": "", "not PEM": "hello\n", "a key, not a certificate": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(home, "ca.pem"), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errs := runStack(t, home, "", "ca", "export")
			if code != exitFailure || out != "" || !strings.Contains(errs, "no PEM certificate") {
				t.Errorf("exit %d, want %d and an error\nstdout: %q\nstderr: %s", code, exitFailure, out, errs)
			}
		})
	}
}
