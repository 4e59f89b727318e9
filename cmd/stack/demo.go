package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/proxy/ca"
	"github.com/stackctl/stack/reason"
)

// The demo's cast.
const (
	demoAgent   = "billing-bot"
	demoRole    = "billing-reporter"
	demoSecret  = "sk_test_51DemoOnlyNotARealKey4eC39HqLyjWDarjtT1zdp7dc"
	demoHost    = "api.stripe.com"
	demoRate    = 5  // baseline pulls per second
	demoBurstX  = 12 // burst multiple of the baseline
	demoBase    = 6 * time.Second
	demoMaxRun  = 4 * time.Second // the longest the burst may go on
	demoAmount  = 5000000         // cents: $50,000.00
	demoEnvMode = "STACK_DEMO_AGENT"
)

// demoConfig tunes the sidecar so a baseline can be learned in seconds:
// one-second windows instead of minutes and hours. Everything else is the
// embedded default.
const demoConfig = `proxy:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  upstream_ca: upstream-ca.pem
egress:
  allow_cidrs: ["127.0.0.1/32"]
  resolve: ["api.stripe.com=127.0.0.1"]
audit:
  checkpoint_every: 50
detect:
  credential_burst:
    mode: revoke
    window: 1s
    learning_window: 5m
    min_samples: 20
    min_baseline_age: 4s
    factor: 5
    min_count: 10
`

func newDemoCmd(a *app) *cobra.Command {
	var keep, asJSON bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Play the near-miss story on loopback: a credential burst, a revoked passport, $0 lost",
		Long: `demo plays, for real and on this machine only, the story STACK is built for:

  an agent holding only the placeholder stk_ph_stripe makes normal balance
  reads through the sidecar, which injects the real (test) Stripe key;
  then it pulls the credential at 12x its baseline; the credential_burst
  detector fires on the request that crosses the line, the sidecar revokes
  the passport at once, and the $50,000 transfer that follows gets a 403.

Everything is real: a temporary data directory with the local KMS, the
billing-reporter passport, the vault, the sidecar with its MITM CA, a TLS
"Stripe" on 127.0.0.1 that checks it receives the real key, and the agent
as a separate process. At the end the audit log is verified and the
agent's timeline printed. It needs nothing but this binary and exits 0
when the story held.`,
		Example: `  stack demo
  stack demo --keep      # keep the data directory and print how to inspect it
  stack demo --json      # the timeline as JSON`,
		Args: cobra.NoArgs,
		// The demo makes its own data directory: no config to load.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runDemo(cmd.Context(), keep, asJSON)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the data directory and print how to inspect it")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the timeline as JSON")
	return cmd
}

// demoStep is one line of the timeline.
type demoStep struct {
	AtMS   int64  `json:"at_ms"`
	What   string `json:"what"`
	Detail string `json:"detail,omitempty"`
}

// demoResult is the whole story, as --json prints it.
type demoResult struct {
	DataDir        string     `json:"data_dir,omitempty"`
	Timeline       []demoStep `json:"timeline"`
	BaselineCalls  int        `json:"baseline_calls"`
	BurstCalls     int        `json:"burst_calls_allowed"`
	DetectedAfter  int64      `json:"detected_after_ms"`
	TransferStatus int        `json:"transfer_status"`
	TransferReason string     `json:"transfer_reason"`
	DollarsMoved   float64    `json:"dollars_moved"`
	UpstreamSawKey int        `json:"upstream_requests_with_real_key"`
	AuditRecords   uint64     `json:"audit_records"`
	AuditVerified  bool       `json:"audit_verified"`
	AuditTimeline  string     `json:"audit_timeline"`
	Held           bool       `json:"story_held"`
}

func (a *app) runDemo(ctx context.Context, keep, asJSON bool) error {
	if os.Getenv(demoEnvMode) != "" {
		return demoAgentMain(ctx, a.stdout)
	}
	d := &demoRun{ctx: ctx, start: time.Now(), res: &demoResult{}}
	dir, err := os.MkdirTemp("", "stack-demo-")
	if err != nil {
		return err
	}
	d.dir = dir
	if !keep {
		defer os.RemoveAll(dir)
	} else {
		d.res.DataDir = dir
	}

	// The upstream: a TLS "Stripe" with its own CA, which the sidecar
	// trusts through proxy.upstream_ca.
	up, err := startDemoStripe(dir)
	if err != nil {
		return err
	}
	defer up.close()
	token, caFile, err := d.setup()
	if err != nil {
		return err
	}

	// The sidecar, in this process.
	sidecar := startDemoSidecar(ctx, dir)
	defer sidecar.close()
	info, err := waitRunFile(dir, sidecar.done)
	if err != nil {
		return err
	}
	d.step("sidecar up", "proxy "+info.Listen+", admin "+info.Admin)

	if err := d.playAgent(info, token, caFile, up); err != nil {
		return err
	}

	// Stop the sidecar so the CLI reads the files directly, then verify.
	if err := sidecar.shutdown(); err != nil {
		return err
	}
	d.verifyAudit()

	res := d.res
	res.Held = storyHeld(res, up)
	if err := a.printDemoResult(res, dir, keep, asJSON); err != nil {
		return err
	}
	if !res.Held {
		return exitWith(exitFailure, "the story did not hold: see the timeline above")
	}
	return nil
}

