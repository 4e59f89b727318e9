package etcdtest_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/stackctl/stack/internal/etcdtest"
)

// TestClusterServesEveryMember writes through one member and reads it
// back through each of the others.
func TestClusterServesEveryMember(t *testing.T) {
	eps := etcdtest.Start(t, 3)
	if len(eps) != 3 {
		t.Fatalf("%d endpoints, want 3", len(eps))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for i, ep := range eps {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := c.Put(ctx, "k", "v"); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := c.Get(ctx, "k")
		c.Close()
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
			t.Fatalf("member %d reads %v, want k=v", i, resp.Kvs)
		}
	}
}
