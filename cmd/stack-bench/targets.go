package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Bounds on every wait for a child process.
const (
	startTimeout   = 30 * time.Second
	stopTimeout    = 20 * time.Second
	commandTimeout = 60 * time.Second
	pollEvery      = 2 * time.Millisecond
)

// proc is a proxy process under measurement.
type proc struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	logPath string
	logFile *os.File
	started time.Time
	// addr is the proxy's listening address, admin the STACK admin
	// listener's (empty for others).
	addr, admin string
	// ready is the time from exec to serving (proxy.json written and
	// /readyz answering 200, for STACK).
	ready time.Duration
	// idle is the memory right after ready, before any request.
	idle memStatus
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// startProc starts name with args, its output going to logPath.
func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, logPath: logPath, logFile: lf, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = lf, lf
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls check every pollEvery until it reports true, the
// process exits, or startTimeout passes; it then records ready and idle.
func (p *proc) waitReady(check func() (bool, error)) error {
	deadline := time.Now().Add(startTimeout)
	for {
		ok, err := check()
		if err != nil {
			return err
		}
		if ok {
			p.ready = time.Since(p.started)
			break
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during start-up: %v\n%s", p.name, p.waitErr, p.tail())
		case <-time.After(pollEvery):
		}
		if time.Now().After(deadline) {
			p.stop()
			return fmt.Errorf("%s not ready within %s\n%s", p.name, startTimeout, p.tail())
		}
	}
	m, err := procMem(p.pid())
	if err != nil {
		return err
	}
	p.idle = m
	return nil
}

// stop sends SIGTERM and waits (bounded) for the exit; past the bound
// the process is killed. It is idempotent.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %s of SIGTERM", p.name, stopTimeout)
	}
}

// exitErr ignores a death by SIGTERM, which some programs do not catch.
func (p *proc) exitErr() error {
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
	}
	if p.waitErr != nil {
		return fmt.Errorf("%s: %w\n%s", p.name, p.waitErr, p.tail())
	}
	return nil
}

// tail is the end of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// childEnv is this process's environment without proxy, CA and STACK_*
// settings that would change what is measured, plus extra.
func childEnv(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR":
			continue
		}
		if strings.HasPrefix(k, "STACK_") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

// runCmd runs a short command with a bounded wait and returns its stdout.
func runCmd(stdin string, env []string, bin string, args ...string) (string, error) {
	return runCmdTimeout(commandTimeout, stdin, env, bin, args...)
}

// runCmdTimeout is runCmd with another bound, for commands whose work
// grows with the run (verifying a soak's audit log).
func runCmdTimeout(timeout time.Duration, stdin string, env []string, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(redactArgs(args), " "), err, stderr.String())
	}
	return string(out), nil
}

// redactArgs keeps passports out of error messages.
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.Count(a, ".") == 2 && len(a) > 100 {
			a = "[passport]"
		}
		out[i] = a
	}
	return out
}

// stackRunInfo is the part of DATA-DIR/proxy.json the harness reads.
type stackRunInfo struct {
	PID    int    `json:"pid"`
	Listen string `json:"listen"`
	Admin  string `json:"admin"`
}

