package audit

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
)

// scanChunk is how many records one read transaction visits before it is
// closed and a new one resumes: long scans neither hold memory nor keep a
// writer from growing the file.
const scanChunk = 4096

// Filter selects records; its zero value matches every record.
type Filter struct {
	// AgentID, when set, matches records of that agent only.
	AgentID string
	// Action, when set, matches records with that action only.
	Action string
	// Since, when set, matches records stamped at or after it.
	Since time.Time
}

// Match reports whether r passes the filter.
func (f Filter) Match(r *Record) bool {
	if f.AgentID != "" && r.AgentID != f.AgentID {
		return false
	}
	if f.Action != "" && r.Action != f.Action {
		return false
	}
	if !f.Since.IsZero() && r.TimestampMS < f.Since.UnixMilli() {
		return false
	}
	return true
}

// Iterate calls fn for every record with seq >= from, in order. It reads in
// short transactions, so memory stays constant however long the log is;
// every record acknowledged before the call is included, and records
// appended meanwhile may be. fn returning ErrStop ends the
// iteration with a nil error; any other error is returned as is.
func (l *Log) Iterate(ctx context.Context, from uint64, fn func(Record) error) error {
	_, err := l.Scan(ctx, from, Filter{}, fn)
	return err
}

// Scan calls fn for every record with seq >= from that matches f, in order,
// and returns the seq to resume from (one past the last record seen).
// Records that do not decode are an error (run Verify to locate them).
func (l *Log) Scan(ctx context.Context, from uint64, f Filter, fn func(Record) error) (next uint64, err error) {
	if err := l.usable(ctx, "scan", false); err != nil {
		return from, err
	}
	next = from
	for {
		n := 0
		err := l.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketRecords).Cursor()
			for k, v := c.Seek(seqKey(next)); k != nil && n < scanChunk; k, v = c.Next() {
				if err := ctx.Err(); err != nil {
					return err
				}
				n++
				r, err := DecodeStored(v)
				if err != nil {
					return fmt.Errorf("seq %d: %w", binary.BigEndian.Uint64(k), err)
				}
				next = r.Seq + 1
				if !f.Match(&r) {
					continue
				}
				if err := fn(r); err != nil {
					return err
				}
			}
			return nil
		})
		if errors.Is(err, ErrStop) {
			return next, nil
		}
		if err != nil {
			return next, fmt.Errorf("audit: scan: %w", err)
		}
		if n < scanChunk {
			return next, nil
		}
	}
}

// Follow is Scan that does not end: after reaching the head it polls every
// poll interval (100ms when zero) for new records until ctx ends, then
// returns ctx's error. fn returning ErrStop ends it with nil.
func (l *Log) Follow(ctx context.Context, from uint64, f Filter, poll time.Duration, fn func(Record) error) error {
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	stopped := false
	wrapped := func(r Record) error {
		err := fn(r)
		if errors.Is(err, ErrStop) {
			stopped = true
		}
		return err
	}
	t := time.NewTimer(0)
	defer t.Stop()
	next := from
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		var err error
		next, err = l.Scan(ctx, next, f, wrapped)
		if err != nil || stopped {
			return err
		}
		t.Reset(poll)
	}
}

// Last returns up to n of the newest records that match f, oldest first.
// It walks backwards from the head in one read transaction and holds at
// most n records.
func (l *Log) Last(ctx context.Context, n int, f Filter) ([]Record, error) {
	if err := l.usable(ctx, "last", false); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	var out []Record
	err := l.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			if err := ctx.Err(); err != nil {
				return err
			}
			r, err := DecodeStored(v)
			if err != nil {
				return fmt.Errorf("seq %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if f.Match(&r) {
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: last: %w", err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// Get returns the record with sequence number seq; ok is false when no
// such record is stored.
func (l *Log) Get(seq uint64) (r Record, ok bool, err error) {
	if err := l.usable(context.Background(), "get", false); err != nil {
		return r, false, err
	}
	err = l.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRecords).Get(seqKey(seq))
		if v == nil {
			return nil
		}
		r, err = DecodeStored(v)
		ok = err == nil
		return err
	})
	if err != nil {
		return r, false, fmt.Errorf("audit: get %d: %w", seq, err)
	}
	return r, ok, nil
}

// Export streams every record stamped at or after since (all when zero)
// to w as JSON Lines, one record per line with the keys of Record's JSON
// form, and returns how many it wrote. It buffers one record at a time.
func (l *Log) Export(ctx context.Context, w io.Writer, since time.Time) (uint64, error) {
	return l.ExportFilter(ctx, w, Filter{Since: since})
}

// ExportFilter is Export with a full Filter.
func (l *Log) ExportFilter(ctx context.Context, w io.Writer, f Filter) (uint64, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var n uint64
	_, err := l.Scan(ctx, 0, f, func(r Record) error {
		n++
		return enc.Encode(&r)
	})
	if err != nil {
		return n, fmt.Errorf("audit: export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("audit: export: %w", err)
	}
	return n, nil
}
