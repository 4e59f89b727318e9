package fleet

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stackctl/stack/audit"
)

// Streams returns what the witness holds of every sidecar log, by log.
func (w *Witness) Streams() []Stream {
	w.mu.Lock()
	all := make([]*stream, 0, len(w.streams))
	for _, s := range w.streams {
		all = append(all, s)
	}
	w.mu.Unlock()
	out := make([]Stream, 0, len(all))
	for _, s := range all {
		s.mu.Lock()
		if s.opened || s.st.Finding != nil {
			out = append(out, s.st)
		}
		s.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Log < out[j].Log })
	return out
}

// Locate returns where the record with eventID is in the fleet log: its
// leaf's index and its position among the leaf's records.
func (w *Witness) Locate(eventID string) (idx uint64, pos int, err error) {
	err = w.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEvents).Get([]byte(eventID))
		if len(v) != 12 {
			return fmt.Errorf("%w: no record with event id %q in the fleet log", ErrNotFound, eventID)
		}
		idx, pos = binary.BigEndian.Uint64(v), int(binary.BigEndian.Uint32(v[8:]))
		return nil
	})
	return idx, pos, err
}

// Query selects records for Export; its zero value selects all.
type Query struct {
	// Agent, when set, selects that agent's records only.
	Agent string
	// Since and Until, when set, bound the records' timestamps
	// (Since included, Until excluded).
	Since, Until time.Time
	// Limit, when positive, stops after that many records.
	Limit int
}

// Item is one accepted record and where it sits in the fleet log: the
// index of its leaf and its position among the leaf's records.
type Item struct {
	Index    uint64 `json:"fleet_index"`
	Position int    `json:"position"`
	Log      string `json:"log"`
	Sidecar  string `json:"sidecar"`
	// Agent is the agent of the sidecar that shipped the record; the
	// record's agent_id says whose request it was.
	Agent  string       `json:"agent,omitempty"`
	Record audit.Record `json:"record"`
}

// Export calls fn with every record q selects, ordered by timestamp
// (then by fleet index), across all sidecars. fn returning audit.ErrStop
// ends it with a nil error.
func (w *Witness) Export(ctx context.Context, q Query, fn func(Item) error) error {
	bucket, prefix := bucketTime, []byte(nil)
	if q.Agent != "" {
		bucket, prefix = bucketAgents, append([]byte(q.Agent), 0)
	}
	from := timeKey(bytes.Clone(prefix), q.Since.UnixMilli(), nil)
	if q.Since.IsZero() {
		from = bytes.Clone(prefix)
	}
	var until []byte
	if !q.Until.IsZero() {
		until = timeKey(bytes.Clone(prefix), q.Until.UnixMilli(), nil)
	}
	leaves := &leafReader{t: w.opts.Tree}
	seen := 0
	for {
		var ats [][]byte
		var next []byte
		err := w.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucket).Cursor()
			for k, _ := c.Seek(from); k != nil && bytes.HasPrefix(k, prefix) && len(ats) < 1024; k, _ = c.Next() {
				if until != nil && bytes.Compare(k, until) >= 0 {
					break
				}
				ats = append(ats, bytes.Clone(k[len(k)-12:]))
				next = append(bytes.Clone(k), 0)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("fleet: export: %w", err)
		}
		for _, at := range ats {
			if err := ctx.Err(); err != nil {
				return err
			}
			it, err := leaves.item(ctx, binary.BigEndian.Uint64(at), int(binary.BigEndian.Uint32(at[8:])))
			if err != nil {
				return err
			}
			if err := fn(it); err != nil {
				if errors.Is(err, audit.ErrStop) {
					return nil
				}
				return err
			}
			if seen++; q.Limit > 0 && seen >= q.Limit {
				return nil
			}
		}
		if len(ats) < 1024 {
			return nil
		}
		from = next
	}
}

