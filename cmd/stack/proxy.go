package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/config"
	"github.com/stackctl/stack/control/client"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/handoff/desk"
	"github.com/stackctl/stack/hostmatch"
	"github.com/stackctl/stack/inject"
	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/proxy"
	"github.com/stackctl/stack/proxy/ca"
	"github.com/stackctl/stack/proxy/egress"
	"github.com/stackctl/stack/vault"
	"github.com/stackctl/stack/vault/kms"
)

// Files a running sidecar keeps in the data directory.
const (
	adminTokenFile = "admin.token"
	runFile        = "proxy.json" // where a running sidecar listens; removed on exit
)

// runInfo is the content of proxy.json.
type runInfo struct {
	PID    int    `json:"pid"`
	Listen string `json:"listen"`
	Admin  string `json:"admin"`
	Home   string `json:"home"`
}

func newProxyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the sidecar: the HTTPS proxy that checks passports and injects credentials",
		Long: `proxy runs the data plane. Agents set HTTPS_PROXY (and HTTP_PROXY) to
http://LISTEN, trust the CA from "stack ca export", send their passport in
Proxy-Authorization (Basic agent-id:passport, or Bearer), and hold only
placeholders such as stk_ph_stripe where API keys would go.

Every request, including each one inside an intercepted HTTPS tunnel, is
checked against the passport's scope and the egress policy; placeholders are
replaced with real credentials only on the way to the hosts they are bound
to; every decision is written to the audit log.

The admin listener serves /metrics, /healthz and /readyz to anyone, and the
admin API (revocation, vault changes, audit snapshots) only with the token
in DATA-DIR/admin.token. While the proxy runs, "stack passport revoke",
"stack vault put|rotate|rm" and "stack audit verify|tail|timeline|export" go
through that API. SIGHUP (or POST /v1/reload) reloads the issuer keys and
the detector policy (modes, alert_only, rules, suppressions), all or
nothing: a reload that fails changes nothing. A changed kms.uri needs a
restart. SIGINT/SIGTERM drain open requests and exit.

With --control (control.url) the sidecar joins a control plane instead of
using local keys and a local vault: it obtains its agent's passport and
refreshes it at 2/3 of its lifetime, applies every revocation the control
plane pushes, and holds the agent's credentials as leases in memory only.
It joins once with --join-token or by workload identity with
--oidc-token-file, and keeps its sidecar credential in DATA-DIR/control-state.json.
--control takes one URL (one control plane, or a load balancer in front of
its replicas) or several separated by commas (the replicas themselves):
the sidecar talks to one at a time and moves to the next, keeping its
credential, passport, leases and feed revision, when it stops answering.
While the control plane is away it keeps serving with what it has, and
refuses everything once the passport expires (or after
control.max_staleness without contact).`,
		Example: `  stack proxy
  stack proxy --listen 127.0.0.1:3128 --admin-listen 127.0.0.1:9091
  stack proxy --passport-file /var/run/stack/passport --allow-cidr 10.20.0.0/16
  stack proxy --control https://stack-control:9443 --control-ca control-ca.pem --join-token stkj_...
  stack proxy --control https://stack-control:9443 --control-ca /etc/stack/ca.pem \
    --oidc-token-file /var/run/secrets/stack/token
  stack proxy --control https://control-0:9443,https://control-1:9443,https://control-2:9443 \
    --control-ca control-ca.pem --join-token stkj_...
  HTTPS_PROXY=http://127.0.0.1:8080 curl --cacert <(stack ca export) \
    --proxy-user "my-agent:$PASSPORT" -H "Authorization: Bearer stk_ph_stripe" \
    https://api.stripe.com/v1/balance`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotationServer: "true"},
		RunE:        func(cmd *cobra.Command, _ []string) error { return a.runProxy(cmd.Context()) },
	}
	f := cmd.Flags()
	f.String("listen", "", "proxy address (default from config: 127.0.0.1:8080)")
	f.String("admin-listen", "", "admin address for /metrics, /healthz, /readyz and the admin API (default 127.0.0.1:9090)")
	f.String("upstream-ca", "", "PEM file of extra roots trusted for upstream TLS")
	f.StringSlice("allow-cidr", nil, "allow dialling this otherwise refused range (repeatable)")
	f.String("passport-file", "", "single-agent mode: the passport to use when requests carry none")
	f.StringSlice("resolve", nil, "pin HOST=IP before DNS, like curl --resolve (repeatable; egress checks still apply)")
	f.String("control", "", "join this control plane (https://HOST:PORT, or its replicas' URLs separated by commas) and serve its agent: passport, revocations and credentials come from it")
	f.String("control-ca", "", "PEM file of the control plane's CA (stack control ca export)")
	f.String("join-token", "", "one-time join token (stack control join-token); later starts reuse the credential it earned")
	f.String("join-token-file", "", "file holding the join token (instead of --join-token)")
	f.String("oidc-token-file", "", "join by workload identity: file holding the OIDC token (a projected service-account token with audience stack)")
	a.bindFlag(cmd, "proxy.listen", "listen")
	a.bindFlag(cmd, "proxy.admin_listen", "admin-listen")
	a.bindFlag(cmd, "proxy.upstream_ca", "upstream-ca")
	a.bindFlag(cmd, "egress.allow_cidrs", "allow-cidr")
	a.bindFlag(cmd, "proxy.passport_file", "passport-file")
	a.bindFlag(cmd, "egress.resolve", "resolve")
	a.bindFlag(cmd, "control.url", "control")
	a.bindFlag(cmd, "control.ca", "control-ca")
	a.bindFlag(cmd, "control.join_token", "join-token")
	a.bindFlag(cmd, "control.join_token_file", "join-token-file")
	a.bindFlag(cmd, "control.oidc_token_file", "oidc-token-file")
	return cmd
}

