package store

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseRevokeTimeout bounds the cleanup of a lease that Create granted but
// could not use. The lease expires by itself anyway; revoking it only
// spares the cluster from keeping it until then.
const leaseRevokeTimeout = 5 * time.Second

// Create sets key only if it does not exist, attached to a new etcd lease
// of ttl rounded up to whole seconds. The cluster's leader revokes the
// lease once it runs out and deletes the key with it, whether or not any
// client is connected; etcd raises a TTL below its minimum (one and a
// half election timeouts, 2 s with etcd's defaults) to that minimum. A
// leader change extends every lease by up to an election timeout, and a
// cluster without a leader revokes nothing until it has one again.
func (s *Etcd) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (int64, error) {
	if err := s.checkKey(ctx, key); err != nil {
		return 0, fmt.Errorf("store: create %q: %w", key, err)
	}
	if ttl <= 0 {
		return 0, fmt.Errorf("store: create %q: %w, not %s", key, ErrInvalidTTL, ttl)
	}
	secs := int64((ttl + time.Second - 1) / time.Second)
	lease, err := s.client.Grant(ctx, secs)
	if err != nil {
		return 0, fmt.Errorf("store: create %q: lease of %ds: %w", key, secs, s.etcdErr(ctx, err))
	}
	k := s.prefix + key
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(value), clientv3.WithLease(lease.ID))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		// The lease runs out by itself, and with it the key if the write
		// took: the caller, told it failed, hands out nothing. Revoking
		// here would hold a request that etcd is not answering.
		return 0, fmt.Errorf("store: create %q: %w", key, s.etcdErr(ctx, err))
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseRevokeTimeout)
	defer cancel()
	_, _ = s.client.Revoke(rctx, lease.ID)
	var cur int64
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
		cur = kvs[0].ModRevision
	}
	return 0, fmt.Errorf("store: create %q: %w: key exists at revision %d", key, ErrConflict, cur)
}

// putKeepingLease is Put's operation on an etcd key: a key that exists
// keeps its lease (etcd's plain put would drop it and make the key
// permanent), a new one gets none.
func (s *Etcd) putKeepingLease(ctx context.Context, k string, value []byte) (*clientv3.TxnResponse, error) {
	return s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), ">", 0)).
		Then(clientv3.OpPut(k, string(value), clientv3.WithIgnoreLease())).
		Else(clientv3.OpPut(k, string(value))).
		Commit()
}
