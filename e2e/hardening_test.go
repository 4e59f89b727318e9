package e2e

import (
	"net/http"
	"net/http/cgi"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stackctl/stack/internal/stacktest"
	"github.com/stackctl/stack/internal/testenv"
)

// Clients that ask for compression by default get the upstream's gzipped
// echo of the key decoded and scrubbed: the real key never reaches them.
func TestCompressedEchoScrubbed(t *testing.T) {
	e := newEnv(t)
	token := e.issue(agentID, "", stripeGrant)
	e.startProxy()
	target := e.url(stripeHost, "/v1/compressed")
	check := func(t *testing.T, res httpResult) {
		t.Helper()
		if res.Status != http.StatusOK {
			t.Fatalf("status %d:\n%s", res.Status, res.Raw)
		}
		if strings.Contains(res.Raw, e.secret) || strings.Contains(res.Body, e.secret) {
			t.Fatal("the real key reached the client")
		}
		if !strings.Contains(res.Body, `"echo_authorization":"Bearer `+placeholder+`"`) || !strings.Contains(res.Body, `"compressed":true`) {
			t.Fatalf("body %s: want the compressed echo, with the placeholder", res.Body)
		}
	}
	t.Run("curl --compressed", func(t *testing.T) {
		check(t, e.curl(agentID, token, "--compressed", "-H", "Authorization: Bearer "+placeholder, target))
	})
	t.Run("python-requests", func(t *testing.T) {
		check(t, e.python(agentID, token, "GET", target, ""))
	})
	t.Run("node-undici", func(t *testing.T) {
		needNode(t)
		check(t, e.node(agentID, token, "GET", target, ""))
	})
}

// git and curl --proxy-anyauth first send a CONNECT without credentials,
// then retry with them after the 407: the retry must land on a new
// connection, which the 407 asks for with Connection: close.
func TestProxyAuthRetry(t *testing.T) {
	gitBin := testenv.LookPath(t, "git")
	e := newEnv(t)
	repos := makeRepo(t, gitBin)
	backend := filepath.Join(strings.TrimSpace(e.run("", nil, gitBin, "--exec-path").Stdout), "git-http-backend")
	e.up.route("/git/", &cgi.Handler{
		Path: backend, Root: "/git",
		Env: []string{"GIT_PROJECT_ROOT=" + repos, "GIT_HTTP_EXPORT_ALL=1"},
	})
	token := e.issue(agentID, "", stripeGrant, "host="+stripeHost+",methods=GET|POST,paths=/git/**")
	e.startProxy()
	proxyURL := "http://" + agentID + ":" + token + "@" + e.proxy.Listen

	for _, method := range []string{"anyauth", "basic"} {
		t.Run("git clone, proxyAuthMethod="+method, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "clone")
			r := e.run("", stacktest.ChildEnv("GIT_TERMINAL_PROMPT=0", "GIT_SSL_CAINFO="+e.caFile), gitBin,
				"-c", "http.proxy="+proxyURL, "-c", "http.proxyAuthMethod="+method,
				"clone", e.url(stripeHost, "/git/repo.git"), dest)
			if r.Code != 0 {
				t.Fatalf("git clone: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
			}
			b, err := os.ReadFile(filepath.Join(dest, "README"))
			if err != nil || string(b) != "through the sidecar\n" {
				t.Fatalf("cloned README %q, %v", b, err)
			}
		})
	}
	t.Run("curl --proxy-anyauth", func(t *testing.T) {
		res := e.curl(agentID, token, "--proxy-anyauth", "-H", "Authorization: Bearer "+placeholder, e.url(stripeHost, "/v1/balance"))
		if res.Status != http.StatusOK {
			t.Fatalf("status %d:\n%s", res.Status, res.Raw)
		}
	})
}

// makeRepo makes a bare repository repo.git with one commit, in a new
// directory it returns.
func makeRepo(t *testing.T, gitBin string) string {
	t.Helper()
	root := t.TempDir()
	work := filepath.Join(root, "work")
	env := append(stacktest.ChildEnv(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	run := func(dir string, args ...string) {
		t.Helper()
		r := stacktest.Run(t, stacktest.Command{Name: gitBin, Args: args, Env: env, Dir: dir})
		if r.Code != 0 {
			t.Fatalf("git %v: %s%s", args, r.Stdout, r.Stderr)
		}
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	run(work, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(work, "README"), []byte("through the sidecar\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(work, "add", "README")
	run(work, "commit", "-q", "-m", "first")
	run(root, "clone", "-q", "--bare", work, filepath.Join(root, "repo.git"))
	return root
}

// Even with an allow list that covers loopback, the sidecar's admin
// listener is not reachable through the sidecar.
func TestAdminListenerNotReachableThroughProxy(t *testing.T) {
	e := newEnv(t)
	token := e.issue(agentID, "", "host=127.0.0.1")
	e.startProxy("--allow-cidr", "127.0.0.0/8")
	for _, target := range []string{"http://" + e.proxy.Admin + "/metrics", "http://" + e.proxy.Listen + "/"} {
		res := e.curl(agentID, token, target)
		if res.Status != http.StatusForbidden || res.Header.Get("X-Stack-Reason") != "egress_denied" {
			t.Errorf("%s through the proxy: status %d:\n%s", target, res.Status, res.Raw)
		}
	}
}
