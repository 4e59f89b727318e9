package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpproxy"
	"golang.org/x/sync/errgroup"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/config"
	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/admission"
	"github.com/stackctl/stack/control/console"
	"github.com/stackctl/stack/control/dropoff"
	"github.com/stackctl/stack/control/fleet"
	"github.com/stackctl/stack/control/fleetlog"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/control/workload"
	"github.com/stackctl/stack/hostmatch"
	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/proxy/ca"
	"github.com/stackctl/stack/vault/kms"
)

// controlMintClient is the HTTP client the control plane mints with. It
// is a server like any other, so it reaches token endpoints and STS
// through the proxy its environment names (HTTPS_PROXY, HTTP_PROXY and
// NO_PROXY, read as net/http reads them, when it starts), which is often
// the only way out of a cluster.
func controlMintClient(roots *x509.CertPool) *http.Client {
	proxy := httpproxy.FromEnvironment().ProxyFunc()
	return mintClient(roots, func(r *http.Request) (*url.URL, error) { return proxy(r.URL) })
}

// Files of the control plane in its data directory.
const (
	controlCACertFile = "control-ca.pem"
	controlCAKeyFile  = "control-ca-key.json"
	controlRunFile    = "control.json" // where a running control plane listens; removed on exit
	controlStateFile  = "control-state.json"
)

func (a *app) controlCACertPath() string { return filepath.Join(a.home(), controlCACertFile) }
func (a *app) controlCAKeyPath() string  { return filepath.Join(a.home(), controlCAKeyFile) }

// controlRunInfo is the content of control.json.
type controlRunInfo struct {
	PID    int    `json:"pid"`
	Listen string `json:"listen"`
	URL    string `json:"url"`
	Home   string `json:"home"`
}

func newControlCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "control",
		Short: "Run the control plane: passports, revocations and credentials for a fleet of sidecars",
		Long: `control runs the control plane, an HTTPS JSON API that a fleet of sidecars
joins. It holds the issuer key and signs every agent's passport, pushes
revocations to every sidecar through a watch feed (each applies it to its
agent's next request), keeps the vault and leases credentials to the
sidecars of the agents that are granted them, and records all of it in its
audit log.

Run "stack init --control" first: it makes the control plane's TLS CA
(stack control ca export prints it for sidecars and the CLI) and the
operator token (control.token) the CLI sends. Then register agents
(stack agent register) and let sidecars join, with a one-time join token
(stack control join-token) or a workload OIDC token mapped to an agent by
control.oidc_issuers.

People use the web console on the same listener, at https://HOST:PORT/ui/:
sign in with the operator token, or through an OpenID Connect provider set
in control.console.oidc (admins and viewers); control.console.enabled: false
turns it off (docs/console.md).

Its state (agents, join tokens, sidecars, revocations) lives in
control.store_path, or in etcd with --store etcd and control.etcd.*; the vault in vault.path, or with etcd in
etcd too (a vault.path file found then is imported once); the audit log in audit.path.
When the store has not answered for control.store_timeout (3s), it refuses
requests (503 unavailable), ends its feeds and fails /readyz until the store
answers again, rather than serve state that may be old.
SIGHUP reloads the issuer keys (after "stack passport rotate-key"); sidecars
fetch a key they do not know when they meet it. On etcd the issuer keys
live in the store, shared by every replica: the first replica imports its
keys file, rotate-key rotates them there, and every replica serves a
change at once. SIGINT/SIGTERM stop it;
sidecars keep serving with what they have and
catch up when it is back.`,
		Example: `  stack init --control
  stack control --listen 0.0.0.0:9443 --host stack-control.internal
  stack agent register billing-bot --role billing-reporter
  stack control join-token --agent billing-bot
  stack proxy --control https://stack-control.internal:9443 --control-ca control-ca.pem --join-token stkj_...`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotationServer: "true"},
		RunE:        func(cmd *cobra.Command, _ []string) error { return a.runControl(cmd.Context()) },
	}
	f := cmd.Flags()
	f.String("listen", "", "HTTPS address (default from config: 127.0.0.1:9443)")
	f.String("store", "", "where state lives: bbolt (default) or etcd (control.etcd.*)")
	f.StringSlice("host", nil, "a name or address of the certificate besides localhost and loopback (repeatable)")
	f.String("tls-cert", "", "PEM certificate to serve instead of one from the control CA")
	f.String("tls-key", "", "PEM private key of --tls-cert")
	a.bindFlag(cmd, "control.listen", "listen")
	a.bindFlag(cmd, "control.store", "store")
	a.bindFlag(cmd, "control.hosts", "host")
	a.bindFlag(cmd, "control.tls_cert", "tls-cert")
	a.bindFlag(cmd, "control.tls_key", "tls-key")
	cmd.AddCommand(newControlCACmd(a), newJoinTokenCmd(a), newControlStatusCmd(a), newControlFleetKeyCmd(a))
	return cmd
}

func newControlCACmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "The control plane's TLS CA, which sidecars and the CLI trust"}
	cmd.AddCommand(&cobra.Command{
		Use:   "export",
		Short: "Print the control plane's CA certificate (PEM)",
		Long: `export prints the CA certificate the control plane's TLS certificate chains
to. Give it to sidecars (--control-ca, control.ca) and to CLIs that talk to
the control plane. Its private key stays in the data directory, wrapped by
the KMS.`,
		Example: `  stack control ca export > control-ca.pem
  kubectl create configmap stack-control-ca --from-file=ca.pem=control-ca.pem`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cert, err := os.ReadFile(a.controlCACertPath())
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("no control CA in %s: run `stack init --control` first", a.home())
			}
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(cert)
			return err
		},
	})
	return cmd
}

func newJoinTokenCmd(a *app) *cobra.Command {
	var (
		agent string
		ttl   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "join-token --agent NAME [--ttl 10m]",
		Short: "Print a one-time token with which one sidecar joins as an agent",
		Long: `join-token asks the control plane for a join token: one sidecar may join
with it, once, before it expires, and then serves the agent. The token is
printed alone on stdout; the control plane keeps only its hash.`,
		Example: `  stack control join-token --agent billing-bot
  T=$(stack control join-token --agent billing-bot --ttl 1h)
  stack proxy --control https://127.0.0.1:9443 --control-ca control-ca.pem --join-token "$T"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if agent == "" {
				return usageError(errors.New("join-token: --agent is required"))
			}
			c, err := a.controlAPI(cmd.Context(), true)
			if err != nil {
				return err
			}
			var out control.JoinTokenResponse
			if err := c.do(cmd.Context(), http.MethodPost, control.PathTokens, control.JoinTokenRequest{Agent: agent, TTL: control.Duration(ttl)}, &out); err != nil {
				return fmt.Errorf("join-token: %w", err)
			}
			fmt.Fprintln(a.stdout, out.Token)
			return nil
		},
	}
	cmd.Flags().StringVar(&agent, "agent", "", "the agent the sidecar will serve")
	cmd.Flags().DurationVar(&ttl, "ttl", control.DefaultJoinTokenTTL, "how long the token may be used")
	return cmd
}

func newControlStatusCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "List joined sidecars: agent, feed revision, lag and last contact",
		Example: `  stack control status
  STACK_CONTROL_URL=https://stack-control:9443 stack control status --json | jq '.sidecars[] | select(.lag > 0)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.controlAPI(cmd.Context(), true)
			if err != nil {
				return err
			}
			var st control.Status
			if err := c.do(cmd.Context(), http.MethodGet, control.PathStatus, nil, &st); err != nil {
				return fmt.Errorf("status: %w", err)
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			fmt.Fprintf(a.stdout, "control plane at %s: revision %d, %d agents, %d sidecars\n", c.base, st.Rev, st.Agents, len(st.Sidecars))
			if len(st.Sidecars) == 0 {
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SIDECAR\tNAME\tAGENT\tJOINED BY\tWATCHING\tREV\tLAG\tLAST CONTACT")
			for _, s := range st.Sidecars {
				last := "-"
				if !s.LastContact.IsZero() {
					last = time.Since(s.LastContact).Round(time.Second).String() + " ago"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%d\t%d\t%s\n", s.ID, s.Name, s.Agent, s.Method, s.Watching, s.Rev, s.Lag, last)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) runControl(ctx context.Context) error {
	cfg := a.cfg
	log := a.log
	k, err := a.openKMS(ctx)
	if err != nil {
		return err
	}
	token, err := readOperatorToken(cfg.Control.TokenFile)
	if err != nil {
		return err
	}
	st, err := openControlStore(ctx, cfg.Control, log)
	if err != nil {
		return err
	}
	a.onClose(st.Close)
	keys, keysRev, sharedKeys, err := a.controlKeys(ctx, st, k)
	if err != nil {
		return err
	}
	v, err := a.openControlVault(ctx, st, k, log)
	if err != nil {
		return err
	}
	a.onClose(v.Close)
	signer, err := newNoteSigner(auditKeyName, currentKey(keys))
	if err != nil {
		return err
	}
	auditLog, err := audit.Open(cfg.Audit.Path, auditWriteOptions(a, signer))
	if err != nil {
		return ownedByOther(err, cfg.Audit.Path)
	}
	a.onClose(auditLog.Close)
	var attester control.Attester
	if len(cfg.Control.OIDCIssuers) > 0 {
		attester, err = newAttester(cfg.Control.OIDCIssuers)
		if err != nil {
			return usageError(fmt.Errorf("control.oidc_issuers: %w", err))
		}
	}
	tlsCfg, err := a.controlTLS(ctx)
	if err != nil {
		return err
	}
	roots, err := mintRoots(systemRoots(), cfg.Vault.MintCA)
	if err != nil {
		return err
	}
	// The witness reports findings to the server, made after it.
	var srv *control.Server
	// The console's live view takes what the fleet log commits.
	live := console.NewLive(nil)
	fp, err := a.openFleet(ctx, k, func(st fleet.Stream, f fleet.Finding) { srv.AuditIntegrity(st, f) }, live.Observe)
	if err != nil {
		return err
	}
	metrics := control.NewMetrics()
	mints := mint.NewCache(mint.CacheOptions{Env: mint.Env{HTTPClient: controlMintClient(roots)}, OnMint: metrics.ObserveMint})
	a.onClose(func() error { mints.Close(); return nil })
	metrics.CountMinted(mints)
	opts := control.Options{
		Mints: mints, Metrics: metrics,
		Store: st, Keys: keys, IssuerName: cfg.Passport.Issuer, Audience: cfg.Passport.Audience,
		DefaultTTL: cfg.Passport.DefaultTTL, MaxTTL: cfg.Passport.MaxTTL, Leeway: cfg.Passport.Leeway,
		Token: token, Roles: cfg.Passport.Roles, Vault: v, Attester: attester, Audit: auditLog,
		SidecarTTL: cfg.Control.SidecarTTL, LeaseTTL: cfg.Control.LeaseTTL, Heartbeat: cfg.Control.Heartbeat,
		LoadKeys: a.issuerKeys, KeyWrapper: sharedKeys, KeysRev: keysRev, KeyActivationDelay: cfg.Control.KeyActivationDelay,
		Log:          log.Named("control"),
		StoreTimeout: cfg.Control.StoreTimeout,
		DetectorGate: cfg.Control.DetectorGate,

		RevokeOnIntegrity: cfg.Control.AuditIntegrity == "revoke",
		Handoffs:          &dropoff.Box{Store: st, KMS: k},
	}
	if w := cfg.Control.Webhook; w.Image != "" {
		if opts.Webhook, err = admission.New(admission.Options{Image: w.Image, PullPolicy: w.PullPolicy, ControlURL: w.ControlURL}); err != nil {
			return usageError(err)
		}
		log.Info("serving the Kubernetes admission webhook", zap.String("path", admission.Path), zap.String("image", w.Image))
	}
	if fp != nil {
		opts.Fleet, opts.FleetLog, opts.FleetKey, opts.FleetOrigin = fp.witness, fp.log, fp.key, fleetlog.DefaultOrigin
		opts.FleetSize = func(ck []byte) (uint64, error) { return parseFleetCheckpointSize(fp.key, ck) }
	}
	if srv, err = control.New(opts); err != nil {
		return err
	}
	if err := a.startOTLP(ctx, fp, metrics.Registry); err != nil {
		return err
	}
	handler, err := a.withConsole(ctx, srv, live, token)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Control.Listen)
	if err != nil {
		return fmt.Errorf("control.listen %s: %w", cfg.Control.Listen, err)
	}
	hs := &http.Server{
		Handler: handler, TLSConfig: tlsCfg,
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: zap.NewStdLog(log.Named("http")),
	}
	addr := ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	info := controlRunInfo{PID: os.Getpid(), Listen: ln.Addr().String(), URL: "https://" + net.JoinHostPort(host, fmt.Sprint(addr.Port)), Home: a.home()}
	// Signals are caught before the run file says the control plane is there.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	defer a.writeRunFile(controlRunFile, info)()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := hs.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error { return srv.Run(gctx, 30*time.Second) })
	g.Go(func() error { return srv.WatchKeys(gctx) })
	g.Go(func() error { return srv.CheckStore(gctx) })
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				// A key rotated with `stack passport rotate-key`, or,
				// on etcd, a set restored into the store.
				_, _ = srv.Reload(gctx) // it logs the outcome
			}
		}
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 5*time.Second)
		defer cancel()
		// Feed watches never end on their own: close them.
		err := hs.Shutdown(sctx)
		if errors.Is(err, context.DeadlineExceeded) {
			err = hs.Close()
		}
		return err
	})
	log.Info("stack control ready", zap.String("url", info.URL), zap.String("kms", k.URI()), zap.String("home", a.home()))
	fmt.Fprintf(a.stderr, "stack control listening on %s\n", info.URL)
	err = g.Wait()
	log.Info("stack control stopped")
	return err
}

// controlKeys returns the control plane's issuer keys. On etcd they are
// shared by every replica through the store (the first replica imports
// its keys file, the others use what it wrote; the store's revision and
// the KMS that unwraps them come back too); otherwise they are the keys
// file's.
func (a *app) controlKeys(ctx context.Context, st store.Store, k kms.KMS) (keys *passport.KeySet, rev int64, shared passport.Wrapper, err error) {
	if !a.cfg.Control.OnEtcd() {
		keys, err = a.issuerKeys(ctx)
		return keys, 0, nil, err
	}
	keys, rev, err = control.SharedKeys(ctx, st, k, a.issuerKeys)
	if err != nil {
		return nil, 0, nil, err
	}
	kid, _ := keys.Current(time.Now())
	a.log.Info("issuer keys from the store", zap.String("key", control.KeyIssuerKeys), zap.Int64("rev", rev), zap.String("current", kid))
	return keys, rev, k, nil
}

// controlTLS is the control plane's server TLS: the configured
// certificate, or leaves from the control CA for whatever name or
// address a client asks for.
func (a *app) controlTLS(ctx context.Context) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	if a.cfg.Control.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(a.cfg.Control.TLSCert, a.cfg.Control.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("control.tls_cert: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
		return cfg, nil
	}
	k, err := a.openKMS(ctx)
	if err != nil {
		return nil, err
	}
	authority, err := ca.Load(ctx, a.controlCACertPath(), a.controlCAKeyPath(), k)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no control CA in %s: run `stack init --control` first, or give --tls-cert and --tls-key", a.home())
		}
		return nil, err
	}
	allowed := map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true}
	for _, h := range a.cfg.Control.Hosts {
		n, _ := hostmatch.Pattern(h) // validated by config
		allowed[n] = true
	}
	leaves := ca.NewLeafCache(ca.CacheOptions{Size: 64})
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name, err := hostmatch.Normalize(hello.ServerName)
		if err != nil || !allowed[name] {
			// No SNI (an address) or a name not configured: the address
			// the client reached.
			if la, ok := hello.Conn.LocalAddr().(*net.TCPAddr); ok {
				name = la.IP.String()
			}
		}
		return leaves.Fetch(name, func() (*tls.Certificate, error) { return authority.Leaf(name) })
	}
	return cfg, nil
}

