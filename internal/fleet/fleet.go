package fleet

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/internal/faultproxy"
	"github.com/stackctl/stack/internal/stacktest"
)

// What every agent of the fleet may call, and with which credential.
const (
	apiHost     = "api.example.test"
	credential  = "example"
	placeholder = "stk_ph_" + credential
	grant       = "host=" + apiHost + ",methods=GET,credentials=" + credential
)

// Defaults of Options.
const (
	DefaultBatch    = 16
	DefaultInterval = 50 * time.Millisecond
)

// Bounds on every wait.
const (
	commandTimeout = 60 * time.Second // one CLI run
	startTimeout   = 90 * time.Second // a process's run file
	stopTimeout    = 30 * time.Second // an exit after SIGTERM
	// refuseTimeout bounds how long a scenario waits for sidecars to
	// refuse a revoked agent: far past any target, only a liveness bound.
	refuseTimeout = 60 * time.Second
)

// Options configure Start.
type Options struct {
	// Bin is the stack binary.
	Bin string
	// Dir is the work directory: data directories and logs. It must
	// exist; the caller removes it.
	Dir string
	// Sidecars is how many sidecars the scenarios start (at least 2).
	Sidecars int
	// Batch is how many sidecars start at once (DefaultBatch).
	Batch int
	// Interval is the time between two requests of one sidecar's client
	// (DefaultInterval); it bounds the resolution of refusal times.
	Interval time.Duration
	// SidecarDir, when set, holds the sidecars' data directories instead
	// of Dir: a tmpfs keeps the fsyncs of many sidecars, which in a fleet
	// go to as many disks, off the one disk etcd and the control plane
	// sync to. It must exist; the caller removes it.
	SidecarDir string
	// Replicas, when positive, runs the control plane as that many
	// replicas on a 3-member etcd cluster (child processes of EtcdBin)
	// instead of one process on its bbolt file; sidecars are given every
	// replica's URL.
	Replicas int
	// EtcdBin runs an etcd member when called with EtcdMemberCommand
	// first (cmd/stack-fleet does); required with Replicas.
	EtcdBin string
	// Log receives one line per step; nil discards.
	Log io.Writer
}

// Fleet is a control plane, an upstream and the data directories of the
// sidecars, with the sidecars a scenario started.
type Fleet struct {
	opts Options
	log  io.Writer

	controlHome string
	controlAddr string // host:port, fixed for the fleet's life so sidecars find a restarted control plane
	controlURL  string
	controlCA   string // the control CA's PEM file, for sidecars
	control     *process
	controlHTTP *http.Client // trusts the control CA
	env         []string     // of every child

	up      *upstream
	homes   []string         // sidecar data directories, made once
	roots   []*x509.CertPool // each home's interception CA
	logDir  string
	agents  int // agents registered, for unique names
	running []*sidecar

	// A fleet on etcd (Options.Replicas): the cluster, the replicas
	// (the first is control, on controlHome) and what they run with.
	// sidecarControl is the --control of sidecars with one control plane.
	etcd           *etcdCluster
	replicas       []*replica
	replicaEnv     []string
	etcdLinks      []*faultproxy.Proxy // the last replica's way to etcd
	sidecarControl string

	closeOnce sync.Once
}

// Start makes the work directory's control plane (init, the credential,
// the CA export), starts it and the upstream, and makes every sidecar's
// data directory. Close stops everything, also after an error.
func Start(ctx context.Context, opts Options) (f *Fleet, err error) {
	switch {
	case opts.Bin == "" || opts.Dir == "":
		return nil, errors.New("fleet: Bin and Dir are required")
	case opts.Sidecars < 2:
		return nil, errors.New("fleet: at least 2 sidecars")
	case opts.Replicas > 0 && opts.EtcdBin == "":
		return nil, errors.New("fleet: replicas need EtcdBin")
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	f = &Fleet{
		opts: opts, log: opts.Log,
		controlHome: filepath.Join(opts.Dir, "control"),
		controlCA:   filepath.Join(opts.Dir, "control-ca.pem"),
		logDir:      filepath.Join(opts.Dir, "logs"),
		env:         stacktest.ChildEnv(),
	}
	if f.log == nil {
		f.log = io.Discard
	}
	// Every early return sets f to nil: close what was started through
	// this copy.
	started := f
	defer func() {
		if err != nil {
			started.Close()
			f = nil
		}
	}()
	if err := os.MkdirAll(f.logDir, 0o755); err != nil {
		return nil, err
	}
	secret := "sk_fleet_" + randomHex(16)
	if f.up, err = startUpstream(filepath.Join(opts.Dir, "upstream-ca.pem"), secret); err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	if _, err := f.stack(ctx, "", "init", "--control"); err != nil {
		return nil, err
	}
	if opts.Replicas > 0 {
		if err := f.startReplicas(ctx, secret); err != nil {
			return nil, err
		}
	} else {
		// The first start takes a free port rather than :0 so that a
		// restarted control plane comes back where the sidecars look
		// for it.
		if f.controlAddr, err = freePort(); err != nil {
			return nil, err
		}
		if err := f.startControl(ctx); err != nil {
			return nil, err
		}
		if _, err := f.stack(ctx, secret, "vault", "put", credential, "--host", apiHost, "--render", "bearer"); err != nil {
			return nil, err
		}
		f.sidecarControl = f.controlURL
	}
	pem, err := f.stack(ctx, "", "control", "ca", "export")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.controlCA, []byte(pem), 0o600); err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(pem)) {
		return nil, errors.New("stack control ca export printed no certificate")
	}
	f.controlHTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}}
	if err := f.initSidecarHomes(ctx); err != nil {
		return nil, err
	}
	return f, nil
}

