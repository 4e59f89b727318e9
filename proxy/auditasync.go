package proxy

import (
	"context"

	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
)

// enqueuer is an Auditor that can also take a record without waiting for
// its fsync; *audit.Log is one.
type enqueuer interface {
	Enqueue(ctx context.Context, r audit.Record, notify func(seq uint64, err error)) error
}

// recordDone records a request that has already completed. Nothing waits
// on that record, so when the Auditor allows it the record is queued
// without waiting for its fsync: it is still chained in order and
// committed with the next group commit, and closing the log flushes it.
// Records that must be durable before a request proceeds (credential
// access) or before a refusal is answered keep using Append. Waiting here
// would hold the end of every response for an fsync.
func (p *Proxy) recordDone(ctx context.Context, r audit.Record) {
	q, ok := p.opts.Audit.(enqueuer)
	if !ok {
		p.record(ctx, r)
		return
	}
	action := r.Action
	err := q.Enqueue(context.WithoutCancel(ctx), r, func(_ uint64, err error) {
		if err != nil {
			p.log.Error("audit append failed", zap.String("action", action), zap.Error(err))
		}
	})
	if err != nil {
		p.log.Error("audit append failed", zap.String("action", action), zap.Error(err))
	}
}
