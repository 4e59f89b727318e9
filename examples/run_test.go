package examples

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stackctl/stack/proxy/ca"
)

// The hosts the example agents call. The proxy pins both to loopback
// (--resolve), where the test's upstream plays the two APIs.
const (
	stripeHost = "api.stripe.com"
	openaiHost = "api.openai.com"
	agentID    = "example-agent"
)

// The example agent's passport: each API's read and write calls the agents
// make, each with its own credential.
var grants = []string{
	"host=" + stripeHost + ",methods=GET|POST,paths=/v1/balance|/v1/charges,credentials=stripe",
	"host=" + openaiHost + ",methods=GET|POST,paths=/v1/models|/v1/chat/completions,credentials=openai",
}

// Bounds on everything that waits, so a broken proxy or agent fails the
// test instead of hanging it.
const (
	commandTimeout = 30 * time.Second
	startTimeout   = 15 * time.Second
	stopTimeout    = 20 * time.Second
)

// Binaries TestMain builds: the stack CLI and the Go example agent.
var stackBin, goAgentBin string

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run() // the test skips itself; nothing to build
	}
	dir, err := os.MkdirTemp("", "stack-examples-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "examples:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "examples:", err)
		return 1
	}
	// A cold build of every dependency takes minutes on a small machine.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// The Go agent is built once here rather than with `go run` per case:
	// the same code, without paying for a link on every run.
	for _, b := range []struct {
		out *string
		pkg string
	}{{&stackBin, "./cmd/stack"}, {&goAgentBin, "./examples/agents/go"}} {
		bin := filepath.Join(dir, filepath.Base(b.pkg))
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, b.pkg)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "examples: go build %s: %v\n%s", b.pkg, err, out)
			return 1
		}
		*b.out = bin
	}
	return m.Run()
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside the module")
	}
	return filepath.Dir(gomod), nil
}

// Every example agent, in each of its two ways of presenting the passport,
// gets its work done through `stack proxy`: the upstream receives the real
// secrets, the agent holds and sees only placeholders, and the audit log
// of it all verifies.
func TestAgentsThroughSidecar(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the proxy and agent processes; skipped in -short mode")
	}
	e := newEnv(t)
	token := e.issue(t)
	e.startProxy(t)

	agents := []struct {
		name string
		// need skips (or, under CI, fails) when the agent's runtime is
		// missing.
		need func(t *testing.T)
		// cmd is the agent's command line; env its API settings.
		cmd  []string
		env  []string
		host string
		// want are lines the agent must print; the echoed placeholder in
		// them shows the proxy scrubbed the secret from the response.
		want []string
	}{
		{
			name: "go-stripe",
			need: func(*testing.T) {},
			cmd:  []string{goAgentBin},
			env: []string{
				"SSL_CERT_FILE=" + e.caFile,
				"STRIPE_API_KEY=stk_ph_stripe",
				"STRIPE_API_BASE=" + e.up.base(stripeHost),
			},
			host: stripeHost,
			want: []string{"balance: 1250 available in 1 currencies", "charge: ch_example_1 2000 usd succeeded (key=Bearer stk_ph_stripe)"},
		},
		{
			name: "python-requests",
			need: needPython,
			cmd:  []string{"python3", filepath.Join("agents", "python", "agent.py")},
			env: []string{
				"REQUESTS_CA_BUNDLE=" + e.caFile,
				"STRIPE_API_KEY=stk_ph_stripe",
				"STRIPE_API_BASE=" + e.up.base(stripeHost),
			},
			host: stripeHost,
			want: []string{"balance: 1250 available in 1 currencies", "charges: 1 recent ch_example_1"},
		},
		{
			name: "node-openai",
			need: needNode,
			cmd:  []string{"node", filepath.Join("agents", "node", "agent.mjs")},
			env: []string{
				"NODE_EXTRA_CA_CERTS=" + e.caFile,
				"OPENAI_API_KEY=stk_ph_openai",
				"OPENAI_BASE_URL=" + e.up.base(openaiHost) + "/v1",
			},
			host: openaiHost,
			want: []string{"models: 1 (gpt-example)", "chat: gpt-example: hello; key=Bearer stk_ph_openai"},
		},
	}
	passports := []struct {
		name string
		env  func() []string
	}{
		{"userinfo", func() []string {
			u := url.URL{Scheme: "http", User: url.UserPassword(agentID, token), Host: e.proxy.listen}
			return []string{"HTTPS_PROXY=" + u.String()}
		}},
		{"bearer", func() []string {
			return []string{"HTTPS_PROXY=http://" + e.proxy.listen, "STACK_PASSPORT=" + token}
		}},
	}
	for _, a := range agents {
		for _, p := range passports {
			t.Run(a.name+"/"+p.name, func(t *testing.T) {
				a.need(t)
				from := e.up.count()
				environ := childEnv(append(p.env(), a.env...)...)
				res := e.run(t, environ, a.cmd[0], a.cmd[1:]...)
				out := res.stdout + res.stderr
				if res.code != 0 {
					t.Fatalf("%s exited %d\nstdout: %s\nstderr: %s\nproxy log:\n%s", a.name, res.code, res.stdout, res.stderr, e.proxy.log())
				}
				for _, s := range e.secrets {
					if strings.Contains(out, s) {
						t.Errorf("the agent's output contains a real secret:\n%s", out)
					}
				}
				for _, w := range a.want {
					if !strings.Contains(res.stdout, w) {
						t.Errorf("the agent's output lacks %q:\n%s", w, res.stdout)
					}
				}
				got := e.up.since(from)
				if len(got) != 2 {
					t.Fatalf("upstream received %d requests from the agent, want 2: %+v", len(got), got)
				}
				for _, r := range got {
					if r.host != a.host {
						t.Errorf("upstream request %s %s for host %q, want %s", r.method, r.path, r.host, a.host)
					}
					if !r.realSecret {
						t.Errorf("upstream request %s %s did not carry the real secret", r.method, r.path)
					}
				}
			})
		}
	}

	// Everything above is in an audit log that verifies once the proxy
	// has stopped.
	e.stopProxy(t)
	if res := e.stack(t, "audit", "verify"); res.code != 0 {
		t.Errorf("stack audit verify: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if log := e.proxy.log(); containsAny(log, e.secrets) {
		t.Error("the proxy's log contains a real secret")
	}
}