// sidecar is what a reload changes in the running proxy: the detector
// policy and, unless the keys come from a control plane, the issuer keys
// its verifier trusts.
type sidecar struct {
	a        *app
	verifier *passport.Verifier
	grid     *detect.Grid
	joined   bool
	log      *zap.Logger

	// mu makes reloads (SIGHUP, POST /v1/reload) one at a time, so the
	// state in force is always the whole of one reload.
	mu sync.Mutex
}

func (a *app) runProxy(ctx context.Context) error {
	// goproxy's HTTP/2 server logs through the standard logger, one line
	// per agent that drops a connection before its preface: debug noise,
	// not something to print on stderr.
	if restore, err := zap.RedirectStdLogAt(a.log.Named("stdlog"), zapcore.DebugLevel); err == nil {
		defer restore()
	}
	tuneGC(os.Getenv)
	p, err := a.openSidecar(ctx)
	if err != nil {
		return err
	}
	metrics := p.metrics
	opts := p.proxyOptions(a.cfg, metrics, a.log)
	if p.joined {
		if p.link, err = a.joinControl(ctx, p.verifier, p.revs, p.leases, p.detectors.grid, metrics); err != nil {
			return err
		}
		opts.Passports, opts.Revoker, opts.Gate = p.link, p.link, p.link.Gate
		opts.Handoffs = &desk.Desk{Control: p.link, Verifier: p.verifier}
		if err := a.shipAudit(ctx, p); err != nil {
			return err
		}
	}
	px, err := proxy.New(opts)
	if err != nil {
		return err
	}
	a.onClose(px.Close)
	return a.serveProxy(ctx, p, px, metrics)
}