// storyHeld says whether the demo showed what it claims: a baseline, a
// detection, the transfer refused, nothing moved, the agent never
// holding the key, and an audit log that verifies.
func storyHeld(res *demoResult, up *demoStripe) bool {
	return res.BaselineCalls > 0 && res.DetectedAfter > 0 && res.TransferStatus == http.StatusForbidden &&
		res.DollarsMoved == 0 && up.withoutKey.Load() == 0 && res.AuditVerified
}

// demoRun is one playing of the demo in its data directory.
type demoRun struct {
	ctx   context.Context
	dir   string
	start time.Time
	res   *demoResult
}

// step adds a line to the timeline.
func (d *demoRun) step(what, detail string) {
	d.res.Timeline = append(d.res.Timeline, demoStep{AtMS: time.Since(d.start).Milliseconds(), What: what, Detail: detail})
}

// quiet runs a stack command on the demo's data directory and returns its
// standard output; its log goes nowhere below errors.
func (d *demoRun) quiet(stdin string, args ...string) (string, error) {
	var out, errb bytes.Buffer
	full := append([]string{"--home", d.dir, "--log-level", "error"}, args...)
	if code := run(d.ctx, full, strings.NewReader(stdin), &out, &errb); code != 0 {
		return "", fmt.Errorf("stack %s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// setup fills the data directory as an operator would with the CLI, and
// returns the agent's passport and the file of the CA the agent trusts.
func (d *demoRun) setup() (token, caFile string, err error) {
	if err := os.WriteFile(filepath.Join(d.dir, "stack.yaml"), []byte(demoConfig), 0o600); err != nil {
		return "", "", err
	}
	if _, err := d.quiet("", "init"); err != nil {
		return "", "", err
	}
	if _, err := d.quiet(demoSecret, "vault", "put", "stripe", "--host", demoHost, "--render", "bearer"); err != nil {
		return "", "", err
	}
	tokenOut, err := d.quiet("", "passport", "issue", "--agent", demoAgent, "--role", demoRole)
	if err != nil {
		return "", "", err
	}
	caPEM, err := d.quiet("", "ca", "export")
	if err != nil {
		return "", "", err
	}
	caFile = filepath.Join(d.dir, "agent-ca.pem")
	if err := os.WriteFile(caFile, []byte(caPEM), 0o644); err != nil {
		return "", "", err
	}
	d.step("setup", fmt.Sprintf("data dir with local KMS; stripe credential in the vault bound to %s; %s passport for %s", demoHost, demoRole, demoAgent))
	return strings.TrimSpace(tokenOut), caFile, nil
}

// demoSidecar is `stack proxy` running in this process on the demo's
// data directory.
type demoSidecar struct {
	stop context.CancelFunc
	// done holds how the sidecar exited; a reader puts nil back, so that
	// close never waits for ever.
	done chan error
}

func startDemoSidecar(ctx context.Context, dir string) *demoSidecar {
	pctx, stop := context.WithCancel(ctx)
	s := &demoSidecar{stop: stop, done: make(chan error, 1)}
	var proxyErr bytes.Buffer
	go func() {
		code := run(pctx, []string{"--home", dir, "--log-level", "error", "proxy"}, strings.NewReader(""), io.Discard, &proxyErr)
		if code != 0 {
			s.done <- fmt.Errorf("stack proxy exited %d: %s", code, strings.TrimSpace(proxyErr.String()))
			return
		}
		s.done <- nil
	}()
	return s
}

// shutdown stops the sidecar and says how it exited.
func (s *demoSidecar) shutdown() error {
	s.stop()
	err := <-s.done
	s.done <- nil // for close, which would otherwise wait for ever
	return err
}

// close stops the sidecar and waits for it.
func (s *demoSidecar) close() {
	s.stop()
	<-s.done
}

// playAgent runs the agent, a separate process holding only the
// placeholder, to its end, then records what the upstream saw.
func (d *demoRun) playAgent(info runInfo, token, caFile string, up *demoStripe) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	agent := exec.CommandContext(d.ctx, self, "demo")
	agent.Env = append(os.Environ(),
		demoEnvMode+"=1",
		"HTTPS_PROXY=http://"+demoAgent+":"+token+"@"+info.Listen,
		"NO_PROXY=",
		"SSL_CERT_FILE="+caFile,
		"STRIPE_API_BASE=https://"+demoHost+":"+up.port,
		"STRIPE_API_KEY=stk_ph_stripe",
	)
	agent.Stderr = os.Stderr
	out, err := agent.StdoutPipe()
	if err != nil {
		return err
	}
	if err := agent.Start(); err != nil {
		return err
	}
	d.step("agent started", "HTTPS_PROXY set to the sidecar; its Stripe key is stk_ph_stripe")
	d.followAgent(out)
	if err := agent.Wait(); err != nil {
		return fmt.Errorf("demo agent: %w", err)
	}
	res := d.res
	res.DollarsMoved = float64(up.moved.Load()) / 100
	res.UpstreamSawKey = int(up.withKey.Load())
	d.step("result", fmt.Sprintf("%s moved; the upstream got the real key on all %d requests it saw; the agent never held it", dollars(up.moved.Load()), res.UpstreamSawKey))
	return nil
}

// followAgent puts each event the agent prints on the timeline.
func (d *demoRun) followAgent(out io.Reader) {
	res := d.res
	var burstStart time.Time
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var e agentEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		switch e.Kind {
		case "baseline-done":
			res.BaselineCalls = e.N
			d.step("baseline", fmt.Sprintf("%d balance reads at %d/s over %s, all answered 200; the sidecar injected the real key each time", e.N, demoRate, demoBase))
		case "burst-start":
			burstStart = time.Now()
			d.step("burst starts", fmt.Sprintf("the agent pulls the Stripe credential at %d/s (%dx its baseline)", demoRate*demoBurstX, demoBurstX))
		case "refused":
			res.BurstCalls = e.N
			res.DetectedAfter = time.Since(burstStart).Milliseconds()
			d.step("detector fired", fmt.Sprintf("request %d of the burst refused %d %s after %d ms: credential_burst in revoke mode; passport revoked", e.N+1, e.Status, e.Reason, res.DetectedAfter))
		case "transfer":
			res.TransferStatus, res.TransferReason = e.Status, e.Reason
			d.step("transfer refused", fmt.Sprintf("POST /v1/transfers amount=%s -> %d %s", dollars(demoAmount), e.Status, e.Reason))
		}
	}
}

// verifyAudit verifies the audit log with the CLI, counts its records
// and reads the agent's timeline from it. The sidecar must have stopped.
func (d *demoRun) verifyAudit() {
	res := d.res
	vout, verr := d.quiet("", "audit", "verify")
	res.AuditVerified = verr == nil
	if l, err := audit.Open(filepath.Join(d.dir, "audit.db"), audit.Options{ReadOnly: true}); err == nil {
		res.AuditRecords, _ = l.Head()
		l.Close()
	}
	d.step("audit verify", strings.TrimSpace(firstLineOf(vout+errText(verr))))
	res.AuditTimeline, _ = d.quiet("", "audit", "timeline", "--agent", demoAgent)
}

// printDemoResult prints the story: as JSON with --json, else as a
// timeline, with how to inspect the data directory when it is kept.
func (a *app) printDemoResult(res *demoResult, dir string, keep, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printDemo(a.stdout, res)
	if keep {
		fmt.Fprintf(a.stdout, "\nThe data directory is kept: %s\n  stack --home %s audit timeline --agent %s\n  stack --home %s audit verify\n  stack --home %s vault list\n", dir, dir, demoAgent, dir, dir)
	}
	return nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func firstLineOf(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func printDemo(w io.Writer, res *demoResult) {
	fmt.Fprintln(w, "STACK demo: a Stripe credential burst, caught inline")
	fmt.Fprintln(w)
	for _, s := range res.Timeline {
		fmt.Fprintf(w, "  %+7.2fs  %-18s %s\n", float64(s.AtMS)/1000, s.What, s.Detail)
	}
	fmt.Fprintln(w)
	if res.Held {
		fmt.Fprintf(w, "Detected %d ms into the burst, revoked on the spot: $0 lost.\n", res.DetectedAfter)
	}
	fmt.Fprintln(w, "\nThe audit log's view of the agent (stack audit timeline --agent "+demoAgent+"), last lines:")
	fmt.Fprintln(w)
	fmt.Fprint(w, elide(res.AuditTimeline, 12))
}

// elide keeps a table's header line and its last n lines.
func elide(table string, n int) string {
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if len(lines) <= n+2 {
		return table
	}
	out := []string{lines[0], fmt.Sprintf("  ... %d earlier lines ...", len(lines)-1-n)}
	out = append(out, lines[len(lines)-n:]...)
	return strings.Join(out, "\n") + "\n"
}

// dollars formats cents as $12,345.67.
func dollars(cents int64) string {
	whole := fmt.Sprint(cents / 100)
	var b strings.Builder
	for i, r := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return fmt.Sprintf("$%s.%02d", b.String(), cents%100)
}

// waitRunFile waits for the sidecar's proxy.json.
func waitRunFile(dir string, done chan error) (runInfo, error) {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(dir, runFile)); err == nil {
			var info runInfo
			if json.Unmarshal(b, &info) == nil && info.Listen != "" {
				return info, nil
			}
		}
		select {
		case err := <-done:
			if err == nil {
				err = errors.New("stack proxy stopped before listening")
			}
			done <- nil
			return runInfo{}, err
		case <-time.After(20 * time.Millisecond):
		}
	}
	return runInfo{}, errors.New("stack proxy did not start within 15s")
}

// demoStripe is the local "Stripe": TLS on 127.0.0.1 with a certificate
// for api.stripe.com from its own CA.
type demoStripe struct {
	srv                 *http.Server
	port                string
	moved               atomic.Int64 // cents transferred
	withKey, withoutKey atomic.Int64
	wg                  sync.WaitGroup
}

func startDemoStripe(dir string) (*demoStripe, error) {
	authority, err := ca.Generate(time.Now(), "demo upstream CA")
	if err != nil {
		return nil, err
	}
	leaf, err := authority.Leaf(demoHost)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "upstream-ca.pem"), authority.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &demoStripe{}
	_, s.port, _ = net.SplitHostPort(ln.Addr().String())
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+demoSecret {
			s.withoutKey.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"message":"Invalid API Key provided"}}`)
			return
		}
		s.withKey.Add(1)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/transfers":
			r.ParseForm()
			var cents int64
			fmt.Sscan(r.PostForm.Get("amount"), &cents)
			s.moved.Add(cents)
			fmt.Fprintf(w, `{"id":"tr_demo","object":"transfer","amount":%d}`, cents)
		case r.URL.Path == "/v1/balance":
			io.WriteString(w, `{"object":"balance","available":[{"amount":1234500,"currency":"usd"}]}`)
		default:
			io.WriteString(w, `{"object":"list","data":[]}`)
		}
	})
	s.srv = &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{*leaf}}, ReadHeaderTimeout: 5 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.srv.ServeTLS(ln, "", "")
	}()
	return s, nil
}

func (s *demoStripe) close() {
	s.srv.Close()
	s.wg.Wait()
}

// agentEvent is a line the demo agent prints.
type agentEvent struct {
	Kind   string `json:"kind"`
	N      int    `json:"n,omitempty"`
	Status int    `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// demoAgentMain is the agent: a plain HTTP client configured only by its
