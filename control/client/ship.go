package client

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control"
)

// Defaults of ShipOptions.
const (
	DefaultShipBatch    = 500
	DefaultShipInterval = 250 * time.Millisecond
	// findingRetry is how often a shipper whose log the control plane
	// refused as contradictory asks again: nothing is merged until an
	// operator has looked, and the records stay in the local log.
	findingRetry = time.Minute
	// maxShipBackoff bounds the wait between two tries while the control
	// plane is away: once it is back, the lag is gone within that much.
	maxShipBackoff = 5 * time.Second
)

// LogShipAudit is logged at error when the control plane refuses the
// sidecar's audit records as contradicting what it holds.
const LogShipAudit = "the control plane refused this sidecar's audit log as contradicting what it holds (audit_integrity)"

// ShipOptions configure ShipAudit.
type ShipOptions struct {
	// Log is the sidecar's audit log; it is the buffer while the control
	// plane is away.
	Log *audit.Log
	// Key is the note verifier key of the log's checkpoints.
	Key string
	// Batch bounds the records of one batch (DefaultShipBatch).
	Batch int
	// Interval is how often it looks for new records once caught up
	// (DefaultShipInterval).
	Interval time.Duration
}

// Shipper ships a sidecar's audit log to the control plane.
type Shipper struct {
	c    *Client
	opts ShipOptions
	done chan struct{}

	mu     sync.Mutex
	status ShipStatus
}

// ShipStatus is where shipping stands, for metrics and /readyz.
type ShipStatus struct {
	// Acked is the last seq the control plane acknowledged holding.
	Acked uint64 `json:"acked"`
	// Verified is true once the control plane has compared every record
	// of the local log since this start (the first pass re-sends what it
	// holds already, so that a record changed while the sidecar was down
	// is found).
	Verified bool `json:"verified"`
	// Refused is the control plane's audit_integrity finding, if any.
	Refused string `json:"refused,omitempty"`
	// Err is the last failure to ship, cleared by a success.
	Err      string    `json:"error,omitempty"`
	LastShip time.Time `json:"last_ship,omitzero"`
	Batches  uint64    `json:"batches"`
	Records  uint64    `json:"records"`
}

// ShipAudit starts shipping opts.Log to the control plane until ctx
// ends; Done is closed when the shipper has stopped.
//
// Shipping is at least once, in order, in batches. Each start sends the
// whole local log once, from its first record, so that the control plane
// compares what it holds with what the file holds now; then only new
// records. The log's shipped mark (which Prune respects) moves only to
// what the control plane acknowledged.
func (c *Client) ShipAudit(ctx context.Context, opts ShipOptions) (*Shipper, error) {
	if opts.Log == nil || opts.Key == "" {
		return nil, errors.New("control client: ShipAudit needs the audit log and its checkpoint key")
	}
	if opts.Log.ID() == "" {
		return nil, errors.New("control client: the audit log has no identity (open it writable once)")
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultShipBatch
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultShipInterval
	}
	s := &Shipper{c: c, opts: opts, done: make(chan struct{})}
	if seq, ok, err := opts.Log.Shipped(); err != nil {
		return nil, err
	} else if ok {
		s.status.Acked = seq
	}
	go s.run(ctx)
	return s, nil
}

// Done is closed when the shipper has stopped.
func (s *Shipper) Done() <-chan struct{} { return s.done }

// Status returns where shipping stands.
func (s *Shipper) Status() ShipStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Lag is how far the control plane is behind the local log: the records
// it has not acknowledged, and the age of the oldest of them (zero when
// it holds everything).
func (s *Shipper) Lag() (records uint64, age time.Duration) {
	head, _ := s.opts.Log.Head()
	acked := s.Status().Acked
	if head <= acked {
		return 0, 0
	}
	var ts int64
	_, _ = s.opts.Log.ScanStored(context.Background(), acked+1, func(_ uint64, v []byte) error {
		if r, err := audit.DecodeStored(v); err == nil {
			ts = r.TimestampMS
		}
		return audit.ErrStop
	})
	if ts > 0 {
		age = max(s.c.now().Sub(time.UnixMilli(ts)), 0)
	}
	return head - acked, age
}