// startStack starts `stack proxy` (from bin) on ephemeral loopback ports
// with the audit log at auditPath, and settings (STACK_* variables) on top
// of the data directory's stack.yaml, and waits for proxy.json and
// /readyz. The detectors' learned baselines live beside the audit log:
// each run's agent is a new one, as a new user's is, and a restart on
// the same log finds what the killed process learned.
func (b *bench) startStack(name, bin, auditPath string, settings ...string) (*proc, error) {
	args := []string{
		"--home", b.stackHome, "proxy",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--allow-cidr", "127.0.0.1/32",
		"--resolve", benchHost + "=127.0.0.1",
		"--upstream-ca", b.upCAFile,
	}
	env := append(b.stackEnv(auditPath), "STACK_DETECT_STATE_PATH="+strings.TrimSuffix(auditPath, "audit.db")+"detect.db")
	env = append(env, settings...)
	p, err := startProc(name, filepath.Join(b.work, name+".log"), env, bin, args...)
	if err != nil {
		return nil, err
	}
	runPath := filepath.Join(b.stackHome, "proxy.json")
	admin := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	err = p.waitReady(func() (bool, error) {
		if p.addr == "" {
			raw, err := os.ReadFile(runPath)
			if err != nil {
				return false, nil
			}
			var info stackRunInfo
			if json.Unmarshal(raw, &info) != nil || info.PID != p.pid() {
				return false, nil // partly written, or an earlier process's
			}
			p.addr, p.admin = info.Listen, info.Admin
		}
		resp, err := admin.Get("http://" + p.admin + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Settings of the STACK variants; every other STACK target runs with the
// shipped configuration.
const (
	// steadyBurst (stack-quiet) raises credential_burst's pre-baseline cap
	// above anything a run can reach: the detector still runs on every
	// request, but never fires. With the shipped cap the bench agent
	// bursts as a new agent starting at full speed does, and the
	// difference between stack and stack-quiet is what the alerts cost.
	steadyBurst = "STACK_DETECT_CREDENTIAL_BURST_ABSOLUTE_CAP=1000000000"
	// syncAlways (stack-always) makes every record wait for its fdatasync
	// before the request it describes proceeds, instead of the sync being
	// group-committed shortly after.
	syncAlways = "STACK_AUDIT_SYNC=always"
	// learnedOn (stack-learned) turns prompt_injection's learned layer on
	// at its recommended threshold; stack-learned against stack is what
	// the layer costs the sidecar.
	learnedOn = "STACK_DETECT_PROMPT_INJECTION_LEARNED_THRESHOLD=0.98"
)

// stackEnv is the environment of stack commands: the audit log at
// auditPath (each run gets its own, so its records can be counted).
func (b *bench) stackEnv(auditPath string) []string {
	if auditPath == "" {
		return childEnv()
	}
	return childEnv("STACK_AUDIT_PATH=" + auditPath)
}

// setTunnelHosts writes proxy.tunnel_hosts in the data directory's
// stack.yaml: the bench host when on, none when off.
func (b *bench) setTunnelHosts(on bool) error {
	path := filepath.Join(b.stackHome, "stack.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	want := "  tunnel_hosts: []"
	if on {
		want = "  tunnel_hosts: [" + strconv.Quote(benchHost) + "]"
	}
	var out []string
	found := false
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "tunnel_hosts:") {
			line, found = want, true
		}
		out = append(out, line)
	}
	if !found {
		return fmt.Errorf("%s has no proxy.tunnel_hosts line", path)
	}
	return os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o600)
}

// startReference starts the goproxy reference, intercepting unless
// tunnel.
func (b *bench) startReference(name string, tunnel bool) (*proc, error) {
	readyFile := filepath.Join(b.work, name+".addr")
	os.Remove(readyFile)
	args := []string{
		"--listen", "127.0.0.1:0", "--ready-file", readyFile, "--ca-out", b.refCAFile,
		"--upstream-ca", b.upCAFile, "--resolve", benchHost + "=127.0.0.1",
	}
	if tunnel {
		args = append(args, "--tunnel")
	}
	if b.opts.profileDir != "" {
		// The whole life of the process, warm-up included.
		args = append(args, "--cpuprofile", filepath.Join(b.opts.profileDir, fmt.Sprintf("%s-%d.pprof", name, b.runs)))
	}
	p, err := startProc(name, filepath.Join(b.work, name+".log"), childEnv(), b.refBin, args...)
	if err != nil {
		return nil, err
	}
	err = p.waitReady(func() (bool, error) {
		raw, err := os.ReadFile(readyFile)
		if err != nil || len(raw) == 0 {
			return false, nil
		}
		p.addr = strings.TrimSpace(string(raw))
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(b.refCAFile)
	if err != nil {
		p.stop()
		return nil, err
	}
	b.refRoots = x509.NewCertPool()
	b.refRoots.AppendCertsFromPEM(pem)
	return p, nil
}

// mitmAddon points mitmdump's connections for the bench host at loopback
// (mitmdump has no --resolve); the TLS name stays the bench host.
const mitmAddon = `# stack-bench: send the bench host's connections to loopback.
def server_connect(data):
    host, port = data.server.address
    if host == %q:
        data.server.address = ("127.0.0.1", port)
`

// startMitmdump starts mitmdump quietly on a free loopback port with its
// own CA directory, verifying the upstream against the upstream CA.
func (b *bench) startMitmdump(name string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	confdir := filepath.Join(b.work, "mitmproxy")
	if err := os.MkdirAll(confdir, 0o700); err != nil {
		return nil, err
	}
	addon := filepath.Join(b.work, "mitm_resolve.py")
	if err := os.WriteFile(addon, fmt.Appendf(nil, mitmAddon, benchHost), 0o600); err != nil {
		return nil, err
	}
	args := []string{
		"-q", "--listen-host", "127.0.0.1", "--listen-port", strconv.Itoa(port),
		"--set", "confdir=" + confdir, "--set", "ssl_verify_upstream_trusted_ca=" + b.upCAFile,
		"-s", addon,
	}
	p, err := startProc(name, filepath.Join(b.work, name+".log"), childEnv(), b.mitmdump, args...)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	caFile := filepath.Join(confdir, "mitmproxy-ca-cert.pem")
	err = p.waitReady(func() (bool, error) {
		if _, err := os.Stat(caFile); err != nil {
			return false, nil
		}
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	p.addr = addr
	pem, err := os.ReadFile(caFile)
	if err != nil {
		p.stop()
		return nil, err
	}
	b.mitmRoots = x509.NewCertPool()
	if !b.mitmRoots.AppendCertsFromPEM(pem) {
		p.stop()
		return nil, fmt.Errorf("%s holds no certificate", caFile)
	}
	return p, nil
}

// freePort asks the kernel for an unused loopback port. Another process
// could take it before mitmdump binds; the start then fails cleanly.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// goroutines reads go_goroutines from a STACK admin /metrics.
func goroutines(admin string) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return parseGoroutines(bufio.NewScanner(resp.Body))
}

func parseGoroutines(sc *bufio.Scanner) (int, error) {
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("go_goroutines: %w", err)
			}
			return int(f), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no go_goroutines in /metrics")
}
