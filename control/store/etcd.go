package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Defaults of EtcdOptions.
const (
	DefaultEtcdPrefix      = "/stack/"
	DefaultEtcdDialTimeout = 5 * time.Second
)

// EtcdOptions configure OpenEtcd.
type EtcdOptions struct {
	// Endpoints are the cluster's client URLs (https://host:port) or
	// host:port pairs; the client spreads calls over them and moves off
	// one that stops answering.
	Endpoints []string
	// Prefix is put before every key (DefaultEtcdPrefix when empty), so
	// that the control plane can share a cluster; List and Watch hand
	// keys back without it.
	Prefix string
	// DialTimeout bounds how long OpenEtcd waits for an endpoint to
	// answer (DefaultEtcdDialTimeout when zero).
	DialTimeout time.Duration
	// CertFile and KeyFile are the client certificate and its key, for a
	// cluster that authenticates clients by certificate; both or
	// neither. CAFile holds the CAs that sign the members' certificates
	// (the system's when empty). Any of them, or an https endpoint,
	// turns TLS on.
	CertFile, KeyFile, CAFile string
	// Logger receives the etcd client's own logs (none when nil).
	Logger *zap.Logger
}

// Etcd is the Store on an etcd cluster, for control planes that must
// survive the loss of a machine. Its revisions are etcd's: the cluster
// has one counter shared by every key, so Rev and the revisions of
// writes count changes made under other prefixes too, and Compact
// compacts the whole cluster's history. A fresh cluster is at revision
// 1, not 0.
type Etcd struct {
	client *clientv3.Client
	prefix string

	// closing's done is closed by Close; watchers then end with ErrClosed.
	closing
	closeOnce func() error
}

var _ Store = (*Etcd)(nil)

// OpenEtcd connects to the cluster and checks that an endpoint answers
// within the dial timeout; when none does it returns ErrUnavailable.
func OpenEtcd(ctx context.Context, opts EtcdOptions) (*Etcd, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("store: open etcd: no endpoints")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultEtcdPrefix
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultEtcdDialTimeout
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	where := strings.Join(opts.Endpoints, ",")
	tlsConf, err := etcdTLS(opts)
	if err != nil {
		return nil, fmt.Errorf("store: open etcd %s: %w", where, err)
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.DialTimeout,
		TLS:         tlsConf,
		Logger:      opts.Logger,
		// Requests made under ctx end with it; the client itself lives
		// until Close.
		Context: context.WithoutCancel(ctx),
	})
	if err != nil {
		return nil, fmt.Errorf("store: open etcd %s: %w", where, err)
	}
	// The client connects lazily: ask for something, so that a wrong
	// address or certificate shows here and not on the first write.
	pingCtx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	if _, err := client.Get(pingCtx, opts.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		client.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("store: open etcd %s: %w", where, ctx.Err())
		}
		return nil, fmt.Errorf("store: open etcd %s: %w: none answered within %s: %w", where, ErrUnavailable, opts.DialTimeout, err)
	}
	s := &Etcd{client: client, prefix: opts.Prefix, closing: closing{done: make(chan struct{})}}
	s.closeOnce = sync.OnceValue(s.close)
	return s, nil
}

// etcdTLS returns the client's TLS configuration, or nil for plain
// connections.
func etcdTLS(opts EtcdOptions) (*tls.Config, error) {
	https := false
	for _, e := range opts.Endpoints {
		https = https || strings.HasPrefix(e, "https://")
	}
	if !https && opts.CertFile == "" && opts.KeyFile == "" && opts.CAFile == "" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return nil, errors.New("a client certificate needs both its certificate and key file")
	}
	if opts.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", opts.CAFile)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// Get returns key's current value, or ErrNotFound.
func (s *Etcd) Get(ctx context.Context, key string) (KV, error) {
	if err := s.checkKey(ctx, key); err != nil {
		return KV{}, fmt.Errorf("store: get %q: %w", key, err)
	}
	resp, err := s.client.Get(ctx, s.prefix+key)
	if err != nil {
		return KV{}, fmt.Errorf("store: get %q: %w", key, s.etcdErr(ctx, err))
	}
	if len(resp.Kvs) == 0 {
		return KV{}, fmt.Errorf("store: get %q: %w", key, ErrNotFound)
	}
	return s.kv(resp.Kvs[0]), nil
}

// Put sets key and returns the revision of the change. A key that
// exists keeps its lease.
func (s *Etcd) Put(ctx context.Context, key string, value []byte) (int64, error) {
	if err := s.checkKey(ctx, key); err != nil {
		return 0, fmt.Errorf("store: put %q: %w", key, err)
	}
	resp, err := s.putKeepingLease(ctx, s.prefix+key, value)
	if err != nil {
		return 0, fmt.Errorf("store: put %q: %w", key, s.etcdErr(ctx, err))
	}
	return resp.Header.Revision, nil
}