// sidecarParts is what the sidecar opens at start and serves with. What
// needs closing is closed when the command ends, last opened first.
type sidecarParts struct {
	kms      kms.KMS
	joined   bool           // control.url is set
	link     *client.Client // the control plane, once joined
	revs     *passport.RevocationStore
	verifier *passport.Verifier

	// The credentials: leases from the control plane when joined, the
	// vault otherwise.
	creds      inject.Store
	bound      func(string) ([]string, bool)
	leases     *proxy.LeaseStore
	vaultStore *proxy.VaultStore
	secrets    *liveSecrets
	// mints holds what a standalone sidecar mints from its vault.
	mints   *mint.Cache
	metrics *proxy.Metrics

	audit     *audit.Log
	auditKey  string // the note verifier key of the audit log's checkpoints
	ca        *ca.CA
	guard     *egress.Guard
	roots     *x509.CertPool
	detectors *detectors
}

// openSidecar opens, in this order, the KMS, the issuer keys, the
// revocation list and the verifier, the credentials, the audit log, the
// interception CA, the egress guard, the upstream roots and the detectors.
func (a *app) openSidecar(ctx context.Context) (*sidecarParts, error) {
	cfg := a.cfg
	k, err := a.openKMS(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := a.issuerKeys(ctx)
	if err != nil {
		return nil, err
	}
	p := &sidecarParts{kms: k, joined: len(cfg.Control.URLs) > 0, secrets: &liveSecrets{}, metrics: proxy.NewMetrics()}
	if err := a.openVerifier(p, keys); err != nil {
		return nil, err
	}
	if p.roots, err = upstreamRoots(cfg.Proxy.UpstreamCA); err != nil {
		return nil, err
	}
	if err := a.openCredentials(ctx, p); err != nil {
		return nil, err
	}
	if p.audit, p.auditKey, err = a.openAuditLog(keys); err != nil {
		return nil, err
	}
	if p.ca, err = ca.Load(ctx, a.caCertPath(), a.caKeyPath(), k); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no interception CA in %s: run `stack init` first", a.home())
		}
		return nil, err
	}
	if p.guard, err = egressGuard(cfg.Egress); err != nil {
		return nil, err
	}
	if p.detectors, err = buildDetectors(cfg, p.bound, p.secrets, p.metrics, a.log); err != nil {
		return nil, err
	}
	a.onClose(p.detectors.close)
	return p, nil
}

// openVerifier opens the revocation list and makes the passport verifier:
// with the local issuer keys, or, when joined, with the control plane's.
func (a *app) openVerifier(p *sidecarParts, keys *passport.KeySet) error {
	cfg := a.cfg.Passport
	revs, err := passport.OpenRevocationStore(cfg.RevocationsPath, passport.RevocationOptions{MaxTTL: cfg.MaxTTL, Leeway: cfg.Leeway})
	if err != nil {
		return ownedByOther(err, cfg.RevocationsPath)
	}
	a.onClose(revs.Close)
	p.revs = revs
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = -1 // the verifier reads 0 as its default; 0s in config means none
	}
	vopts := passport.VerifierOptions{
		Audience: cfg.Audience, Issuer: cfg.Issuer,
		Leeway: leeway, MaxTTL: cfg.MaxTTL, Revocations: revs, CacheSize: cfg.CacheSize,
	}
	if p.joined {
		// A joined sidecar verifies with the control plane's keys only,
		// and fetches them again for a passport signed by a key it has
		// not seen (agents presenting their own passports).
		vopts.KeyRefresh = func() (jose.JSONWebKeySet, error) { return p.link.FetchKeys() }
	} else {
		vopts.Keys = keys.JWKS(time.Now())
	}
	p.verifier, err = passport.NewVerifier(vopts)
	return err
}

