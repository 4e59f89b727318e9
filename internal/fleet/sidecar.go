package fleet

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/stackctl/stack/reason"
)

// sidecar is a running `stack proxy` joined to the control plane.
type sidecar struct {
	Index  int
	Agent  string
	Home   string
	PID    int
	Listen string // the proxy listener
	Admin  string // the admin listener

	proc   *process
	tr     *http.Transport // the agent's: through the sidecar, trusting its CA
	client *http.Client
	admin  *http.Client
}

// plan says how to start one sidecar.
type plan struct {
	index int
	agent string
	// controlURL is where it reaches the control plane; "" is the
	// control plane's own address.
	controlURL string
	env        []string // added to the fleet's
}

// runInfo is proxy.json, a running sidecar's run file.
type runInfo struct {
	PID    int    `json:"pid"`
	Listen string `json:"listen"`
	Admin  string `json:"admin"`
}

// restartSidecars stops the running sidecars and starts one per plan,
// Batch at a time, each joined with its own join token.
//
// A sidecar keeps its credential in control-state.json and would resume
// as the agent it served before, ignoring a new join token; deleting the
// file (and the audit log) and keeping the rest of the data directory
// makes it a new sidecar, exactly as a fresh one joins, without paying for `stack init`
// (keys, CA) again, and lets the clients keep trusting the same CA.
func (f *Fleet) restartSidecars(ctx context.Context, plans []plan) ([]*sidecar, error) {
	if err := f.stopSidecars(); err != nil {
		return nil, err
	}
	start := time.Now()
	tokens := make([]string, len(plans))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.opts.Batch)
	for i, p := range plans {
		g.Go(func() error {
			out, err := f.stack(gctx, "", "control", "join-token", "--agent", p.agent)
			tokens[i] = strings.TrimSpace(out)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	scs := make([]*sidecar, len(plans))
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(f.opts.Batch)
	for i, p := range plans {
		g.Go(func() error {
			s, err := f.startSidecar(gctx, p, tokens[i])
			scs[i] = s
			return err
		})
	}
	err := g.Wait()
	for _, s := range scs {
		if s != nil {
			f.running = append(f.running, s)
		}
	}
	if err != nil {
		return nil, err
	}
	f.logf("%d sidecars joined in %s", len(plans), time.Since(start).Round(time.Millisecond))
	return scs, nil
}

func (f *Fleet) startSidecar(ctx context.Context, p plan, token string) (*sidecar, error) {
	home := f.homes[p.index]
	// A new sidecar has a new audit log too: the control plane binds a
	// shipped log to the agent that first shipped it.
	for _, name := range []string{"control-state.json", "audit.db"} {
		if err := os.Remove(filepath.Join(home, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	controlURL := p.controlURL
	if controlURL == "" {
		controlURL = f.sidecarControl
		if n := len(f.replicas); n > 1 {
			// Each sidecar starts on another replica, as a fleet given
			// the list in several orders spreads over them.
			var urls []string
			for k := range n {
				urls = append(urls, f.replicas[(p.index+k)%n].url)
			}
			controlURL = strings.Join(urls, ",")
		}
	}
	name := fmt.Sprintf("fleet-sidecar-%03d", p.index)
	args := []string{
		"--home", home, "proxy",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--control", controlURL, "--control-ca", f.controlCA, "--join-token", token,
		"--resolve", apiHost + "=127.0.0.1", "--allow-cidr", "127.0.0.1/32",
		"--upstream-ca", f.up.caFile,
	}
	env := append(append(append([]string(nil), f.env...), "POD_NAME="+name), p.env...)
	proc, err := startProcess(f.opts.Bin, args, env, f.opts.Dir, filepath.Join(f.logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	s := &sidecar{Index: p.index, Agent: p.agent, Home: home, PID: proc.pid(), proc: proc}
	var run runInfo
	err = waitFor(ctx, startTimeout, 50*time.Millisecond, func() (bool, error) {
		if proc.exited() {
			return false, fmt.Errorf("exited during start-up: %v\n%s", proc.waitErr, proc.logTail())
		}
		b, err := os.ReadFile(filepath.Join(home, "proxy.json"))
		if err != nil || json.Unmarshal(b, &run) != nil {
			return false, nil
		}
		return run.PID == proc.pid(), nil
	})
	if err != nil {
		return s, fmt.Errorf("sidecar %d: %w", p.index, err)
	}
	s.Listen, s.Admin = run.Listen, run.Admin
	proxyURL := &url.URL{Scheme: "http", Host: s.Listen}
	s.tr = &http.Transport{
		Proxy:             http.ProxyURL(proxyURL),
		TLSClientConfig:   &tls.Config{RootCAs: f.roots[p.index], MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
		// A refused CONNECT is an answer, not a failure: keep its status
		// and reason for the sample.
		OnProxyConnectResponse: func(_ context.Context, _ *url.URL, _ *http.Request, resp *http.Response) error {
			if resp.StatusCode != http.StatusOK {
				return &connectRefused{status: resp.StatusCode, reason: resp.Header.Get(reason.Header)}
			}
			return nil
		},
		MaxIdleConnsPerHost: 1,
	}
	s.client = &http.Client{Transport: s.tr, Timeout: 10 * time.Second}
	s.admin = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	return s, nil
}

// stopSidecars stops every running sidecar with SIGTERM, all at once.
func (f *Fleet) stopSidecars() error {
	var g errgroup.Group
	for _, s := range f.running {
		g.Go(func() error {
			s.close()
			if err := s.proc.stop(stopTimeout); err != nil {
				return fmt.Errorf("sidecar %d: %w\n%s", s.Index, err, s.proc.logTail())
			}
			return nil
		})
	}
	err := g.Wait()
	f.running = nil
	return err
}

// close drops the clients' connections, so that a stopping sidecar has
// no idle agent to wait for.
func (s *sidecar) close() {
	if s.tr != nil {
		s.tr.CloseIdleConnections()
	}
	if s.admin != nil {
		s.admin.CloseIdleConnections()
	}
}

// adminGet reads path from the admin listener.
func (s *sidecar) adminGet(ctx context.Context, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Admin+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := s.admin.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return string(b), err
}

// connected reports whether the sidecar's revocation feed is open, by
// its stack_control_connected gauge.
func (s *sidecar) connected(ctx context.Context) (bool, error) {
	v, err := s.metric(ctx, "stack_control_connected")
	return v == 1, err
}

// metric reads one series from the sidecar's /metrics; a series not
// exported reads 0.
func (s *sidecar) metric(ctx context.Context, series string) (float64, error) {
	body, err := s.adminGet(ctx, "/metrics")
	if err != nil {
		return 0, err
	}
	return metricValue(body, series)
}

// metricValue finds series in Prometheus text exposition.
func metricValue(body, series string) (float64, error) {
	for line := range strings.SplitSeq(body, "\n") {
		name, value, ok := strings.Cut(line, " ")
		if ok && name == series {
			return strconv.ParseFloat(strings.TrimSpace(value), 64)
		}
	}
	return 0, nil
}

// readyzConnected reads the control line of /readyz, which is cheaper
// to serve than /metrics when many sidecars are polled.
func (s *sidecar) readyzConnected(ctx context.Context) (bool, error) {
	body, err := s.adminGet(ctx, "/readyz")
	if err != nil {
		return false, err
	}
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, "control:") {
			return strings.Contains(line, ", connected"), nil
		}
	}
	return false, fmt.Errorf("sidecar %d: no control line in /readyz: %q", s.Index, body)
}
