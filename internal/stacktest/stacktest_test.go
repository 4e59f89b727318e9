package stacktest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestChildEnv(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("ssl_cert_file", "/tmp/ca.pem") // dropped in any case
	t.Setenv("STACK_HOME", "/tmp/home")
	t.Setenv("STRIPE_API_KEY", "sk_test")
	t.Setenv("STACKTEST_KEPT", "yes")

	env := ChildEnv("EXTRA=1")
	for _, gone := range []string{"HTTPS_PROXY=", "ssl_cert_file=", "STACK_HOME="} {
		if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, gone) }) {
			t.Errorf("ChildEnv kept %s", gone)
		}
	}
	for _, kept := range []string{"STRIPE_API_KEY=sk_test", "STACKTEST_KEPT=yes"} {
		if !slices.Contains(env, kept) {
			t.Errorf("ChildEnv dropped %s", kept)
		}
	}
	if env[len(env)-1] != "EXTRA=1" {
		t.Errorf("ChildEnv ends with %q, want the extra setting", env[len(env)-1])
	}

	env = ChildEnvWithout([]string{"STRIPE_"})
	if slices.Contains(env, "STRIPE_API_KEY=sk_test") {
		t.Error("ChildEnvWithout kept a variable with a dropped prefix")
	}
	if !slices.Contains(env, "STACKTEST_KEPT=yes") {
		t.Error("ChildEnvWithout dropped an unrelated variable")
	}
}

func TestRandomHex(t *testing.T) {
	a, b := RandomHex(t, 16), RandomHex(t, 16)
	if len(a) != 32 || a == b {
		t.Errorf("RandomHex(16) = %q then %q, want two different 32-digit strings", a, b)
	}
}

func TestRedactArgs(t *testing.T) {
	jws := "eyJhbGciOiJFZERTQSJ9." + strings.Repeat("a", 80) + ".sig"
	got := RedactArgs([]string{"--proxy-user", "agent:" + jws, jws, "audit", "a.b.c"})
	want := []string{"--proxy-user", "[passport]", "[passport]", "audit", "a.b.c"}
	if !slices.Equal(got, want) {
		t.Errorf("RedactArgs = %q, want %q", got, want)
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "stacktest", "doc.go")); err != nil {
		t.Errorf("ModuleRoot = %q, which does not hold this package: %v", root, err)
	}
}

func TestModuleRootOutsideModule(t *testing.T) {
	t.Setenv("GO111MODULE", "on")
	t.Setenv("GOFLAGS", "")
	t.Chdir(t.TempDir())
	if _, err := ModuleRoot(); !errors.Is(err, ErrNoModule) {
		t.Errorf("ModuleRoot outside a module: %v, want ErrNoModule", err)
	}
}

func TestRun(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	dir := t.TempDir()
	res := Run(t, Command{
		Name:  "sh",
		Args:  []string{"-c", `cat; pwd; echo "proxy=$HTTPS_PROXY" >&2; exit 3`},
		Env:   nil, // ChildEnv
		Dir:   dir,
		Stdin: "in\n",
	})
	if res.Code != 3 {
		t.Errorf("exit %d, want 3", res.Code)
	}
	wantDir, _ := filepath.EvalSymlinks(dir)
	if res.Stdout != "in\n"+wantDir+"\n" {
		t.Errorf("stdout %q, want the input then %s", res.Stdout, wantDir)
	}
	if res.Stderr != "proxy=\n" {
		t.Errorf("stderr %q: the child inherited a proxy setting", res.Stderr)
	}
}

func TestTLSUpstream(t *testing.T) {
	u := StartTLSUpstream(t, "test CA", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto+" "+r.Host)
	}), func(serverName string) (string, error) {
		if serverName != "api.example" {
			return "", errors.New("unknown host")
		}
		return serverName, nil
	})
	pem, err := os.ReadFile(u.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("CAFile holds no certificate")
	}
	addr := u.Server.Listener.Addr().String()
	tr := &http.Transport{
		Proxy:             nil,
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: CommandTimeout}

	target := u.URL("api.example", "/v1/x")
	if want := "https://api.example:" + u.Port + "/v1/x"; target != want {
		t.Errorf("URL = %q, want %q", target, want)
	}
	resp, err := c.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := string(body), "HTTP/2.0 api.example:"+u.Port; got != want {
		t.Errorf("response %q, want %q", got, want)
	}

	if _, err := c.Get(u.URL("other.example", "/")); err == nil {
		t.Error("a host with no certificate was served")
	}
}