// readOperatorToken reads the operator token file made by init --control.
func readOperatorToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no operator token at %s: run `stack init --control` (or set control.token_file)", path)
	}
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 32 {
		return "", fmt.Errorf("operator token %s is too short", path)
	}
	return tok, nil
}

// controlAPI returns a client for the control plane: control.url (the
// first of its replicas that is ready), or the one running with this data
// directory. With required false it returns nil when there is none, and
// the CLI works on local files.
func (a *app) controlAPI(ctx context.Context, required bool) (*adminClient, error) {
	url := ""
	if len(a.cfg.Control.URLs) > 0 {
		url = strings.TrimRight(a.cfg.Control.URLs[0], "/")
	}
	if url == "" {
		url = a.localControlURL()
	}
	if url == "" {
		if required {
			return nil, errors.New("no control plane: set control.url (STACK_CONTROL_URL), or run this in the data directory of a running `stack control`")
		}
		return nil, nil
	}
	tok, err := readOperatorToken(a.cfg.Control.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("%w; the CLI needs the control plane's operator token (copy control.token from its data directory)", err)
	}
	roots, err := a.controlRoots()
	if err != nil {
		return nil, err
	}
	c := &adminClient{
		base: url, token: tok, what: "control plane",
		http: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
			Proxy:           nil,
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		}},
	}
	if len(a.cfg.Control.URLs) > 1 {
		c.base = firstAnswering(ctx, c.http, a.cfg.Control.URLs)
	}
	return c, nil
}

