package vault_test

import (
	"errors"
	"fmt"
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

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/stackctl/stack/control/store"
)

// The package's etcd tests share one three-member cluster, run in this
// process on loopback; each store works under its own key prefix. It
// starts on first use and stopEtcd, run by TestMain, stops it.
var (
	etcdOnce     sync.Once
	etcdDir      string
	etcdMembers  []*embed.Etcd
	etcdEps      []string
	etcdErr      error
	etcdPrefixes atomic.Int64
)

// etcdEndpoints returns the shared cluster's client URLs, one per member.
func etcdEndpoints(t testing.TB) []string {
	t.Helper()
	etcdOnce.Do(func() { etcdErr = startEtcd(3) })
	if etcdErr != nil {
		t.Fatalf("start etcd: %v", etcdErr)
	}
	return etcdEps
}

// openEtcdStore opens a store on the shared cluster under prefix (a fresh
// one when empty), through the given endpoints (all when nil), and closes
// it when the test ends.
func openEtcdStore(t testing.TB, prefix string, endpoints []string) *store.Etcd {
	t.Helper()
	eps := etcdEndpoints(t)
	if endpoints == nil {
		endpoints = eps
	}
	if prefix == "" {
		prefix = newEtcdPrefix()
	}
	s, err := store.OpenEtcd(t.Context(), store.EtcdOptions{Endpoints: endpoints, Prefix: prefix, DialTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newEtcdPrefix() string { return fmt.Sprintf("/vault-test/%d/", etcdPrefixes.Add(1)) }

func startEtcd(n int) (err error) {
	if etcdDir, err = os.MkdirTemp("", "stack-vault-etcd-"); err != nil {
		return err
	}
	peers := make([]url.URL, n)
	initial := make([]string, n)
	for i := range n {
		if peers[i], err = freeURL(); err != nil {
			return err
		}
		initial[i] = fmt.Sprintf("m%d=%s", i, peers[i].String())
	}
	cfgs := make([]*embed.Config, n)
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(etcdDir, cfg.Name)
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "stack-vault-test"
		cfg.ClusterState = embed.ClusterStateFlagNew
		cfg.ListenPeerUrls = []url.URL{peers[i]}
		cfg.AdvertisePeerUrls = []url.URL{peers[i]}
		client, err := freeURL()
		if err != nil {
			return err
		}
		cfg.ListenClientUrls = []url.URL{client}
		cfg.AdvertiseClientUrls = []url.URL{client}
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		// The tests check the vault, not the disk.
		cfg.UnsafeNoFsync = true
		cfgs[i] = cfg
		etcdEps = append(etcdEps, client.String())
	}
	// A new member waits for its peers, so all start together.
	type started struct {
		e   *embed.Etcd
		err error
	}
	done := make(chan started, n)
	for _, cfg := range cfgs {
		go func() {
			e, err := startMember(cfg)
			done <- started{e, err}
		}()
	}
	for range n {
		s := <-done
		if s.err != nil {
			err = errors.Join(err, s.err)
			continue
		}
		etcdMembers = append(etcdMembers, s.e)
	}
	return err
}

func startMember(cfg *embed.Config) (*embed.Etcd, error) {
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("member %s: %w", cfg.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("member %s: %w", cfg.Name, err)
	case <-time.After(time.Minute):
		e.Close()
		return nil, fmt.Errorf("member %s not ready within a minute", cfg.Name)
	}
}

// stopEtcd stops the cluster if it ran, and says whether it did.
func stopEtcd() bool {
	if etcdDir == "" {
		return false
	}
	for _, e := range etcdMembers {
		e.Close()
	}
	// Members ask each other for their versions over
	// http.DefaultTransport and leave those connections idle there.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	os.RemoveAll(etcdDir)
	return true
}

// freeURL returns a loopback URL nothing listens on now.
func freeURL() (url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return url.URL{}, err
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}, nil
}