func containsAny(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// needPython skips without python3 and requests, except under CI.
func needPython(t *testing.T) {
	t.Helper()
	if err := exec.Command("python3", "-c", "import requests").Run(); err != nil {
		missing(t, "python3 with requests is not available: "+err.Error())
	}
}

// needNode skips without node or the agent's node_modules, except under CI.
func needNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		missing(t, "node is not on PATH")
	}
	for _, m := range []string{"openai", "undici"} {
		if _, err := os.Stat(filepath.Join("agents", "node", "node_modules", m)); err != nil {
			missing(t, m+" is not installed: run npm install --prefix examples/agents/node")
		}
	}
}

func missing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// childEnv is this process's environment without the proxy, CA, API and
// STACK_* settings that would change what is tested, plus extra.
func childEnv(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
			"SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "NODE_OPTIONS":
			continue
		}
		if strings.HasPrefix(k, "STACK_") || strings.HasPrefix(k, "STRIPE_") || strings.HasPrefix(k, "OPENAI_") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// env is one data directory, its upstream and its proxy.
type env struct {
	dir, home string
	caFile    string // the proxy's CA, as `stack ca export` prints it
	upCAFile  string // the upstream's CA, given to the proxy
	// secrets are the real keys in the vault, by credential name; no agent
	// may ever see one.
	secret  map[string]string
	secrets []string
	up      *upstream
	proxy   *proxyProc
}

// newEnv runs `stack init`, stores both credentials and exports the CA.
func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{
		dir:      dir,
		home:     filepath.Join(dir, "home"),
		caFile:   filepath.Join(dir, "stack-ca.pem"),
		upCAFile: filepath.Join(dir, "upstream-ca.pem"),
		secret: map[string]string{
			"stripe": "sk_test_example_" + randomHex(t, 16),
			"openai": "sk-example-" + randomHex(t, 16),
		},
	}
	e.secrets = []string{e.secret["stripe"], e.secret["openai"]}
	e.up = startUpstream(t, map[string]string{stripeHost: e.secret["stripe"], openaiHost: e.secret["openai"]})
	if err := os.WriteFile(e.upCAFile, e.up.ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustStack(t, "", "init")
	e.mustStack(t, e.secret["stripe"], "vault", "put", "stripe", "--host", stripeHost, "--render", "bearer")
	e.mustStack(t, e.secret["openai"], "vault", "put", "openai", "--host", openaiHost, "--render", "bearer")
	pem := e.mustStack(t, "", "ca", "export")
	if !strings.Contains(pem, "BEGIN CERTIFICATE") {
		t.Fatalf("stack ca export printed no certificate: %q", pem)
	}
	if err := os.WriteFile(e.caFile, []byte(pem), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// issue signs the example agent's passport with `stack passport issue`.
func (e *env) issue(t *testing.T) string {
	t.Helper()
	args := []string{"passport", "issue", "--agent", agentID}
	for _, g := range grants {
		args = append(args, "--grant", g)
	}
	tok := strings.TrimSpace(e.mustStack(t, "", args...))
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("passport issue printed %d bytes, not a compact JWS", len(tok))
	}
	return tok
}

type cmdResult struct {
	stdout, stderr string
	code           int
}

// run runs a command in the examples directory with a bounded wait; a
// non-zero exit is returned, not failed on.
func (e *env) run(t *testing.T, environ []string, name string, args ...string) cmdResult {
	return e.runIn(t, "", environ, name, args...)
}

func (e *env) runIn(t *testing.T, stdin string, environ []string, name string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = environ
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cmdResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s: no exit within %s\nstdout: %s\nstderr: %s", name, commandTimeout, res.stdout, res.stderr)
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

// stack runs the stack binary against the data directory.
func (e *env) stack(t *testing.T, args ...string) cmdResult {
	t.Helper()
	return e.runIn(t, "", childEnv(), stackBin, append([]string{"--home", e.home}, args...)...)
}

// mustStack runs stack with stdin and fails the test unless it exits 0; it
// returns stdout.
func (e *env) mustStack(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	r := e.runIn(t, stdin, childEnv(), stackBin, append([]string{"--home", e.home}, args...)...)
	if r.code != 0 {
		t.Fatalf("stack %s: exit %d\nstdout: %s\nstderr: %s", args[0], r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// proxyProc is a running `stack proxy`.
type proxyProc struct {
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	logPath  string
	listen   string // from DATA-DIR/proxy.json
	stopOnce sync.Once
}

func (p *proxyProc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// startProxy starts `stack proxy` on ephemeral loopback ports, as the
// examples' docs describe, and waits (bounded) for its run file.
func (e *env) startProxy(t *testing.T) {
	t.Helper()
	args := []string{
		"--home", e.home, "proxy",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--allow-cidr", "127.0.0.1/32",
		"--resolve", stripeHost + "=127.0.0.1",
		"--resolve", openaiHost + "=127.0.0.1",
		"--upstream-ca", e.upCAFile,
	}
	p := &proxyProc{done: make(chan struct{}), logPath: filepath.Join(e.dir, "proxy.log")}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(stackBin, args...)
	p.cmd.Env = childEnv()
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	e.proxy = p
	t.Cleanup(func() { e.stopProxy(t) })

	runFile := filepath.Join(e.home, "proxy.json")
	deadline := time.After(startTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			t.Fatalf("stack proxy exited during start-up: %v\n%s", p.waitErr, p.log())
		case <-deadline:
			t.Fatalf("stack proxy wrote no %s within %s\n%s", runFile, startTimeout, p.log())
		case <-tick.C:
		}
		b, err := os.ReadFile(runFile)
		if err != nil {
			continue
		}
		var info struct {
			PID    int    `json:"pid"`
			Listen string `json:"listen"`
		}
		if json.Unmarshal(b, &info) != nil || info.PID != p.cmd.Process.Pid {
			continue // partly written, or left by an earlier process
		}
		p.listen = info.Listen
		return
	}
}

// stopProxy sends SIGTERM and waits (bounded) for a clean exit. It is
// idempotent.
func (e *env) stopProxy(t *testing.T) {
	t.Helper()
	p := e.proxy
	if p == nil {
		return
	}
	p.stopOnce.Do(func() {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("SIGTERM: %v", err)
		}
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			p.cmd.Process.Kill()
			<-p.done
			t.Errorf("stack proxy did not exit within %s of SIGTERM\n%s", stopTimeout, p.log())
			return
		}
		if p.waitErr != nil {
			t.Errorf("stack proxy exit after SIGTERM: %v (want status 0)\n%s", p.waitErr, p.log())
		}
	})
}

// seen is one request the upstream received.
type seen struct {
	host, method, path string
	// realSecret is whether the Authorization header carried exactly the
	// host's real secret.
	realSecret bool
}

// upstream is a real TLS server playing the Stripe and OpenAI APIs, with
// certificates minted per SNI by its own CA. It answers only requests
// that carry the real secret of the host they are for.
type upstream struct {
	srv     *httptest.Server
	port    string
	ca      *ca.CA
	secrets map[string]string // host -> real secret

	mu   sync.Mutex
	seen []seen
}

func startUpstream(t *testing.T, secrets map[string]string) *upstream {
	t.Helper()
	authority, err := ca.Generate(time.Now(), "example upstream CA")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{ca: authority, secrets: secrets}
	leaves := ca.NewLeafCache(ca.CacheOptions{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	srv.TLS = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			host := hello.ServerName
			if _, ok := secrets[host]; !ok {
				return nil, fmt.Errorf("no certificate for %q", host)
			}
			return leaves.Fetch(host, func() (*tls.Certificate, error) { return authority.Leaf(host) })
		},
	}
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, u.port, _ = net.SplitHostPort(srv.Listener.Addr().String())
	u.srv = srv
	return u
}

// base is the API base URL of host on the upstream's port.
func (u *upstream) base(host string) string {
	return "https://" + net.JoinHostPort(host, u.port)
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

func (u *upstream) since(from int) []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.seen[from:]...)
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	auth := r.Header.Get("Authorization")
	secret, known := u.secrets[host]
	real := known && auth == "Bearer "+secret
	u.mu.Lock()
	u.seen = append(u.seen, seen{host: host, method: r.Method, path: r.URL.Path, realSecret: real})
	u.mu.Unlock()
	if !real {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"type": "invalid_request_error", "message": "Invalid API key provided."}})
		return
	}
	// Answers echo the Authorization header as a careless API might: the
	// proxy must turn the secret back into the placeholder before the
	// agent sees it.
	key := "key=" + auth
	switch {
	case host == stripeHost && r.Method == http.MethodGet && r.URL.Path == "/v1/balance":
		writeJSON(w, http.StatusOK, map[string]any{
			"object": "balance", "livemode": false,
			"available": []any{map[string]any{"amount": 1250, "currency": "usd"}},
			"pending":   []any{},
		})
	case host == stripeHost && r.Method == http.MethodPost && r.URL.Path == "/v1/charges":
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		amount, _ := strconv.ParseInt(r.PostForm.Get("amount"), 10, 64)
		writeJSON(w, http.StatusOK, map[string]any{
			"id": "ch_example_1", "object": "charge", "amount": amount,
			"currency": r.PostForm.Get("currency"), "status": "succeeded",
			"paid": true, "livemode": false, "description": key,
		})
	case host == stripeHost && r.Method == http.MethodGet && r.URL.Path == "/v1/charges":
		writeJSON(w, http.StatusOK, map[string]any{
			"object": "list", "url": "/v1/charges", "has_more": false,
			"data": []any{map[string]any{"id": "ch_example_1", "object": "charge", "amount": 2000, "currency": "usd", "description": key}},
		})
	case host == openaiHost && r.Method == http.MethodGet && r.URL.Path == "/v1/models":
		writeJSON(w, http.StatusOK, map[string]any{
			"object": "list",
			"data":   []any{map[string]any{"id": "gpt-example", "object": "model", "created": 1764072000, "owned_by": "stack"}},
		})
	case host == openaiHost && r.Method == http.MethodPost && r.URL.Path == "/v1/chat/completions":
		var req struct {
			Model string `json:"model"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model == "" {
			http.Error(w, "bad chat request", http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id": "chatcmpl-example", "object": "chat.completion", "created": 1764072000, "model": "gpt-example",
			"choices": []any{map[string]any{
				"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": "hello; " + key},
			}},
			"usage": map[string]any{"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
		})
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"type": "invalid_request_error", "message": "Unrecognized request URL."}})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
