package examples

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/stacktest"
	"github.com/stackctl/stack/internal/testenv"
)

// docker-compose.yml without docker: compose-setup.sh init, a real `stack
// control`, compose-setup.sh enroll (twice, as two `docker compose up`
// would), then each sidecar joins with the join token enroll wrote and the
// compose file's flags, and serves its agent, which sends no credentials:
// billing-bot runs the Go agent, billing-reporter's read-only role lets it
// read the balance and nothing more. A revocation through the control
// plane reaches billing-bot's sidecar and no other.
func TestComposeSetup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane, two sidecars and the agent; skipped in -short mode")
	}
	testenv.LookPath(t, "sh")
	secret := "sk_test_example_" + stacktest.RandomHex(t, 16)
	up := startUpstream(t, map[string]string{stripeHost: secret})

	// The volumes compose would mount, under one directory.
	dir, setup := composeVolumes(t, []string{"bot", "reporter"})
	setup("init")
	controlHome := dir(controlDataDir)
	control := startControl(t, controlHome)
	enroll := []string{"STACK_HOME=" + controlHome, "STACK_CONTROL_URL=" + control.url, "STRIPE_SECRET_KEY=" + secret}
	setup("enroll", enroll...)
	setup("enroll", enroll...) // a second `up`: nothing registered twice, fresh tokens

	for _, f := range []string{controlCADir + "/ca.pem", setupExportDir + "/bot-ca/ca.pem", setupExportDir + "/reporter-ca/ca.pem"} {
		if _, err := loadPool(dir(f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	sidecar := func(name string) *stacktest.Sidecar {
		t.Helper()
		home := dir(setupDataDir + "/" + name)
		join := filepath.Join(home, setupJoinToken)
		if fi, err := os.Stat(join); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s: want a file only its owner reads (%v)", join, err)
		}
		return stacktest.StartSidecar(t, stackBin, home, childEnv(),
			"--join-token-file="+join,
			"--control="+control.url,
			"--control-ca="+dir(controlCADir+"/ca.pem"),
			"--upstream-ca="+up.CAFile,
			"--resolve="+stripeHost+"=127.0.0.1",
			"--allow-cidr=127.0.0.1/32",
		)
	}
	bot, reporter := sidecar("bot"), sidecar("reporter")

	runBot := func() stacktest.Result {
		return stacktest.Run(t, stacktest.Command{
			Name: goAgentBin,
			Env: childEnv(
				"HTTPS_PROXY=http://"+bot.Listen,
				"SSL_CERT_FILE="+dir(setupExportDir+"/bot-ca/ca.pem"),
				"STRIPE_API_KEY=stk_ph_stripe",
				"STRIPE_API_BASE="+up.base(stripeHost),
			),
		})
	}
	from := up.count()
	if res := runBot(); res.Code != 0 || !strings.Contains(res.Stdout, "charge: ch_example_1") {
		t.Fatalf("billing-bot: exit %d\n%s%s\nsidecar log:\n%s", res.Code, res.Stdout, res.Stderr, bot.Log())
	}
	for _, r := range up.since(from) {
		if !r.realSecret {
			t.Errorf("upstream request %s %s did not carry the real key", r.method, r.path)
		}
	}

	reporterCall := func(method, path string) int {
		t.Helper()
		return viaProxy(t, reporter.Listen, dir(setupExportDir+"/reporter-ca/ca.pem"), method, up.base(stripeHost)+path)
	}
	if got := reporterCall(http.MethodGet, "/v1/balance"); got != http.StatusOK {
		t.Errorf("billing-reporter GET /v1/balance: %d, want 200\nsidecar log:\n%s", got, reporter.Log())
	}
	if got := reporterCall(http.MethodPost, "/v1/charges"); got != http.StatusForbidden {
		t.Errorf("billing-reporter POST /v1/charges: %d, want 403 (its role reads only)", got)
	}

	// As README.md says: `docker compose exec control /stack passport
	// revoke --agent billing-bot`, in the control plane's data directory.
	cli := stacktest.CLI{Bin: stackBin, Home: controlHome, Env: childEnv()}
	cli.Must(t, "", "passport", "revoke", "--agent", "billing-bot", "--reason", "example")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(readyz(t, bot.Admin), "revoked") {
		if time.Now().After(deadline) {
			t.Fatalf("the revocation did not reach billing-bot's sidecar:\n%s", readyz(t, bot.Admin))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if res := runBot(); res.Code == 0 {
		t.Errorf("billing-bot still served after its revocation:\n%s", res.Stdout)
	}
	if got := reporterCall(http.MethodGet, "/v1/balance"); got != http.StatusOK {
		t.Errorf("billing-reporter GET /v1/balance after billing-bot's revocation: %d, want 200", got)
	}

	// Each sidecar keeps its own audit log, which verifies.
	bot.Stop(t)
	reporter.Stop(t)
	for _, name := range []string{"bot", "reporter"} {
		c := stacktest.CLI{Bin: stackBin, Home: dir(setupDataDir + "/" + name), Env: childEnv()}
		if res := c.Run(t, "", "audit", "verify"); res.Code != 0 {
			t.Errorf("%s: stack audit verify: exit %d\n%s%s", name, res.Code, res.Stdout, res.Stderr)
		}
	}
}

// composeVolumes makes, under one directory, the volumes compose would
// mount for the control plane and the sidecars named, and returns a func
// naming a path under it and one that runs a step of compose-setup.sh
// there with env added.
func composeVolumes(t *testing.T, sidecars []string, env ...string) (func(string) string, func(step string, env ...string)) {
	t.Helper()
	root := t.TempDir()
	dir := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	dirs := []string{controlDataDir, controlCADir}
	for _, name := range sidecars {
		dirs = append(dirs, setupDataDir+"/"+name, setupExportDir+"/"+name+"-ca")
	}
	for _, d := range dirs {
		if err := os.MkdirAll(dir(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	base := append([]string{"STACK_BIN=" + stackBin, "SETUP_ROOT=" + root}, env...)
	setup := func(step string, more ...string) {
		t.Helper()
		res := stacktest.Run(t, stacktest.Command{
			Name: "sh", Args: []string{setupScript, step},
			Env: childEnv(append(append([]string(nil), base...), more...)...),
		})
		if res.Code != 0 {
			t.Fatalf("%s %s: exit %d\n%s%s", setupScript, step, res.Code, res.Stdout, res.Stderr)
		}
	}
	return dir, setup
}

// viaProxy sends one request through the proxy at listen, as an agent
// that trusts only the CA in caFile and holds the placeholder, and returns
// the status.
func viaProxy(t *testing.T, listen, caFile, method, target string) int {
	t.Helper()
	pool, err := loadPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	proxyURL := &url.URL{Scheme: "http", Host: listen}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer stk_ph_stripe")
	resp, err := c.Do(req)
	if err != nil {
		// A refused CONNECT is an error here, with the status in it.
		if strings.Contains(err.Error(), "Forbidden") {
			return http.StatusForbidden
		}
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no PEM certificate")
	}
	return pool, nil
}

// readyz returns the sidecar's /readyz body.
func readyz(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// controlPlane is a running `stack control` child process.
type controlPlane struct {
	url  string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
	once sync.Once
}

// startControl starts `stack control` on an ephemeral loopback port with
// the data directory home (and the global flags before), waits for the run
// file it writes, and stops it at cleanup.
func startControl(t *testing.T, home string, before ...string) *controlPlane {
	t.Helper()
	c := &controlPlane{log: filepath.Join(t.TempDir(), "control.log"), done: make(chan struct{})}
	logFile, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(stackBin, append(append([]string{"--home", home}, before...), "control", "--listen", "127.0.0.1:0")...)
	c.cmd.Env = childEnv()
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		logFile.Close()
		close(c.done)
	}()
	t.Cleanup(func() { c.stop(t) })

	deadline := time.After(stacktest.StartTimeout)
	for {
		select {
		case <-c.done:
			t.Fatalf("stack control exited during start-up: %v\n%s", c.err, c.output())
		case <-deadline:
			t.Fatalf("stack control wrote no control.json within %s\n%s", stacktest.StartTimeout, c.output())
		case <-time.After(20 * time.Millisecond):
		}
		var info struct {
			PID int    `json:"pid"`
			URL string `json:"url"`
		}
		b, err := os.ReadFile(filepath.Join(home, "control.json"))
		if err == nil && json.Unmarshal(b, &info) == nil && info.PID == c.cmd.Process.Pid && info.URL != "" {
			c.url = info.URL
			return c
		}
	}
}

func (c *controlPlane) output() string {
	b, _ := os.ReadFile(c.log)
	return string(b)
}

// stop ends the control plane with SIGTERM, which must make it exit 0.
func (c *controlPlane) stop(t *testing.T) {
	c.once.Do(func() {
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("SIGTERM: %v", err)
		}
		select {
		case <-c.done:
		case <-time.After(stacktest.StopTimeout):
			c.cmd.Process.Kill()
			<-c.done
			t.Errorf("stack control did not exit within %s of SIGTERM\n%s", stacktest.StopTimeout, c.output())
			return
		}
		if c.err != nil {
			t.Errorf("stack control exit after SIGTERM: %v\n%s", c.err, c.output())
		}
	})
}
