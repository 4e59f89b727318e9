package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/inject"
	"github.com/stackctl/stack/internal/testclock"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/proxy/ca"
	"github.com/stackctl/stack/proxy/egress"
	"github.com/stackctl/stack/vault"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

// Names the test resolver maps to loopback addresses.
const (
	stripeHost  = "api.stripe.test" // bound to the stripe credential
	otherHost   = "api.other.test"  // in scope, no credential bound
	rebindHost  = "rebind.test"     // resolves to 127.0.0.2, outside the allowed range
	stripeToken = "sk_test_REAL_4eC39HqLyjWDarjtT1zdp7dc"
)

// testResolver answers from a fixed table, so names map to loopback
// addresses without touching DNS.
type testResolver map[string][]netip.Addr

func (r testResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r[strings.ToLower(host)]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// upstream is a real TLS server for test host names, signed by its own CA.
type upstream struct {
	srv   *httptest.Server
	port  string
	roots *x509.CertPool
	mu    sync.Mutex
	auths []string // Authorization headers received
}

func (u *upstream) received() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.auths...)
}

func startUpstream(t *testing.T, h http.Handler, hosts ...string) *upstream {
	t.Helper()
	upCA, err := ca.Generate(time.Now(), "test upstream CA")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{roots: x509.NewCertPool()}
	u.roots.AddCert(upCA.Certificate())
	cache := ca.NewLeafCache(ca.CacheOptions{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.auths = append(u.auths, r.Header.Get("Authorization"))
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := hello.ServerName
		if name == "" {
			name = hosts[0]
		}
		return cache.Fetch(name, func() (*tls.Certificate, error) { return upCA.Leaf(name) })
	}}
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, u.port, _ = net.SplitHostPort(srv.Listener.Addr().String())
	u.srv = srv
	return u
}

// harness is a proxy wired to real parts: a bbolt vault under a local
// KMS key, an issuer key set, a revocation store, a bbolt audit log, a
// MITM CA and the egress guard.
type harness struct {
	t       *testing.T
	dir     string
	proxy   *Proxy
	server  *httptest.Server
	issuer  *passport.Issuer
	revs    *passport.RevocationStore
	audit   *audit.Log
	vault   *vault.Vault
	store   *VaultStore
	ca      *ca.CA
	clock   *testclock.Clock
	up      *upstream
	options Options
}

// newTestVault opens a vault in dir under a new local KMS key; both are
// closed when tb ends.
func newTestVault(tb testing.TB, dir string) *vault.Vault {
	tb.Helper()
	v, err := vault.Open(filepath.Join(dir, "vault.db"), kmstest.Local(tb), vault.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { v.Close() })
	return v
}

// putBearer stores a credential rendered as a Bearer token for host.
func putBearer(tb testing.TB, v *vault.Vault, name, secret, host string) {
	tb.Helper()
	bearer, _ := vault.ParseRender("bearer")
	if _, err := v.Put(context.Background(), name, []byte(secret), vault.PutOptions{Hosts: []string{host}, Render: bearer}); err != nil {
		tb.Fatal(err)
	}
}

type harnessOption func(*Options)

