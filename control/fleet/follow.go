package fleet

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FollowOptions configure Follow.
type FollowOptions struct {
	// Cursor names the follower: the index of the next leaf to send is
	// kept under that name in the witness's index, across restarts; a new
	// name starts at the log's beginning.
	Cursor string
	// Send hands on a run of records in log order. An error stops the
	// run; it is tried again after a backoff, from the same leaf.
	Send func(ctx context.Context, items []Item) error
	// Leaves bounds the leaves read at once (default 256).
	Leaves int
	// Every is how often it looks for new leaves once caught up
	// (default 1s).
	Every time.Duration
	// OnError is told of every failed send or read (for logs, metrics).
	OnError func(error)
}

// Follow sends every record of the fleet log, in log order and at least
// once, to opts.Send, from the leaf its cursor names, until ctx ends. The
// cursor moves (in the index, in one transaction) only after a successful
// send.
func (w *Witness) Follow(ctx context.Context, opts FollowOptions) error {
	if opts.Send == nil || opts.Cursor == "" {
		return errors.New("fleet: Follow needs Send and Cursor")
	}
	if opts.Leaves <= 0 {
		opts.Leaves = leafBlock
	}
	if opts.Every <= 0 {
		opts.Every = time.Second
	}
	next, err := w.readCursor(opts.Cursor)
	if err != nil {
		return err
	}
	failures := 0
	for ctx.Err() == nil {
		items, to, err := w.ItemsFrom(ctx, next, opts.Leaves)
		if err == nil && len(items) > 0 {
			err = opts.Send(ctx, items)
		}
		if err == nil && to != next {
			err = w.writeCursor(opts.Cursor, to)
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			if opts.OnError != nil {
				opts.OnError(err)
			}
			wait := min(opts.Every<<min(failures, 6), time.Minute)
			if !sleepCtx(ctx, wait) {
				break
			}
			continue
		}
		failures = 0
		if to == next && !sleepCtx(ctx, opts.Every) {
			break
		}
		next = to
	}
	return nil
}

// cursorKey is where a follower's cursor is kept in the index's meta
// bucket: written in one bbolt transaction, never torn.
func cursorKey(name string) []byte { return []byte("cursor/" + name) }

// readCursor returns the follower's cursor, 0 when it has none.
func (w *Witness) readCursor(name string) (n uint64, err error) {
	err = w.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(cursorKey(name)); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return n, err
}

func (w *Witness) writeCursor(name string, n uint64) error {
	return w.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(cursorKey(name), binary.BigEndian.AppendUint64(nil, n))
	})
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