// Record returns the leaf idx as the fleet log holds it and the record at
// position pos among its records: what a proof shows.
func (w *Witness) Record(ctx context.Context, idx uint64, pos int) (leaf []byte, it Item, err error) {
	size, err := w.opts.Tree.Size(ctx)
	if err != nil {
		return nil, Item{}, err
	}
	if idx >= size {
		return nil, Item{}, fmt.Errorf("%w: fleet index %d (the log holds %d)", ErrNotFound, idx, size)
	}
	leaves, err := w.opts.Tree.Entries(ctx, idx, 1)
	if err != nil {
		return nil, Item{}, fmt.Errorf("fleet: reading leaf %d: %w", idx, err)
	}
	if len(leaves) != 1 {
		return nil, Item{}, fmt.Errorf("fleet: reading leaf %d: got %d leaves", idx, len(leaves))
	}
	l, err := ParseLeaf(leaves[0])
	if err != nil {
		return nil, Item{}, err
	}
	it, err = leafItem(&l, idx, pos)
	return leaves[0], it, err
}

// leafReader reads leaves a block at a time: an export in time order
// mostly reads neighbours.
type leafReader struct {
	t      Tree
	base   uint64
	leaves [][]byte
}

const leafBlock = 256

func (r *leafReader) leaf(ctx context.Context, idx uint64) ([]byte, error) {
	if idx < r.base || idx >= r.base+uint64(len(r.leaves)) {
		size, err := r.t.Size(ctx)
		if err != nil {
			return nil, err
		}
		if idx >= size {
			return nil, fmt.Errorf("%w: fleet index %d (the log holds %d)", ErrNotFound, idx, size)
		}
		base := idx - idx%leafBlock
		leaves, err := r.t.Entries(ctx, base, min(leafBlock, size-base))
		if err != nil {
			return nil, fmt.Errorf("fleet: reading leaf %d: %w", idx, err)
		}
		r.base, r.leaves = base, leaves
	}
	return r.leaves[idx-r.base], nil
}

func (r *leafReader) item(ctx context.Context, idx uint64, pos int) (Item, error) {
	raw, err := r.leaf(ctx, idx)
	if err != nil {
		return Item{}, err
	}
	l, err := ParseLeaf(raw)
	if err != nil {
		return Item{}, err
	}
	return leafItem(&l, idx, pos)
}

// leafItem is the record at position pos of leaf l (at index idx).
func leafItem(l *Leaf, idx uint64, pos int) (Item, error) {
	if l.Kind != LeafRecords || pos < 0 || pos >= len(l.Records) {
		return Item{}, fmt.Errorf("%w: leaf %d holds no record at position %d", ErrNotFound, idx, pos)
	}
	rec, err := audit.DecodeStored(l.Records[pos])
	if err != nil {
		return Item{}, fmt.Errorf("fleet: leaf %d record %d: %w", idx, pos, err)
	}
	return Item{Index: idx, Position: pos, Log: l.Log, Sidecar: l.Sidecar, Agent: l.Agent, Record: rec}, nil
}

// ItemsFrom returns the records of the fleet log's leaves from index from
// on, in log order, reading at most maxLeaves leaves (up to the log's
// size), and the index to go on from: a follower (a SIEM exporter) keeps
// that index as its cursor. Leaves of other kinds are passed over.
func (w *Witness) ItemsFrom(ctx context.Context, from uint64, maxLeaves int) (items []Item, next uint64, err error) {
	size, err := w.opts.Tree.Size(ctx)
	if err != nil || from >= size {
		return nil, from, err
	}
	n := min(size-from, uint64(max(maxLeaves, 1)))
	leaves, err := w.opts.Tree.Entries(ctx, from, n)
	if err != nil {
		return nil, from, fmt.Errorf("fleet: reading leaves %d-%d: %w", from, from+n-1, err)
	}
	for i, raw := range leaves {
		idx := from + uint64(i)
		l, err := ParseLeaf(raw)
		if err != nil {
			return nil, from, fmt.Errorf("fleet: leaf %d: %w", idx, err)
		}
		if l.Kind != LeafRecords {
			continue
		}
		for pos := range l.Records {
			it, err := leafItem(&l, idx, pos)
			if err != nil {
				return nil, from, err
			}
			items = append(items, it)
		}
	}
	return items, from + uint64(len(leaves)), nil
}
