package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// FollowOptions configure Follow.
type FollowOptions struct {
	// Cursor is the file that keeps the index of the next leaf to send
	// across restarts; a missing file starts at the log's beginning.
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
// cursor moves (and is written, atomically) only after a successful send.
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
	next, err := readCursor(opts.Cursor)
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
			err = writeCursor(opts.Cursor, to)
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

func readCursor(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("fleet: cursor: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("fleet: cursor %s: %q is not a leaf index", path, b)
	}
	return n, nil
}

// writeCursor replaces the cursor file: a crash leaves the old or the
// new index, never half of one.
func writeCursor(path string, n uint64) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cursor-*")
	if err != nil {
		return fmt.Errorf("fleet: cursor: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(strconv.FormatUint(n, 10) + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("fleet: cursor: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("fleet: cursor: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fleet: cursor: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("fleet: cursor: %w", err)
	}
	return nil
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