// openCredentials sets up where injected credentials come from: leases
// the control plane hands out when joined, the local vault otherwise.
// Either keeps the detectors' index of secret values current.
func (a *app) openCredentials(ctx context.Context, p *sidecarParts) error {
	cfg := a.cfg
	if p.joined {
		if cfg.Proxy.PassportFile != "" {
			return usageError(errors.New("proxy.passport_file and control.url exclude each other: a joined sidecar gets its passport from the control plane"))
		}
		p.leases = proxy.NewLeaseStore(nil)
		p.leases.OnReload = p.secrets.set
		p.metrics.CountLeases(p.leases)
		p.creds, p.bound = p.leases, p.leases.Bound
		return nil
	}
	v, err := vault.Open(cfg.Vault.Path, p.kms, vault.Options{CacheTTL: cfg.Vault.CacheTTL, CacheSize: cfg.Vault.CacheSize})
	if err != nil {
		return ownedByOther(err, cfg.Vault.Path)
	}
	a.onClose(v.Close)
	roots, err := mintRoots(p.roots, cfg.Vault.MintCA)
	if err != nil {
		return err
	}
	p.mints = mint.NewCache(mint.CacheOptions{Env: mint.Env{HTTPClient: sidecarMintClient(roots)}, OnMint: p.metrics.ObserveMint})
	a.onClose(func() error { p.mints.Close(); return nil })
	p.metrics.CountMinted(p.mints)
	// Minted credentials go with the passports they were minted for: a
	// revoked agent's at once, and every one on a passport's revocation
	// (the cache does not know which passport minted what).
	p.revs.Notify(func(rv passport.Revocation) {
		if rv.Kind == passport.RevokeAgent {
			p.mints.DropAgent(rv.ID)
		} else {
			p.mints.DropAll()
		}
	})
	vaultStore, err := proxy.NewVaultStore(v, p.mints)
	if err != nil {
		return err
	}
	if err := p.secrets.rebuild(ctx, v); err != nil {
		return err
	}
	// A credential added or rotated while the sidecar runs is
	// recognised from then on.
	vaultStore.OnReload = func() {
		if err := p.secrets.rebuild(context.WithoutCancel(ctx), v); err != nil {
			a.log.Warn("exfiltration index of vault secrets not refreshed", zap.Error(err))
		}
	}
	p.vaultStore = vaultStore
	p.creds, p.bound = vaultStore, vaultStore.Bound
	return nil
}

// mintRoots adds the roots of vault.mint_ca, when set, to a copy of base.
func mintRoots(base *x509.CertPool, file string) (*x509.CertPool, error) {
	return withPEM(base, "vault.mint_ca", file)
}

// withPEM returns a copy of base (an empty pool when nil) with the
// certificates of the PEM file added, when file is set; errors name the
// config key the file came from.
func withPEM(base *x509.CertPool, key, file string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if base != nil {
		pool = base.Clone()
	}
	if file == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", key, file)
	}
	return pool, nil
}

// systemRoots is the system pool, or an empty one where there is none.
func systemRoots() *x509.CertPool {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		return x509.NewCertPool()
	}
	return pool
}

// sidecarMintClient is the HTTP client a standalone sidecar mints with:
// never through a proxy its environment names, since the sidecar is the
// agent's proxy and its own egress is its own to decide.
func sidecarMintClient(roots *x509.CertPool) *http.Client { return mintClient(roots, nil) }

// mintClient is the HTTP client minting reaches token endpoints with:
// roots, a bounded wait, and proxy (nil: none) choosing the proxy a
// request goes through.
func mintClient(roots *x509.CertPool, proxy func(*http.Request) (*url.URL, error)) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               proxy,
			TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

// openAuditLog opens the audit log, its checkpoints signed with the
// issuer's current key, and returns that key's note verifier key.
func (a *app) openAuditLog(keys *passport.KeySet) (*audit.Log, string, error) {
	signer, err := newNoteSigner(auditKeyName, currentKey(keys))
	if err != nil {
		return nil, "", err
	}
	vkey, err := signer.VerifierKey()
	if err != nil {
		return nil, "", err
	}
	auditLog, err := audit.Open(a.cfg.Audit.Path, auditWriteOptions(a, signer))
	if err != nil {
		return nil, "", ownedByOther(err, a.cfg.Audit.Path)
	}
	a.onClose(func() error {
		// Close signs the last checkpoint: say so if it could not.
		err := auditLog.Close()
		if err != nil {
			a.log.Error("closing the audit log", zap.Error(err))
		}
		return err
	})
	return auditLog, vkey, nil
}