func newHarness(t *testing.T, h http.Handler, opts ...harnessOption) *harness {
	t.Helper()
	dir := t.TempDir()
	hs := &harness{t: t, dir: dir, clock: testclock.New(time.Now())}

	hs.vault = newTestVault(t, dir)
	putBearer(t, hs.vault, "stripe", stripeToken, stripeHost)
	store, err := NewVaultStore(hs.vault, nil)
	hs.store = store
	if err != nil {
		t.Fatal(err)
	}

	keys, err := passport.GenerateKeySet(hs.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	hs.issuer = &passport.Issuer{Keys: keys, Now: hs.clock.Now}
	hs.revs, err = passport.OpenRevocationStore(filepath.Join(dir, "revocations.db"), passport.RevocationOptions{Now: hs.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.revs.Close() })
	verifier, err := passport.NewVerifier(passport.VerifierOptions{Keys: keys.JWKS(hs.clock.Now()), Now: hs.clock.Now, Revocations: hs.revs})
	if err != nil {
		t.Fatal(err)
	}

	hs.audit, err = audit.Open(filepath.Join(dir, "audit.db"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.audit.Close() })

	hs.ca, err = ca.Generate(time.Now(), "stack test MITM CA")
	if err != nil {
		t.Fatal(err)
	}

	hs.up = startUpstream(t, h, stripeHost)
	guard, err := egress.New(egress.Options{
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Resolver: testResolver{
			stripeHost: {netip.MustParseAddr("127.0.0.1")},
			otherHost:  {netip.MustParseAddr("127.0.0.1")},
			rebindHost: {netip.MustParseAddr("127.0.0.2")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs.options = Options{
		Verifier: verifier,
		Injector: inject.New(hs.store, inject.Options{}),
		Audit:    hs.audit,
		CA:       hs.ca,
		Guard:    guard,
		RootCAs:  hs.up.roots,
		Now:      hs.clock.Now,
	}
	for _, o := range opts {
		o(&hs.options)
	}
	hs.proxy, err = New(hs.options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.proxy.Close() })
	// Served as stack proxy serves it.
	hs.server = httptest.NewUnstartedServer(hs.proxy)
	hs.server.Config = hs.proxy.NewServer(nil)
	hs.server.Listener = hs.proxy.Listener(hs.server.Listener)
	hs.server.Start()
	t.Cleanup(hs.server.Close)
	return hs
}

// stripeScope grants read access to charges with the stripe credential,
// and anything on otherHost without credentials.
func stripeScope() passport.Scope {
	return passport.Scope{
		{Hosts: []string{stripeHost}, Methods: []string{"GET", "POST"}, Paths: []string{"/v1/charges/**", "/v1/stream"}, Credentials: []string{"stripe"}},
		{Hosts: []string{otherHost, "169.254.169.254", rebindHost, "untrusted.test"}},
	}
}

func (hs *harness) issue(agent string, scope passport.Scope, ttl time.Duration) (string, *passport.Claims) {
	hs.t.Helper()
	tok, claims, err := hs.issuer.Issue(context.Background(), passport.IssueRequest{Agent: agent, Scope: scope, TTL: ttl})
	if err != nil {
		hs.t.Fatal(err)
	}
	return tok, claims
}

// client returns an HTTP client that sends every request through the
// proxy with the passport, trusting only the MITM CA.
func (hs *harness) client(agent, token string) *http.Client {
	pu, _ := url.Parse(hs.server.URL)
	roots := x509.NewCertPool()
	roots.AddCert(hs.ca.Certificate())
	hdr := http.Header{}
	if token != "" {
		hdr.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(agent+":"+token)))
	}
	tr := &http.Transport{
		Proxy:              http.ProxyURL(pu),
		ProxyConnectHeader: hdr,
		TLSClientConfig:    &tls.Config{RootCAs: roots},
	}
	hs.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: &headerRT{tr: tr, hdr: hdr}, Timeout: 30 * time.Second}
}

// headerRT adds Proxy-Authorization to plain-HTTP proxy requests too.
type headerRT struct {
	tr  *http.Transport
	hdr http.Header
}

func (h *headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" {
		r = r.Clone(r.Context())
		for k, v := range h.hdr {
			r.Header[k] = v
		}
	}
	return h.tr.RoundTrip(r)
}

func (hs *harness) url(host, path string) string {
	return "https://" + host + ":" + hs.up.port + path
}

// records returns every audit record, including those queued without
// waiting for their commit.
func (hs *harness) records() []audit.Record {
	hs.t.Helper()
	if err := hs.audit.Sync(context.Background()); err != nil {
		hs.t.Fatal(err)
	}
	var out []audit.Record
	if err := hs.audit.Iterate(context.Background(), 1, func(r audit.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		hs.t.Fatal(err)
	}
	return out
}

// lastRecord returns the newest record with action, failing if none.
func (hs *harness) lastRecord(action string) audit.Record {
	hs.t.Helper()
	rs := hs.records()
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].Action == action {
			return rs[i]
		}
	}
	hs.t.Fatalf("no %s record among %d", action, len(rs))
	return audit.Record{}
}

func newPool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
