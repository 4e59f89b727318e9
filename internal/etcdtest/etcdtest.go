// Package etcdtest runs an etcd cluster inside a test process, on
// loopback ports, for tests that need the real thing rather than a fake.
package etcdtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// readyTimeout bounds how long a member may take to start: generous, for
// a loaded machine.
const readyTimeout = time.Minute

// Start runs a cluster of n members (n >= 1) until the test ends and
// returns the members' client URLs.
func Start(t testing.TB, n int) []string {
	t.Helper()
	c, err := New(n)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(c.Close)
	return c.Endpoints
}

// Cluster is a running cluster, for tests that share one across a
// package (started on first use, closed by TestMain); Start is simpler
// for one test.
type Cluster struct {
	// Endpoints are the members' client URLs, one per member.
	Endpoints []string
	dir       string
	members   []*embed.Etcd
}

// New starts a cluster of n members (n >= 1) in a temporary directory.
func New(n int) (_ *Cluster, err error) {
	if n < 1 {
		return nil, fmt.Errorf("a cluster of %d members", n)
	}
	dir, err := os.MkdirTemp("", "stack-etcdtest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	peers := make([]url.URL, n)
	initial := make([]string, n)
	for i := range n {
		if peers[i], err = freeURL(); err != nil {
			return nil, err
		}
		initial[i] = fmt.Sprintf("m%d=%s", i, peers[i].String())
	}
	cfgs := make([]*embed.Config, n)
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "stack-etcdtest"
		cfg.ClusterState = embed.ClusterStateFlagNew
		cfg.ListenPeerUrls = []url.URL{peers[i]}
		cfg.AdvertisePeerUrls = []url.URL{peers[i]}
		client, err := freeURL()
		if err != nil {
			return nil, err
		}
		cfg.ListenClientUrls = []url.URL{client}
		cfg.AdvertiseClientUrls = []url.URL{client}
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		// Tests check behaviour, not the disk; fsync only slows them.
		cfg.UnsafeNoFsync = true
		cfgs[i] = cfg
		c.Endpoints = append(c.Endpoints, client.String())
	}
	// A new member waits for its peers, so all start together.
	type started struct {
		e   *embed.Etcd
		err error
	}
	done := make(chan started, n)
	for _, cfg := range cfgs {
		go func() {
			e, err := start(cfg)
			done <- started{e, err}
		}()
	}
	var errs []error
	for range n {
		s := <-done
		if s.err != nil {
			errs = append(errs, s.err)
			continue
		}
		c.members = append(c.members, s.e)
	}
	return c, errors.Join(errs...)
}

// Close stops every member, removes the data and waits until no
// goroutine of the cluster is left (see settle).
func (c *Cluster) Close() {
	for _, e := range c.members {
		e.Close()
	}
	c.members = nil
	os.RemoveAll(c.dir)
	settle()
}

// settleTimeout bounds the wait for a stopped cluster's goroutines: a
// member's HTTP connection can outlive its Close by its 5 s read timeout.
const settleTimeout = 10 * time.Second

// settle waits until no goroutine of a stopped member is left, so that a
// leak check after the test sees only what the test left behind. Members
// ask each other for their versions over http.DefaultTransport and leave
// those connections idle there: they are closed too.
func settle() {
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(settleTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		n := runtime.Stack(buf, true)
		if n == len(buf) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		stacks := buf[:n]
		if !bytes.Contains(stacks, []byte("go.etcd.io/etcd/server/")) && !bytes.Contains(stacks, []byte("soheilhy/cmux")) {
			return
		}
	}
}

func start(cfg *embed.Config) (*embed.Etcd, error) {
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
	case <-time.After(readyTimeout):
		e.Close()
		return nil, fmt.Errorf("member %s not ready within %s", cfg.Name, readyTimeout)
	}
}

// freeURL returns an http URL on a loopback port nothing listens on now.
func freeURL() (url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return url.URL{}, err
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}, nil
}