// Close kills every child process and stops the upstream. It is
// idempotent and returns nil.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		for _, s := range f.running {
			s.close()
			s.proc.kill()
		}
		f.running = nil
		if f.control != nil {
			f.control.kill()
		}
		for _, r := range f.replicas {
			if r.proc != nil {
				r.proc.kill()
			}
		}
		for _, l := range f.etcdLinks {
			l.Close()
		}
		if f.etcd != nil {
			f.etcd.close()
		}
		if f.up != nil {
			f.up.close()
		}
		if f.controlHTTP != nil {
			f.controlHTTP.CloseIdleConnections()
		}
	})
	return nil
}

func (f *Fleet) logf(format string, args ...any) {
	fmt.Fprintf(f.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// stack runs the CLI in the control plane's data directory, as an
// operator on its machine would.
func (f *Fleet) stack(ctx context.Context, stdin string, args ...string) (string, error) {
	return runStack(ctx, commandTimeout, f.opts.Bin, f.controlHome, stdin, f.env, f.opts.Dir, args...)
}

// controlRun is control.json, the control plane's run file.
type controlRun struct {
	PID    int    `json:"pid"`
	Listen string `json:"listen"`
	URL    string `json:"url"`
}

// startControl starts `stack control` on controlAddr and waits for its
// run file.
func (f *Fleet) startControl(ctx context.Context) error {
	p, err := startProcess(f.opts.Bin, []string{"--home", f.controlHome, "control", "--listen", f.controlAddr},
		f.env, f.opts.Dir, filepath.Join(f.logDir, "control.log"))
	if err != nil {
		return err
	}
	f.control = p
	var run controlRun
	err = waitFor(ctx, startTimeout, 20*time.Millisecond, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("stack control exited during start-up: %v\n%s", p.waitErr, p.logTail())
		}
		b, err := os.ReadFile(filepath.Join(f.controlHome, "control.json"))
		if err != nil || json.Unmarshal(b, &run) != nil {
			return false, nil
		}
		return run.PID == p.pid(), nil
	})
	if err != nil {
		return fmt.Errorf("stack control: %w", err)
	}
	if run.Listen != f.controlAddr {
		return fmt.Errorf("stack control listens on %s, want %s", run.Listen, f.controlAddr)
	}
	f.controlURL = run.URL
	f.logf("control plane %s (pid %d)", run.URL, run.PID)
	return nil
}

// initSidecarHomes runs `stack init` in every sidecar's data directory
// and reads its interception CA, which that sidecar's client trusts.
func (f *Fleet) initSidecarHomes(ctx context.Context) error {
	n := f.opts.Sidecars
	f.homes = make([]string, n)
	f.roots = make([]*x509.CertPool, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.opts.Batch)
	for i := range n {
		root := f.opts.SidecarDir
		if root == "" {
			root = f.opts.Dir
		}
		f.homes[i] = filepath.Join(root, "sidecars", fmt.Sprintf("%03d", i))
		g.Go(func() error {
			home := f.homes[i]
			if _, err := runStack(gctx, commandTimeout, f.opts.Bin, home, "", f.env, f.opts.Dir, "init"); err != nil {
				return err
			}
			pem, err := runStack(gctx, commandTimeout, f.opts.Bin, home, "", f.env, f.opts.Dir, "ca", "export")
			if err != nil {
				return err
			}
			f.roots[i] = x509.NewCertPool()
			if !f.roots[i].AppendCertsFromPEM([]byte(pem)) {
				return fmt.Errorf("%s: stack ca export printed no certificate", home)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	f.logf("%d sidecar data directories", n)
	return nil
}

// newAgent registers an agent with a name not used before in this
// fleet's control plane, and passports of ttl.
func (f *Fleet) newAgent(ctx context.Context, what string, ttl time.Duration) (string, error) {
	f.agents++
	name := fmt.Sprintf("fleet-%s-%d-%s", what, f.agents, randomHex(3))
	_, err := f.stack(ctx, "", "agent", "register", name, "--grant", grant, "--ttl", ttl.String())
	return name, err
}

// revoke runs `stack passport revoke --agent` and returns when the
// command started and when it returned.
func (f *Fleet) revoke(ctx context.Context, agent string) (started, returned time.Time, err error) {
	// Logged so that the control plane's and the sidecars' logs can be
	// read against it.
	f.logf("stack passport revoke --agent %s", agent)
	started = time.Now()
	_, err = f.stack(ctx, "", "passport", "revoke", "--agent", agent, "--reason", "fleet scenario")
	return started, time.Now(), err
}

// controlMetric reads one series from the control plane's /metrics.
func (f *Fleet) controlMetric(ctx context.Context, series string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.controlURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := f.controlHTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, err
	}
	return metricValue(string(b), series)
}

// controlStatus is `stack control status --json`.
func (f *Fleet) controlStatus(ctx context.Context) (control.Status, error) {
	var st control.Status
	out, err := f.stack(ctx, "", "control", "status", "--json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// freePort returns a loopback address no one listens on now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// waitFor polls cond every poll until it is true, it fails, ctx ends
// or timeout passes.
func waitFor(ctx context.Context, timeout, poll time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %s", errWaitTimeout, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

var errWaitTimeout = errors.New("gave up waiting")

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// problems collects what the product got wrong in a scenario.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }
