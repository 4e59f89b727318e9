package examples

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stackctl/stack/internal/stacktest"
	"github.com/stackctl/stack/internal/testenv"
	"go.uber.org/goleak"
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

// Binaries TestMain builds: the stack CLI and the Go example agent.
var stackBin, goAgentBin string

// The Go agent is built once in TestMain rather than with `go run` per
// case: the same code, without paying for a link on every run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(stacktest.BuildFirst(m, "examples", func(ctx context.Context, dir string) (err error) {
		if stackBin, err = stacktest.BuildStack(ctx, dir); err != nil {
			return err
		}
		goAgentBin, err = stacktest.Build(ctx, dir, "./examples/agents/go")
		return err
	}))
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
	proxy := e.startProxy(t)

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
			u := url.URL{Scheme: "http", User: url.UserPassword(agentID, token), Host: proxy.Listen}
			return []string{"HTTPS_PROXY=" + u.String()}
		}},
		{"bearer", func() []string {
			return []string{"HTTPS_PROXY=http://" + proxy.Listen, "STACK_PASSPORT=" + token}
		}},
	}
	for _, a := range agents {
		for _, p := range passports {
			t.Run(a.name+"/"+p.name, func(t *testing.T) {
				a.need(t)
				from := e.up.count()
				res := stacktest.Run(t, stacktest.Command{
					Name: a.cmd[0],
					Args: a.cmd[1:],
					Env:  childEnv(append(p.env(), a.env...)...),
				})
				out := res.Stdout + res.Stderr
				if res.Code != 0 {
					t.Fatalf("%s exited %d\nstdout: %s\nstderr: %s\nproxy log:\n%s", a.name, res.Code, res.Stdout, res.Stderr, proxy.Log())
				}
				for _, s := range e.secrets {
					if strings.Contains(out, s) {
						t.Errorf("the agent's output contains a real secret:\n%s", out)
					}
				}
				for _, w := range a.want {
					if !strings.Contains(res.Stdout, w) {
						t.Errorf("the agent's output lacks %q:\n%s", w, res.Stdout)
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
	proxy.Stop(t)
	if res := e.cli.Run(t, "", "audit", "verify"); res.Code != 0 {
		t.Errorf("stack audit verify: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if log := proxy.Log(); containsAny(log, e.secrets) {
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
		testenv.Missing(t, "python3 with requests is not available: "+err.Error())
	}
}

// needNode skips without node or the agent's node_modules, except under CI.
func needNode(t *testing.T) {
	t.Helper()
	testenv.LookPath(t, "node")
	for _, m := range []string{"openai", "undici"} {
		if _, err := os.Stat(filepath.Join("agents", "node", "node_modules", m)); err != nil {
			testenv.Missing(t, m+" is not installed: run npm install --prefix examples/agents/node")
		}
	}
}

// childEnv is stacktest.ChildEnv without the agents' API settings either,
// plus extra.
func childEnv(extra ...string) []string {
	return stacktest.ChildEnvWithout([]string{"STRIPE_", "OPENAI_"}, extra...)
}

// env is one data directory and its upstream.
type env struct {
	home   string
	caFile string // the proxy's CA, as `stack ca export` prints it
	cli    stacktest.CLI
	// secrets are the real keys in the vault, by credential name; no agent
	// may ever see one.
	secret  map[string]string
	secrets []string
	up      *upstream
}

// newEnv runs `stack init`, stores both credentials and exports the CA.
func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{
		home:   filepath.Join(dir, "home"),
		caFile: filepath.Join(dir, "stack-ca.pem"),
		secret: map[string]string{
			"stripe": "sk_test_example_" + stacktest.RandomHex(t, 16),
			"openai": "sk-example-" + stacktest.RandomHex(t, 16),
		},
	}
	e.cli = stacktest.CLI{Bin: stackBin, Home: e.home, Env: childEnv()}
	e.secrets = []string{e.secret["stripe"], e.secret["openai"]}
	e.up = startUpstream(t, map[string]string{stripeHost: e.secret["stripe"], openaiHost: e.secret["openai"]})
	e.cli.Must(t, "", "init")
	e.cli.Must(t, e.secret["stripe"], "vault", "put", "stripe", "--host", stripeHost, "--render", "bearer")
	e.cli.Must(t, e.secret["openai"], "vault", "put", "openai", "--host", openaiHost, "--render", "bearer")
	pem := e.cli.Must(t, "", "ca", "export")
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
	tok := strings.TrimSpace(e.cli.Must(t, "", args...))
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("passport issue printed %d bytes, not a compact JWS", len(tok))
	}
	return tok
}

// startProxy starts `stack proxy` with both API hosts resolved to
// loopback and only the upstream's CA trusted, as the examples' docs
// describe. It is stopped at cleanup if the test has not stopped it.
func (e *env) startProxy(t *testing.T) *stacktest.Sidecar {
	t.Helper()
	return stacktest.StartSidecar(t, stackBin, e.home, childEnv(),
		"--allow-cidr", "127.0.0.1/32",
		"--resolve", stripeHost+"=127.0.0.1",
		"--resolve", openaiHost+"=127.0.0.1",
		"--upstream-ca", e.up.CAFile,
	)
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
	*stacktest.TLSUpstream
	secrets map[string]string // host -> real secret

	mu   sync.Mutex
	seen []seen
}

// startUpstream starts the upstream; it has certificates only for the
// hosts in secrets.
func startUpstream(t *testing.T, secrets map[string]string) *upstream {
	t.Helper()
	u := &upstream{secrets: secrets}
	u.TLSUpstream = stacktest.StartTLSUpstream(t, "example upstream CA", http.HandlerFunc(u.serve), func(serverName string) (string, error) {
		if _, ok := secrets[serverName]; !ok {
			return "", fmt.Errorf("no certificate for %q", serverName)
		}
		return serverName, nil
	})
	return u
}

// base is the API base URL of host on the upstream's port.
func (u *upstream) base(host string) string { return u.URL(host, "") }

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