// egressGuard refuses the dials egress.allow_cidrs does not allow, and
// resolves the hosts egress.resolve pins.
func egressGuard(cfg config.EgressConfig) (*egress.Guard, error) {
	var allow []netip.Prefix
	for _, c := range cfg.AllowCIDRs {
		allow = append(allow, netip.MustParsePrefix(strings.TrimSpace(c))) // validated by config
	}
	pinned := map[string][]netip.Addr{}
	for _, r := range cfg.Resolve {
		host, ip, _ := strings.Cut(strings.TrimSpace(r), "=") // validated by config
		h, _ := hostmatch.Pattern(host)
		pinned[h] = append(pinned[h], netip.MustParseAddr(ip))
	}
	guard, err := egress.New(egress.Options{AllowCIDRs: allow, Resolver: &egress.StaticResolver{Hosts: pinned, Next: net.DefaultResolver}})
	if err != nil {
		return nil, usageError(fmt.Errorf("egress.allow_cidrs: %w", err))
	}
	return guard, nil
}

// proxyOptions are the proxy's options before the sidecar joins a control
// plane, which then supplies the passports, revocations and gate.
func (p *sidecarParts) proxyOptions(cfg *config.Config, metrics *proxy.Metrics, log *zap.Logger) proxy.Options {
	opts := proxy.Options{
		Grid:        p.detectors.grid,
		Revoker:     p.revs,
		Alerts:      p.detectors.alerts(),
		Summaries:   p.detectors.summaries,
		ScanWindow:  cfg.Detect.ScanWindow,
		Verifier:    p.verifier,
		Injector:    inject.New(p.creds, inject.Options{}),
		Audit:       p.audit,
		CA:          p.ca,
		Guard:       p.guard,
		RootCAs:     p.roots,
		TunnelHosts: cfg.Proxy.TunnelHosts,
		Metrics:     metrics,
		Log:         log,

		ResponseHeaderTimeout: cfg.Proxy.UpstreamResponseTimeout,
		MaxConnsPerHost:       cfg.Proxy.MaxUpstreamConnsPerHost,
		HandshakeTimeout:      cfg.Proxy.HandshakeTimeout,
		IdleTimeout:           cfg.Proxy.IdleTimeout,
		MaxConnections:        cfg.Proxy.MaxConnections,
		MaxRequests:           cfg.Proxy.MaxRequests,
		DisableHTTP2:          !cfg.Proxy.HTTP2,
	}
	if cfg.Proxy.PassportFile != "" {
		opts.Passports = proxy.NewPassportFile(cfg.Proxy.PassportFile)
	}
	return opts
}