// CompareAndSwap sets key to value only if its ModRev is rev (rev 0: only
// if it does not exist); a nil value deletes it. It is one etcd
// transaction. A key that exists keeps its lease.
func (s *Etcd) CompareAndSwap(ctx context.Context, key string, rev int64, value []byte) (int64, error) {
	if err := s.checkKey(ctx, key); err != nil {
		return 0, fmt.Errorf("store: compare-and-swap %q: %w", key, err)
	}
	k := s.prefix + key
	op := clientv3.OpPut(k, string(value))
	if rev != 0 {
		// The compare below makes sure the key exists, which
		// WithIgnoreLease needs.
		op = clientv3.OpPut(k, string(value), clientv3.WithIgnoreLease())
	}
	if value == nil {
		if rev == 0 {
			// Nothing to delete either way: no write, only the answer.
			kv, err := s.Get(ctx, key)
			if err == nil {
				return 0, fmt.Errorf("store: compare-and-swap %q: %w: key is at revision %d, not 0", key, ErrConflict, kv.ModRev)
			}
			return 0, fmt.Errorf("store: compare-and-swap %q: %w", key, errors.Unwrap(err))
		}
		op = clientv3.OpDelete(k)
	}
	// A missing key's ModRevision is 0, so rev 0 means "absent".
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
		Then(op).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("store: compare-and-swap %q: %w", key, s.etcdErr(ctx, err))
	}
	if !resp.Succeeded {
		var cur int64
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
			cur = kvs[0].ModRevision
		}
		return 0, fmt.Errorf("store: compare-and-swap %q: %w: key is at revision %d, not %d", key, ErrConflict, cur, rev)
	}
	return resp.Header.Revision, nil
}

// Delete removes key and returns the revision of the change, or
// ErrNotFound.
func (s *Etcd) Delete(ctx context.Context, key string) (int64, error) {
	if err := s.checkKey(ctx, key); err != nil {
		return 0, fmt.Errorf("store: delete %q: %w", key, err)
	}
	// Deleting nothing writes nothing in etcd: the revision stays.
	resp, err := s.client.Delete(ctx, s.prefix+key)
	if err != nil {
		return 0, fmt.Errorf("store: delete %q: %w", key, s.etcdErr(ctx, err))
	}
	if resp.Deleted == 0 {
		return 0, fmt.Errorf("store: delete %q: %w", key, ErrNotFound)
	}
	return resp.Header.Revision, nil
}

// List returns the keys under prefix in key order, and the revision they
// are consistent with.
func (s *Etcd) List(ctx context.Context, prefix string) ([]KV, int64, error) {
	if err := s.check(ctx); err != nil {
		return nil, 0, fmt.Errorf("store: list %q: %w", prefix, err)
	}
	resp, err := s.client.Get(ctx, s.prefix+prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("store: list %q: %w", prefix, s.etcdErr(ctx, err))
	}
	var kvs []KV
	for _, kv := range resp.Kvs {
		kvs = append(kvs, s.kv(kv))
	}
	return kvs, resp.Header.Revision, nil
}

// Rev returns the cluster's current revision. It is a linearizable read
// (a quorum of members confirms it), never one member's possibly stale
// view, so an answer proves the cluster is reachable and has a leader.
func (s *Etcd) Rev(ctx context.Context) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, fmt.Errorf("store: rev: %w", err)
	}
	// One key, not the prefix: the header's revision is the cluster's
	// either way, and counting every key under the prefix walks them all.
	resp, err := s.client.Get(ctx, s.prefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("store: rev: %w", s.etcdErr(ctx, err))
	}
	return resp.Header.Revision, nil
}

// Compact forgets the cluster's history up to and including rev.
func (s *Etcd) Compact(ctx context.Context, rev int64) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("store: compact %d: %w", rev, err)
	}
	if rev <= 0 {
		return nil
	}
	_, err := s.client.Compact(ctx, rev)
	switch {
	case errors.Is(err, rpctypes.ErrCompacted):
		return nil
	case errors.Is(err, rpctypes.ErrFutureRev):
		return fmt.Errorf("store: compact %d: beyond the current revision", rev)
	case err != nil:
		return fmt.Errorf("store: compact %d: %w", rev, s.etcdErr(ctx, err))
	}
	return nil
}

