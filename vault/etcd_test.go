package vault_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/internal/etcdtest"
)

// The package's etcd tests share one three-member cluster, run in this
// process on loopback; each store works under its own key prefix. It
// starts on first use and stopEtcd, run by TestMain, stops it.
var (
	etcdOnce     sync.Once
	etcdCluster  *etcdtest.Cluster
	etcdErr      error
	etcdPrefixes atomic.Int64
)

// etcdEndpoints returns the shared cluster's client URLs, one per member.
func etcdEndpoints(t testing.TB) []string {
	t.Helper()
	etcdOnce.Do(func() { etcdCluster, etcdErr = etcdtest.New(3) })
	if etcdErr != nil {
		t.Fatalf("start etcd: %v", etcdErr)
	}
	return etcdCluster.Endpoints
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

// stopEtcd stops the cluster if it ran.
func stopEtcd() {
	if etcdCluster != nil {
		etcdCluster.Close()
	}
}