// serveProxy serves the proxy and the admin API until SIGINT or SIGTERM
// (or ctx) ends them, reloading on SIGHUP, then drains open requests.
func (a *app) serveProxy(ctx context.Context, p *sidecarParts, px *proxy.Proxy, metrics *proxy.Metrics) error {
	cfg, log := a.cfg, a.log
	sc := &sidecar{a: a, verifier: p.verifier, grid: p.detectors.grid, joined: p.joined, log: log}
	var ready atomic.Bool
	adminHandler, err := a.newAdminHandler(p, sc, metrics, &ready)
	if err != nil {
		return err
	}
	pln, aln, err := listenProxy(cfg.Proxy)
	if err != nil {
		return err
	}
	// An agent must never reach the admin API, or loop into the proxy,
	// through the proxy, whatever egress.allow_cidrs says.
	p.guard.RefuseListeners(pln.Addr().(*net.TCPAddr).AddrPort(), aln.Addr().(*net.TCPAddr).AddrPort())
	proxySrv := px.NewServer(zap.NewStdLog(log.Named("http")))
	adminSrv := &http.Server{Handler: adminHandler, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}

	// Start-up leaves heap garbage serving never reuses (configuration,
	// the detector catalogue's compilation): a few MiB of anonymous
	// memory that GOGC=200 would keep until the heap grows into it.
	debug.FreeOSMemory()
	// Signals are caught before the run file says the sidecar is there.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	info := runInfo{PID: os.Getpid(), Listen: pln.Addr().String(), Admin: aln.Addr().String(), Home: a.home()}
	defer a.writeRunFile(runFile, info)()

	g, gctx := errgroup.WithContext(ctx)
	// Before anything is served: a failure here returns with nothing to
	// wait for.
	if p.detectors.webhook != nil {
		// Not stopped with the servers: closing the proxy hands it the
		// last summaries of alert storms, and closing the detectors
		// (after the proxy) drains and stops it.
		if err := p.detectors.webhook.Start(context.WithoutCancel(gctx)); err != nil {
			return err
		}
	}
	g.Go(func() error { return serveHTTP(proxySrv, px.Listener(pln)) })
	g.Go(func() error { return serveHTTP(adminSrv, aln) })
	g.Go(func() error { return p.detectors.run(gctx, 30*time.Second, log) })
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				_ = sc.reload(gctx) // it logs the outcome
			}
		}
	})
	g.Go(func() error {
		<-gctx.Done()
		ready.Store(false)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), cfg.Proxy.ShutdownTimeout)
		defer cancel()
		err := proxySrv.Shutdown(sctx)
		// Requests inside intercepted tunnels live on hijacked
		// connections, which Shutdown does not wait for.
		if derr := px.Drain(sctx); derr != nil {
			log.Warn("shutdown before every request finished", zap.Error(derr))
		}
		adminSrv.Shutdown(sctx)
		return err
	})
	ready.Store(true)
	log.Info("stack proxy ready", zap.String("listen", info.Listen), zap.String("admin", info.Admin),
		zap.String("kms", p.kms.URI()), zap.String("home", a.home()))
	fmt.Fprintf(a.stderr, "stack proxy listening on %s (admin %s)\n", info.Listen, info.Admin)
	err = g.Wait()
	log.Info("stack proxy stopped")
	return err
}

// newAdminHandler makes the admin listener's handler, with the admin
// token from DATA-DIR/admin.token (made the first time). When joined, the
// sidecar is ready only while its link to the control plane is.
func (a *app) newAdminHandler(p *sidecarParts, sc *sidecar, metrics *proxy.Metrics, ready *atomic.Bool) (http.Handler, error) {
	token, err := ensureAdminToken(filepath.Join(a.home(), adminTokenFile))
	if err != nil {
		return nil, err
	}
	aopts := proxy.AdminOptions{
		Token: token, Metrics: metrics, Ready: ready.Load, Revocations: p.revs, Store: p.vaultStore,
		Audit: p.audit, Reload: sc.reload, Home: a.home(), Log: a.log,
	}
	if link := p.link; link != nil {
		aopts.Ready = func() bool { return ready.Load() && linkReady(link.Health()) }
		aopts.ReadyDetail = func() string { return linkDetail(link.Health()) }
	}
	return proxy.NewAdminHandler(aopts)
}

// listenProxy opens the proxy's listener and the admin listener.
func listenProxy(cfg config.ProxyConfig) (pln, aln net.Listener, err error) {
	pln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("proxy.listen %s: %w", cfg.Listen, err)
	}
	aln, err = net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		pln.Close()
		return nil, nil, fmt.Errorf("proxy.admin_listen %s: %w", cfg.AdminListen, err)
	}
	return pln, aln, nil
}

// serveHTTP serves srv on ln until Shutdown, which is not an error.
func serveHTTP(srv *http.Server, ln net.Listener) error {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// reload re-reads the detector policy from stack.yaml (modes, the
// rollout gate, rules, suppressions) and the issuer keys (a rotated key
// applies to verification). Listeners, egress, detector tuning and the
// KMS need a restart. Everything is read and checked before anything is
// applied, so a failure leaves the running state as it was. The vault
// index needs no reload: the sidecar holds vault.db, and every change
// made through its admin API re-indexes it.
func (s *sidecar) reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next, err := s.load(ctx)
	if err == nil {
		err = s.apply(next)
	}
	if err != nil {
		s.log.Error("reload failed; the running state is unchanged", zap.Error(err))
		return err
	}
	s.log.Info("reloaded the detector policy and issuer keys")
	return nil
}

