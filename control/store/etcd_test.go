package store_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/control/store/storetest"
)

// testCluster is a three-member etcd cluster run in this process, shared
// by the package's tests: each test works under its own key prefix.
// Member 0 also serves clients over TLS with client certificates.
type testCluster struct {
	dir     string
	members []*testMember
	// TLS files: the CA that signs the member's and the client's
	// certificates, the client's certificate and key.
	caFile, certFile, keyFile string
	tlsURL                    string
}

type testMember struct {
	cfg *embed.Config
	mu  sync.Mutex
	e   *embed.Etcd
}

var (
	clusterOnce sync.Once
	cluster     *testCluster
	clusterErr  error
	prefixes    atomic.Int64
)

// sharedCluster starts the cluster on first use; stopCluster, run by
// TestMain, stops it.
func sharedCluster(t testing.TB) *testCluster {
	t.Helper()
	clusterOnce.Do(func() { cluster, clusterErr = startCluster() })
	if clusterErr != nil {
		t.Fatalf("start etcd: %v", clusterErr)
	}
	return cluster
}

// stopCluster stops the cluster if it ran, and says whether it did.
func stopCluster() bool {
	if cluster == nil {
		return false
	}
	for _, m := range cluster.members {
		m.stop()
	}
	// The members ask each other for their versions over
	// http.DefaultTransport and leave those connections idle there;
	// etcd's own leak check closes them the same way.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	os.RemoveAll(cluster.dir)
	return true
}

// endpoints are the members' plain client URLs.
func (c *testCluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.cfg.ListenClientUrls[0].String())
	}
	return eps
}

// prefix returns a key prefix no other store in this binary uses.
func newPrefix(name string) string {
	return fmt.Sprintf("/test/%d/%s/", prefixes.Add(1), name)
}

// openEtcd opens a store on the cluster under a fresh prefix and closes it
// when the test ends.
func openEtcd(t testing.TB, opts store.EtcdOptions) *store.Etcd {
	t.Helper()
	c := sharedCluster(t)
	if opts.Endpoints == nil {
		opts.Endpoints = c.endpoints()
	}
	if opts.Prefix == "" {
		opts.Prefix = newPrefix("store")
	}
	s, err := store.OpenEtcd(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func startCluster() (_ *testCluster, err error) {
	dir, err := os.MkdirTemp("", "stack-etcd-test-")
	if err != nil {
		return nil, err
	}
	c := &testCluster{dir: dir}
	defer func() {
		if err != nil {
			stopClusterMembers(c)
			os.RemoveAll(dir)
		}
	}()
	serverTLS, err := c.writeCerts()
	if err != nil {
		return nil, err
	}
	const n = 3
	var initial []string
	peers := make([]url.URL, n)
	for i := range n {
		peers[i], err = freeURL("http")
		if err != nil {
			return nil, err
		}
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peers[i].String()))
	}
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "stack-store-test"
		cfg.ClusterState = embed.ClusterStateFlagNew
		cfg.ListenPeerUrls = []url.URL{peers[i]}
		cfg.AdvertisePeerUrls = []url.URL{peers[i]}
		client, err := freeURL("http")
		if err != nil {
			return nil, err
		}
		cfg.ListenClientUrls = []url.URL{client}
		if i == 0 {
			secure, err := freeURL("https")
			if err != nil {
				return nil, err
			}
			cfg.ListenClientUrls = append(cfg.ListenClientUrls, secure)
			cfg.ClientTLSInfo = serverTLS
			c.tlsURL = secure.String()
		}
		cfg.AdvertiseClientUrls = cfg.ListenClientUrls
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		// The tests check the store, not the disk: without fsync the
		// suite's thousands of writes take seconds, not a minute.
		cfg.UnsafeNoFsync = true
		c.members = append(c.members, &testMember{cfg: cfg})
	}
	// A new member waits for its peers, so all start together.
	errs := make(chan error, n)
	for _, m := range c.members {
		go func() { errs <- m.start() }()
	}
	for range n {
		if e := <-errs; e != nil {
			err = errors.Join(err, e)
		}
	}
	return c, err
}

func stopClusterMembers(c *testCluster) {
	for _, m := range c.members {
		m.stop()
	}
}

// start starts the member and waits until it serves.
func (m *testMember) start() error {
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return fmt.Errorf("member %s: %w", m.cfg.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("member %s: %w", m.cfg.Name, err)
	case <-time.After(60 * time.Second):
		e.Close()
		return fmt.Errorf("member %s not ready within a minute", m.cfg.Name)
	}
	m.mu.Lock()
	m.e = e
	m.mu.Unlock()
	return nil
}

// stop stops the member if it runs.
func (m *testMember) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.e != nil {
		m.e.Close()
		m.e = nil
	}
}

// freeURL returns a URL on a loopback port nothing listens on now.
func freeURL(scheme string) (url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return url.URL{}, err
	}
	defer l.Close()
	return url.URL{Scheme: scheme, Host: l.Addr().String()}, nil
}