func (s *Shipper) run(ctx context.Context) {
	defer close(s.done)
	var from uint64 // the next seq to send; 0: the log's first record
	attempt := 0
	for ctx.Err() == nil {
		head, _ := s.opts.Log.Head()
		if from > head || head == 0 {
			if !sleep(ctx, s.opts.Interval) {
				return
			}
			continue
		}
		b, last, err := s.read(ctx, from, head)
		if err == nil && len(b.Records) == 0 {
			// Nothing at or after from: the log was pruned past it.
			from = head + 1
			continue
		}
		var resp control.AuditBatchResponse
		if err == nil {
			err = s.c.authed(ctx, http.MethodPost, control.PathAuditShip, b, &resp)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var api *APIError
			if errors.As(err, &api) && api.Reason == control.ReasonAuditIntegrity {
				s.refused(api.Msg)
				if !sleep(ctx, findingRetry) {
					return
				}
				continue
			}
			wait := backoff(attempt, s.opts.Interval, maxShipBackoff)
			attempt++
			s.failed(err, attempt)
			if !s.c.shipWait(ctx, wait) {
				return
			}
			continue
		}
		attempt = 0
		var acked uint64
		if resp.Next > 0 {
			acked = min(resp.Next-1, last)
		}
		if acked > 0 {
			if err := s.opts.Log.MarkShipped(acked); err != nil {
				s.c.log.Warn("audit: recording what the control plane holds failed", zap.Error(err))
			}
		}
		s.mu.Lock()
		s.status.Acked = max(s.status.Acked, acked)
		s.status.Err, s.status.Refused = "", ""
		s.status.LastShip = s.c.now()
		s.status.Batches++
		s.status.Records += uint64(len(b.Records))
		if last >= head {
			s.status.Verified = true
		}
		s.mu.Unlock()
		from = last + 1
		if resp.Next > 0 && resp.Next < from {
			// The control plane holds less than it said before (restored
			// from a backup, say): send it what it misses.
			from = resp.Next
		}
	}
}

// read builds the batch of the records from from (the log's first when
// 0) up to at most Batch of them, with the checkpoints among them.
func (s *Shipper) read(ctx context.Context, from, head uint64) (control.AuditBatch, uint64, error) {
	l := s.opts.Log
	b := control.AuditBatch{Log: l.ID(), Key: s.opts.Key, Head: head}
	var first, last uint64
	_, err := l.ScanStored(ctx, from, func(seq uint64, v []byte) error {
		if len(b.Records) >= s.opts.Batch || seq > head {
			return audit.ErrStop
		}
		if first == 0 {
			first = seq
		}
		last = seq
		b.Records = append(b.Records, v)
		return nil
	})
	if err != nil || len(b.Records) == 0 {
		return b, last, err
	}
	if err := l.ScanCheckpoints(ctx, first, last, func(_ uint64, n []byte) error {
		b.Checkpoints = append(b.Checkpoints, n)
		return nil
	}); err != nil {
		return b, last, err
	}
	if from == 0 {
		// A log pruned before it first shipped starts after its anchor;
		// the control plane reads it when it opens the stream.
		a, ok, err := l.Anchor()
		if err != nil {
			return b, last, err
		}
		if ok {
			b.Anchor = a
		}
	}
	return b, last, nil
}

// shipWait waits out a failed shipment's backoff, or less when the feed
// reconnects first (the control plane is back); false when ctx ended.
func (c *Client) shipWait(ctx context.Context, backoff time.Duration) bool {
	t := time.NewTimer(backoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-c.wakeShip:
	}
	return true
}

func (s *Shipper) refused(msg string) {
	s.mu.Lock()
	first := s.status.Refused == ""
	s.status.Refused = msg
	s.mu.Unlock()
	if first {
		s.c.log.Error(LogShipAudit, zap.String("log", s.opts.Log.ID()), zap.String("finding", msg))
	}
}

func (s *Shipper) failed(err error, attempt int) {
	s.mu.Lock()
	s.status.Err = err.Error()
	s.mu.Unlock()
	level := s.c.log.Debug
	if attempt == 3 || attempt%20 == 0 {
		level = s.c.log.Warn
	}
	level("audit: shipping to the control plane failed; the local log keeps the records", zap.Int("attempt", attempt), zap.Error(err))
}
