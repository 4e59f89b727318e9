package proxy

import (
	"context"

	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
)

// enqueuer is an Auditor that can also take a record without waiting for
// it to be stored, and says when Append acknowledges; *audit.Log is one.
type enqueuer interface {
	Enqueue(ctx context.Context, r audit.Record, notify func(seq uint64, err error)) error
	Policy() audit.SyncPolicy
}

// recordDone records a request that has completed, before the end of its
// answer goes out (see countingBody). Under audit.SyncInterval an Append
// waits for a write, not a sync, so it is Appended: a sidecar killed
// after the agent got its answer has written its record. Under
// audit.SyncAlways, where an Append waits for an fdatasync, the record is
// queued instead, as holding the end of every response for a sync costs
// more than that policy's promise (credential accesses synced before the
// request leaves) asks for: it is chained in order and committed with the
// next group commit, and closing the log flushes it.
func (p *Proxy) recordDone(ctx context.Context, r audit.Record) {
	q, ok := p.opts.Audit.(enqueuer)
	if !ok || q.Policy() != audit.SyncAlways {
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