// firstAnswering returns the first replica that says it is ready
// (/readyz: it answers and reaches its store), so that a command is not
// sent to one that is down (a command is sent once:
// it is not replayed on another replica after a failure, which could
// apply it twice). When none answers, the first, whose error the command
// then reports.
func firstAnswering(ctx context.Context, hc *http.Client, urls []string) string {
	for _, u := range urls {
		u = strings.TrimRight(u, "/")
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		req, err := http.NewRequestWithContext(cctx, http.MethodGet, u+"/readyz", nil)
		if err == nil {
			var resp *http.Response
			if resp, err = hc.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					cancel()
					return u
				}
			}
		}
		cancel()
	}
	return strings.TrimRight(urls[0], "/")
}

// localControlURL is the URL of the control plane running with this data
// directory, or "".
func (a *app) localControlURL() string {
	b, err := os.ReadFile(filepath.Join(a.home(), controlRunFile))
	if err != nil {
		return ""
	}
	var info controlRunInfo
	if json.Unmarshal(b, &info) != nil || info.URL == "" || info.PID <= 0 || errors.Is(syscall.Kill(info.PID, 0), syscall.ESRCH) {
		return "" // a stale file from a control plane that did not exit cleanly
	}
	return info.URL
}

// localControl returns a client for the control plane running with this
// data directory (whatever control.url says), or nil.
func (a *app) localControl(ctx context.Context) (*adminClient, error) {
	if a.localControlURL() == "" {
		return nil, nil
	}
	saved := a.cfg.Control.URLs
	a.cfg.Control.URLs = nil
	defer func() { a.cfg.Control.URLs = saved }()
	return a.controlAPI(ctx, true)
}

// controlRoots are the roots that verify the control plane: control.ca,
// else this directory's control CA, else the system roots.
func (a *app) controlRoots() (*x509.CertPool, error) {
	file := a.cfg.Control.CA
	if file == "" {
		if _, err := os.Stat(a.controlCACertPath()); err == nil {
			file = a.controlCACertPath()
		}
	}
	if file == "" {
		return x509.SystemCertPool()
	}
	// Only the control plane's CA: not the system roots too.
	return withPEM(nil, "control.ca", file)
}

// newAttester builds the workload identity check of control.oidc_issuers.
func newAttester(issuers []config.OIDCIssuerConfig) (control.Attester, error) {
	var list []workload.Issuer
	for _, is := range issuers {
		w := workload.Issuer{URL: is.Issuer, Audience: is.Audience}
		if is.CAFile != "" {
			pem, err := os.ReadFile(is.CAFile)
			if err != nil {
				return nil, fmt.Errorf("%s: ca_file: %w", is.Issuer, err)
			}
			w.RootCAs = x509.NewCertPool()
			if !w.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s: ca_file %s holds no PEM certificate", is.Issuer, is.CAFile)
			}
		}
		for _, r := range is.Rules {
			w.Rules = append(w.Rules, workload.Rule{Agent: r.Agent, Claims: r.Claims})
		}
		list = append(list, w)
	}
	v, err := workload.New(list, workload.Options{})
	if err != nil {
		return nil, err
	}
	return control.NewAttester(v), nil
}

// openControlStore opens the store control.store names.
func openControlStore(ctx context.Context, c config.ControlConfig, log *zap.Logger) (store.Store, error) {
	if c.OnEtcd() {
		st, err := store.OpenEtcd(ctx, store.EtcdOptions{
			Endpoints:   c.Etcd.Endpoints,
			Prefix:      c.Etcd.Prefix,
			DialTimeout: c.Etcd.DialTimeout,
			CertFile:    c.Etcd.TLS.CertFile,
			KeyFile:     c.Etcd.TLS.KeyFile,
			CAFile:      c.Etcd.TLS.CAFile,
			Logger:      log.Named("etcd"),
		})
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	st, err := store.OpenBolt(c.StorePath, store.BoltOptions{})
	if err != nil {
		return nil, ownedByOther(err, c.StorePath)
	}
	return st, nil
}