// writeCerts writes a CA, a server certificate for 127.0.0.1 and a client
// certificate it signs, and returns the member's TLS settings, which
// require a client certificate from that CA.
func (c *testCluster) writeCerts() (transport.TLSInfo, error) {
	ca, caKey, err := newCA("stack test CA")
	if err != nil {
		return transport.TLSInfo{}, err
	}
	c.caFile = filepath.Join(c.dir, "ca.pem")
	if err := writeCert(c.caFile, "", ca, nil); err != nil {
		return transport.TLSInfo{}, err
	}
	server := filepath.Join(c.dir, "server.pem")
	serverKey := filepath.Join(c.dir, "server-key.pem")
	if err := issue(server, serverKey, ca, caKey, x509.ExtKeyUsageServerAuth); err != nil {
		return transport.TLSInfo{}, err
	}
	c.certFile = filepath.Join(c.dir, "client.pem")
	c.keyFile = filepath.Join(c.dir, "client-key.pem")
	if err := issue(c.certFile, c.keyFile, ca, caKey, x509.ExtKeyUsageClientAuth); err != nil {
		return transport.TLSInfo{}, err
	}
	return transport.TLSInfo{
		CertFile:       server,
		KeyFile:        serverKey,
		TrustedCAFile:  c.caFile,
		ClientCertAuth: true,
	}, nil
}

func newCA(name string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

// issue writes a certificate for 127.0.0.1 with the given use, signed by
// ca, and its key.
func issue(certFile, keyFile string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, use x509.ExtKeyUsage) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{use},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	return writeCert(certFile, keyFile, cert, key)
}

// writeCert writes cert as PEM, and key when keyFile is set.
func writeCert(certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		return err
	}
	if keyFile == "" {
		return nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func TestEtcdConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openEtcd(t, store.EtcdOptions{})
	})
}

func TestEtcdPrefixIsolation(t *testing.T) {
	ctx := t.Context()
	base := newPrefix("iso")
	a := openEtcd(t, store.EtcdOptions{Prefix: base + "a/"})
	b := openEtcd(t, store.EtcdOptions{Prefix: base + "a-b/"})
	from, err := a.Rev(ctx)
	if err != nil {
		t.Fatal(err)
	}
	watchA := a.Watch(ctx, "", from)
	if _, err := b.Put(ctx, "k", []byte("b")); err != nil {
		t.Fatal(err)
	}
	ra, err := a.Put(ctx, "k", []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, "only-b", []byte("b")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		s    store.Store
		want string
	}{{"a", a, "a"}, {"b", b, "b"}} {
		kv, err := tt.s.Get(ctx, "k")
		if err != nil || string(kv.Value) != tt.want {
			t.Errorf("store %s: Get(k) = %q, %v; want %q", tt.name, kv.Value, err, tt.want)
		}
	}
	kvs, _, err := a.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 1 || kvs[0].Key != "k" {
		t.Errorf("store a lists %v, want only k", kvs)
	}
	if _, err := a.Get(ctx, "only-b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("store a: Get of b's key = %v, want ErrNotFound", err)
	}
	if _, err := a.Delete(ctx, "only-b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("store a: Delete of b's key = %v, want ErrNotFound", err)
	}
	select {
	case resp := <-watchA:
		if resp.Err != nil || len(resp.Events) != 1 || resp.Events[0].KV.Key != "k" || resp.Events[0].KV.ModRev != ra {
			t.Fatalf("store a's watch got %+v, want only its own put at %d", resp, ra)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("store a's watch got nothing")
	}
	if _, err := b.Get(ctx, "only-b"); err != nil {
		t.Errorf("b's key after a's attempts: %v", err)
	}
}

func TestEtcdTLS(t *testing.T) {
	c := sharedCluster(t)
	other := t.TempDir()
	otherCA := filepath.Join(other, "ca.pem")
	ca, _, err := newCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeCert(otherCA, "", ca, nil); err != nil {
		t.Fatal(err)
	}

	s := openEtcd(t, store.EtcdOptions{
		Endpoints: []string{c.tlsURL},
		CertFile:  c.certFile,
		KeyFile:   c.keyFile,
		CAFile:    c.caFile,
	})
	r, err := s.Put(t.Context(), "k", []byte("over TLS"))
	if err != nil {
		t.Fatal(err)
	}
	if kv, err := s.Get(t.Context(), "k"); err != nil || string(kv.Value) != "over TLS" || kv.ModRev != r {
		t.Fatalf("Get over TLS = %+v, %v", kv, err)
	}

	for _, tt := range []struct {
		name string
		opts store.EtcdOptions
	}{
		{"no client certificate", store.EtcdOptions{CAFile: c.caFile}},
		{"member's CA not trusted", store.EtcdOptions{CertFile: c.certFile, KeyFile: c.keyFile, CAFile: otherCA}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Endpoints = []string{c.tlsURL}
			tt.opts.DialTimeout = time.Second
			s, err := store.OpenEtcd(t.Context(), tt.opts)
			if err == nil {
				s.Close()
				t.Fatal("OpenEtcd succeeded")
			}
			if !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("OpenEtcd = %v, want ErrUnavailable", err)
			}
		})
	}
	if _, err := store.OpenEtcd(t.Context(), store.EtcdOptions{
		Endpoints: []string{c.tlsURL}, CertFile: c.certFile, CAFile: c.caFile,
	}); err == nil || !strings.Contains(err.Error(), "both") {
		t.Fatalf("OpenEtcd with a certificate and no key = %v, want an error saying both are needed", err)
	}
}