// Watch sends the changes to keys under prefix after rev. A negative rev
// is taken as 0.
func (s *Etcd) Watch(ctx context.Context, prefix string, rev int64) <-chan WatchResponse {
	if err := s.check(context.Background()); err != nil {
		ch := make(chan WatchResponse, 1)
		ch <- WatchResponse{Err: fmt.Errorf("store: watch %q: %w", prefix, err)}
		close(ch)
		return ch
	}
	ch := make(chan WatchResponse)
	go s.watch(ctx, ch, prefix, max(rev, 0))
	return ch
}

// watch runs one watcher; it is owned by ctx. Close ends its etcd watch
// through the client, and it then waits for its reader to take the
// ErrClosed response or to end ctx.
func (s *Etcd) watch(ctx context.Context, ch chan<- WatchResponse, prefix string, rev int64) {
	defer close(ch)
	err := s.follow(ctx, ch, prefix, rev)
	if err == nil || ctx.Err() != nil {
		return
	}
	select {
	case ch <- WatchResponse{Err: fmt.Errorf("store: watch %q from %d: %w", prefix, rev, err)}:
	case <-ctx.Done():
	}
}

// follow sends the changes under prefix after rev until ctx ends (nil),
// the store closes (ErrClosed) or etcd ends the watch (ErrCompacted when
// the history it needs is gone; etcd's "no leader" when the member it
// watches through loses the cluster's leader).
func (s *Etcd) follow(ctx context.Context, ch chan<- WatchResponse, prefix string, rev int64) error {
	if ctx.Err() != nil {
		return nil
	}
	if rev > 0 {
		// etcd watches from its compacted revision itself, whose changes
		// this interface counts as forgotten; a read at rev (of one
		// key: the revision is checked all the same) fails the same way
		// for any rev before it.
		_, err := s.client.Get(ctx, s.prefix, clientv3.WithCountOnly(), clientv3.WithRev(rev))
		switch {
		case errors.Is(err, rpctypes.ErrCompacted):
			return fmt.Errorf("%w: changes after %d wanted, and %d is compacted", ErrCompacted, rev, rev)
		case errors.Is(err, rpctypes.ErrFutureRev):
			// Watching ahead of the cluster is fine.
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			return s.etcdErr(ctx, err)
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Without a leader a member hears of no new change and stays silent:
	// require one, so that the watch ends with an error instead and its
	// reader can go to a member, or a replica, that has one.
	wch := s.client.Watch(clientv3.WithRequireLeader(wctx), s.prefix+prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for {
		var wresp clientv3.WatchResponse
		var ok bool
		select {
		case wresp, ok = <-wch:
		case <-ctx.Done():
			return nil
		case <-s.done:
			return ErrClosed
		}
		switch {
		case !ok:
			// The client's channel closes when wctx ends or the client
			// closes.
			select {
			case <-s.done:
				return ErrClosed
			default:
			}
			if ctx.Err() != nil {
				return nil
			}
			return errors.New("etcd ended the watch")
		case wresp.CompactRevision != 0:
			return fmt.Errorf("%w: changes after %d wanted, only those after %d kept", ErrCompacted, rev, wresp.CompactRevision)
		case wresp.Err() != nil:
			return s.etcdErr(ctx, wresp.Err())
		case len(wresp.Events) == 0:
			// Progress notifications carry no changes.
			continue
		}
		evs := make([]Event, 0, len(wresp.Events))
		for _, e := range wresp.Events {
			if e.Type == clientv3.EventTypeDelete {
				evs = append(evs, Event{Type: EventDelete, KV: KV{
					Key:    strings.TrimPrefix(string(e.Kv.Key), s.prefix),
					ModRev: e.Kv.ModRevision,
				}})
				continue
			}
			evs = append(evs, Event{Type: EventPut, KV: s.kv(e.Kv)})
		}
		rev = evs[len(evs)-1].KV.ModRev
		if stop, err := s.send(ctx, ch, evs); stop {
			return err
		}
	}
}

// Close ends the watchers with ErrClosed and closes the client.
func (s *Etcd) Close() error {
	return s.closeOnce()
}

func (s *Etcd) close() error {
	s.shut()
	if err := s.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// etcdErr names the cause of a failed call: the caller's context, Close,
// or etcd's own error.
func (s *Etcd) etcdErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	select {
	case <-s.done:
		return ErrClosed
	default:
	}
	return err
}

// kv turns etcd's key-value into ours: the key without the prefix, and an
// empty value as a non-nil empty slice (etcd hands back nil).
func (s *Etcd) kv(kv *mvccpb.KeyValue) KV {
	return KV{
		Key:       strings.TrimPrefix(string(kv.Key), s.prefix),
		Value:     append([]byte{}, kv.Value...),
		CreateRev: kv.CreateRevision,
		ModRev:    kv.ModRevision,
	}
}