// environment (HTTPS_PROXY, SSL_CERT_FILE, the API base URL and the
// placeholder key), as any agent runtime would be.
func demoAgentMain(ctx context.Context, stdout io.Writer) error {
	base := os.Getenv("STRIPE_API_BASE")
	key := os.Getenv("STRIPE_API_KEY")
	if base == "" || key == "" {
		return errors.New("demo agent: STRIPE_API_BASE and STRIPE_API_KEY must be set")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}
	enc := json.NewEncoder(stdout)
	call := func(method, path string, form url.Values) (int, string, error) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, body)
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get(reason.Header), nil
	}

	n := 0
	for deadline := time.Now().Add(demoBase); time.Now().Before(deadline); n++ {
		status, reason, err := call(http.MethodGet, "/v1/balance", nil)
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return fmt.Errorf("demo agent: baseline call %d answered %d %s", n, status, reason)
		}
		time.Sleep(time.Second / demoRate)
	}
	enc.Encode(agentEvent{Kind: "baseline-done", N: n})

	enc.Encode(agentEvent{Kind: "burst-start"})
	tick := time.NewTicker(time.Second / (demoRate * demoBurstX))
	defer tick.Stop()
	stop := time.Now().Add(demoMaxRun)
	for i := 0; time.Now().Before(stop); i++ {
		status, reason, err := call(http.MethodGet, "/v1/charges", url.Values(nil))
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			enc.Encode(agentEvent{Kind: "refused", N: i, Status: status, Reason: reason})
			break
		}
		<-tick.C
	}

	status, reason, err := call(http.MethodPost, "/v1/transfers", url.Values{"amount": {fmt.Sprint(demoAmount)}, "currency": {"usd"}, "destination": {"acct_attacker"}})
	if err != nil {
		return err
	}
	enc.Encode(agentEvent{Kind: "transfer", Status: status, Reason: reason})
	return nil
}