func TestEtcdUnreachable(t *testing.T) {
	nobody, err := freeURL("http")
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenEtcd(t.Context(), store.EtcdOptions{
		Endpoints:   []string{nobody.String()},
		DialTimeout: 500 * time.Millisecond,
	})
	if err == nil {
		s.Close()
		t.Fatal("OpenEtcd with no member listening succeeded")
	}
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), nobody.Host) {
		t.Fatalf("OpenEtcd = %v, want ErrUnavailable naming %s", err, nobody.Host)
	}
}

// TestEtcdSurvivesMemberLoss stops a follower while a watch runs and
// checks that reads, writes and the watch go on; it starts the member
// again at the end.
func TestEtcdSurvivesMemberLoss(t *testing.T) {
	c := sharedCluster(t)
	s := openEtcd(t, store.EtcdOptions{})
	ctx := t.Context()
	from, err := s.Put(ctx, "k", []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	watch := s.Watch(ctx, "", from-1)

	var lost *testMember
	for _, m := range c.members {
		m.mu.Lock()
		follower := m.e.Server.Leader() != m.e.Server.MemberID()
		m.mu.Unlock()
		if follower {
			lost = m
			break
		}
	}
	lost.stop()
	t.Cleanup(func() {
		if err := lost.start(); err != nil {
			t.Errorf("restart: %v", err)
		}
	})

	r, err := s.Put(ctx, "k", []byte("after"))
	if err != nil {
		t.Fatalf("Put with a member down: %v", err)
	}
	r2, err := s.CompareAndSwap(ctx, "k", r, []byte("swapped"))
	if err != nil {
		t.Fatalf("CompareAndSwap with a member down: %v", err)
	}
	if kv, err := s.Get(ctx, "k"); err != nil || string(kv.Value) != "swapped" || kv.ModRev != r2 {
		t.Fatalf("Get with a member down = %+v, %v", kv, err)
	}
	if kvs, rev, err := s.List(ctx, ""); err != nil || len(kvs) != 1 || rev != r2 {
		t.Fatalf("List with a member down = %v at %d, %v", kvs, rev, err)
	}
	var got []int64
	deadline := time.After(30 * time.Second)
	for len(got) < 3 {
		select {
		case resp := <-watch:
			if resp.Err != nil {
				t.Fatalf("watch with a member down: %v", resp.Err)
			}
			for _, ev := range resp.Events {
				got = append(got, ev.KV.ModRev)
			}
		case <-deadline:
			t.Fatalf("watch sent %v, want %d, %d, %d", got, from, r, r2)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint([]int64{from, r, r2}) {
		t.Fatalf("watch sent %v, want %d, %d, %d", got, from, r, r2)
	}
}

// TestEtcdWithoutLeader cuts one member off from the other two (they
// stop) and checks that a store reaching only that member neither
// answers Rev from its own view nor keeps a watch open that can hear
// nothing: both end with etcd's "no leader". The members start again at
// the end.
func TestEtcdWithoutLeader(t *testing.T) {
	c := sharedCluster(t)
	alone := c.members[0]
	s := openEtcd(t, store.EtcdOptions{Endpoints: []string{alone.cfg.ListenClientUrls[0].String()}})
	ctx := t.Context()
	from, err := s.Put(ctx, "k", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	watch := s.Watch(ctx, "", from)

	var stopped []*testMember
	t.Cleanup(func() {
		for _, m := range stopped {
			if err := m.start(); err != nil {
				t.Errorf("restart: %v", err)
			}
		}
	})
	for _, m := range c.members[1:] {
		m.stop()
		stopped = append(stopped, m)
	}

	select {
	case resp, ok := <-watch:
		if !ok || !errors.Is(resp.Err, rpctypes.ErrNoLeader) {
			t.Fatalf("watch through a member without a leader sent %+v (open %v), want etcd's no-leader error", resp, ok)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the watch through a member without a leader stayed open")
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if rev, err := s.Rev(rctx); err == nil {
		t.Fatalf("Rev through a member without a leader = %d, want an error: it must not be that member's own view", rev)
	}
}