// reloadState is what one reload applies.
type reloadState struct {
	policy detect.Policy
	// keys are the issuer's public keys by kid; nil when joined (the
	// control plane's keys).
	keys map[string]ed25519.PublicKey
}

// load reads and checks everything a reload applies, changing nothing.
func (s *sidecar) load(ctx context.Context) (*reloadState, error) {
	cfg, err := config.Load(config.LoadOptions{Home: s.a.home(), File: s.a.configFlag})
	if err != nil {
		return nil, err
	}
	if err := sameKMS(s.a.cfg.KMS, cfg.KMS); err != nil {
		return nil, err
	}
	next := &reloadState{policy: detectPolicy(cfg.Detect)}
	if s.joined {
		return next, nil
	}
	// The KMS opened at start: a reload opens no client of its own.
	keys, err := s.a.issuerKeys(ctx)
	if err != nil {
		return nil, err
	}
	next.keys = keys.PublicKeys(time.Now())
	return next, nil
}

// apply puts next in force. Setting the policy is its only step that can
// fail (a policy the grid cannot compile), so it comes first.
func (s *sidecar) apply(next *reloadState) error {
	if err := s.grid.SetPolicy(next.policy); err != nil {
		return err
	}
	if next.keys != nil {
		s.verifier.SetKeys(next.keys)
	}
	return nil
}

// sameKMS refuses a reload whose configuration names another KMS than the
// running one: the vault, the issuer keys and the CA are all unwrapped
// through the KMS opened at start, and switching some of them would mix
// two keys.
func sameKMS(running, loaded config.KMSConfig) error {
	var changed []string
	if loaded.URI != running.URI {
		changed = append(changed, fmt.Sprintf("kms.uri %s -> %s", running.URI, loaded.URI))
	}
	if loaded.Timeout != running.Timeout {
		changed = append(changed, fmt.Sprintf("kms.timeout %s -> %s", running.Timeout, loaded.Timeout))
	}
	if len(changed) > 0 {
		return fmt.Errorf("%s: a change of KMS applies only when the sidecar restarts; reload refused, nothing changed", strings.Join(changed, ", "))
	}
	return nil
}

func currentKey(ks *passport.KeySet) []byte {
	_, priv := ks.Current(time.Now())
	return priv
}

// ownedByOther explains a lock timeout on a file a sidecar owns.
func ownedByOther(err error, path string) error {
	if strings.Contains(strings.ToLower(err.Error()), "timeout") || errors.Is(err, vault.ErrLocked) || errors.Is(err, audit.ErrLocked) || errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("%s is held by another process (is a `stack proxy` or `stack control` already running with this data directory?): %w", path, err)
	}
	return err
}

// upstreamRoots is the system pool plus proxy.upstream_ca, if set.
func upstreamRoots(file string) (*x509.CertPool, error) {
	return withPEM(systemRoots(), "proxy.upstream_ca", file)
}

// writeRunFile says where a server of this data directory listens (the
// CLI finds it there) and returns what removes the file on exit.
func (a *app) writeRunFile(name string, info any) (remove func()) {
	path := filepath.Join(a.home(), name)
	if b, err := json.Marshal(info); err == nil {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			a.log.Warn("cannot write run file", zap.String("path", path), zap.Error(err))
		}
	}
	return func() { os.Remove(path) }
}

// ensureAdminToken returns the admin token, creating the file (mode 0600)
// with 32 random bytes the first time.
func ensureAdminToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < 32 {
			return "", fmt.Errorf("admin token %s is too short; delete it to have a new one made", path)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw)
	if err := writeNew(path, []byte(tok+"\n"), 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ensureAdminToken(path)
		}
		return "", err
	}
	return tok, nil
}
