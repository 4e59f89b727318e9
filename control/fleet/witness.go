package fleet

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/internal/swap"
)

// Tree is the fleet transparency log the witness appends to and reads
// back (fleetlog.Log).
type Tree interface {
	// Append adds leaves in order and returns their indices once they are
	// sequenced durably.
	Append(ctx context.Context, leaves [][]byte) ([]uint64, error)
	// Size is the number of sequenced leaves.
	Size(ctx context.Context) (uint64, error)
	// Entries reads n leaves from index from.
	Entries(ctx context.Context, from, n uint64) ([][]byte, error)
}

// Defaults.
const (
	DefaultMaxBatch = 10000
	// commitLeaves bounds the leaves one commit appends and indexes.
	commitLeaves = 16384
)

// Options configure Open.
type Options struct {
	// Dir holds the index (fleet-index.db) and the evidence folder.
	Dir string
	// Tree is the fleet log.
	Tree Tree
	// Signer cosigns the sidecar checkpoints the witness verified.
	Signer note.Signer
	// OnFinding is called once for each new finding, after its evidence is
	// kept; the control plane raises the audit_integrity signal with it.
	OnFinding func(Stream, Finding)
	// OnCommitted, when set, is told of the records of every commit once
	// they are in the fleet log and its index, in log order: the live
	// view of the fleet (the console's signal stream). It runs on the
	// committer and must not block.
	OnCommitted func([]Item)
	// MaxBatch bounds the records of one batch (DefaultMaxBatch).
	MaxBatch int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Shipper is who ships a batch: the authenticated sidecar and its agent.
type Shipper struct {
	Sidecar string
	Agent   string
}

// Witness checks, appends and indexes the batches sidecars ship.
type Witness struct {
	opts Options
	db   *bolt.DB

	mu      sync.Mutex // guards streams
	streams map[string]*stream

	// qmu guards closed and sends on queue: Ship sends under RLock,
	// Close closes the queue under Lock.
	qmu    sync.RWMutex
	closed bool

	queue chan *job
	done  chan struct{}
	// lost is set when an append or index commit failed: the index may be
	// behind the fleet log, and the next commit catches it up first.
	lost bool
	// size is the fleet log's size as the committer knows it.
	size uint64
	// puts are the index puts of the commit being made, by bucket (see
	// indexRecord); only the committer (or Open's catch-up) touches them.
	puts [4][]kv

	closeOnce sync.Once
}

// stream is a Stream with what checking a batch needs. mu is held from a
// batch's check to its commit, so that batches of one log go one by one.
type stream struct {
	mu     sync.Mutex
	st     Stream
	opened bool
	head   audit.Hash
	ckSize uint64
}

// job is one batch's leaves on their way into the fleet log.
type job struct {
	s      *stream
	leaves []Leaf
	done   chan error
}

var (
	bucketMeta    = []byte("meta")
	bucketStreams = []byte("streams")
	bucketSeqs    = []byte("seqs")
	bucketEvents  = []byte("events")
	bucketTime    = []byte("time")
	bucketAgents  = []byte("agents")
	bucketBroken  = []byte("findings")
	metaIndexed   = []byte("indexed")
)

// Open opens (creating if needed) the index in opts.Dir and catches it up
// with the fleet log.
func Open(ctx context.Context, opts Options) (*Witness, error) {
	if opts.Tree == nil || opts.Signer == nil || opts.Dir == "" {
		return nil, errors.New("fleet: Dir, Tree and Signer are required")
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "evidence"), 0o700); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	path := filepath.Join(opts.Dir, "fleet-index.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("fleet: open %s: %w", path, err)
	}
	w := &Witness{opts: opts, db: db, streams: map[string]*stream{}, queue: make(chan *job, 256), done: make(chan struct{})}
	if err := w.load(); err != nil {
		db.Close()
		return nil, err
	}
	if err := w.catchUp(ctx); err != nil {
		db.Close()
		return nil, err
	}
	go w.committer()
	return w, nil
}

// load creates the buckets and reads every stream's state.
func (w *Witness) load() error {
	err := w.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketStreams, bucketSeqs, bucketEvents, bucketTime, bucketAgents, bucketBroken} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fleet: index: %w", err)
	}
	return w.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketStreams).ForEach(func(k, v []byte) error {
			s := &stream{opened: true}
			var saved savedStream
			if err := json.Unmarshal(v, &saved); err != nil {
				return fmt.Errorf("fleet: index: stream %s: %w", k, err)
			}
			s.st, s.head, s.ckSize = saved.Stream, saved.HeadHash, saved.CkSize
			w.streams[string(k)] = s
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketBroken).ForEach(func(k, v []byte) error {
			var f Finding
			if err := json.Unmarshal(v, &f); err != nil {
				return fmt.Errorf("fleet: index: finding of %s: %w", k, err)
			}
			s := w.streams[string(k)]
			if s == nil {
				s = &stream{st: Stream{Log: string(k)}}
				w.streams[string(k)] = s
			}
			s.st.Finding = &f
			return nil
		})
	})
}

// savedStream is a stream's state in the index.
type savedStream struct {
	Stream
	HeadHash audit.Hash `json:"head_hash"`
	CkSize   uint64     `json:"ck_size"`
}

// catchUp indexes the leaves the fleet log holds past the index: after a
// crash between an append and its index commit, or a failed commit.
func (w *Witness) catchUp(ctx context.Context) error {
	size, err := w.opts.Tree.Size(ctx)
	if err != nil {
		return fmt.Errorf("fleet: catch up: %w", err)
	}
	indexed, err := w.indexed()
	if err != nil {
		return err
	}
	for indexed < size {
		n := min(size-indexed, 4096)
		raws, err := w.opts.Tree.Entries(ctx, indexed, n)
		if err != nil {
			return fmt.Errorf("fleet: catch up at %d: %w", indexed, err)
		}
		err = w.db.Update(func(tx *bolt.Tx) error {
			w.dropPuts()
			touched := map[*stream]bool{}
			for i, raw := range raws {
				l, err := ParseLeaf(raw)
				if err != nil {
					return fmt.Errorf("fleet: catch up: leaf %d: %w", indexed+uint64(i), err)
				}
				s := w.streamFor(l.Log)
				if err := w.apply(tx, s, indexed+uint64(i), &l); err != nil {
					return err
				}
				touched[s] = true
			}
			return w.saveStreams(tx, touched, indexed+uint64(len(raws)))
		})
		if err != nil {
			return fmt.Errorf("fleet: catch up: %w", err)
		}
		indexed += uint64(len(raws))
	}
	w.size = size
	return nil
}

func (w *Witness) indexed() (n uint64, err error) {
	err = w.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(metaIndexed); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return n, err
}

// streamFor returns the stream of log, made empty if new.
func (w *Witness) streamFor(log string) *stream {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.streams[log]
	if s == nil {
		s = &stream{st: Stream{Log: log}}
		w.streams[log] = s
	}
	return s
}

// apply indexes one leaf at idx and moves its stream's state. It is
// idempotent: applying a leaf twice leaves what applying it once did, so
// a catch-up may replay what a failed commit half did.
func (w *Witness) apply(tx *bolt.Tx, s *stream, idx uint64, l *Leaf) (err error) {
	switch l.Kind {
	case LeafStream:
		var o StreamOpening
		if err := json.Unmarshal(l.Data, &o); err != nil {
			return fmt.Errorf("leaf %d: stream opening: %w", idx, err)
		}
		head := audit.GenesisHash
		if o.Anchor != nil {
			a, err := audit.ParseAnchor(o.Anchor, nil)
			if err != nil {
				return fmt.Errorf("leaf %d: anchor: %w", idx, err)
			}
			head = a.Hash
		}
		s.opened = true
		s.st.Log, s.st.Agent, s.st.Sidecar, s.st.Key = l.Log, l.Agent, l.Sidecar, o.Key
		s.st.First, s.st.Next, s.head = l.Seq, l.Seq, head
		s.st.Head = head.String()
	case LeafRecords:
		for pos, raw := range l.Records {
			var r audit.Record
			if len(l.decoded) == len(l.Records) {
				r = l.decoded[pos]
			} else if r, err = audit.DecodeStored(raw); err != nil {
				return fmt.Errorf("leaf %d record %d: %w", idx, pos, err)
			}
			w.indexRecord(l, idx, pos, &r)
			if r.Seq+1 > s.st.Next {
				s.st.Next, s.head = r.Seq+1, r.Hash
				s.st.Head = r.Hash.String()
			}
		}
		s.st.Sidecar = l.Sidecar
	case LeafCheckpoint:
		if l.Seq > s.ckSize {
			s.ckSize, s.st.Cosigned = l.Seq, l.Data
		}
	}
	s.st.Updated = w.opts.Now().UTC()
	return nil
}

// indexRecord indexes record r, at position pos of leaf idx: by (log,
// seq) with its hash, by event id, by time and by agent. The puts wait in
// w.puts until flushPuts writes them in key order, which bbolt does much
// faster than in the order records come.
func (w *Witness) indexRecord(l *Leaf, idx uint64, pos int, r *audit.Record) {
	at := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(make([]byte, 0, 12), idx), uint32(pos))
	v := append(append(make([]byte, 0, 44), at...), r.Hash[:]...)
	w.puts[0] = append(w.puts[0], kv{seqKey(l.Log, r.Seq), v})
	w.puts[1] = append(w.puts[1], kv{[]byte(r.EventID), at})
	w.puts[2] = append(w.puts[2], kv{timeKey(nil, r.TimestampMS, at), nil})
	if r.AgentID != "" {
		w.puts[3] = append(w.puts[3], kv{timeKey(append([]byte(r.AgentID), 0), r.TimestampMS, at), nil})
	}
}

type kv struct{ k, v []byte }

// dropPuts forgets puts a failed transaction left.
func (w *Witness) dropPuts() {
	for i := range w.puts {
		w.puts[i] = w.puts[i][:0]
	}
}

// putBuckets are the buckets of w.puts, in order.
var putBuckets = [4][]byte{bucketSeqs, bucketEvents, bucketTime, bucketAgents}

// flushPuts writes the pending index puts, each bucket's in key order.
func (w *Witness) flushPuts(tx *bolt.Tx) error {
	for i, puts := range w.puts {
		slices.SortFunc(puts, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
		b := tx.Bucket(putBuckets[i])
		for _, p := range puts {
			if err := b.Put(p.k, p.v); err != nil {
				return err
			}
		}
		w.puts[i] = puts[:0]
	}
	return nil
}

// saveStreams writes the pending index puts, the touched streams' states
// and the index mark.
func (w *Witness) saveStreams(tx *bolt.Tx, touched map[*stream]bool, indexed uint64) error {
	if err := w.flushPuts(tx); err != nil {
		return err
	}
	b := tx.Bucket(bucketStreams)
	for s := range touched {
		if !s.opened {
			continue
		}
		st := s.st
		st.Finding = nil // kept in its own bucket
		v, err := json.Marshal(savedStream{Stream: st, HeadHash: s.head, CkSize: s.ckSize})
		if err != nil {
			return err
		}
		if err := b.Put([]byte(s.st.Log), v); err != nil {
			return err
		}
	}
	var m [8]byte
	binary.BigEndian.PutUint64(m[:], indexed)
	return tx.Bucket(bucketMeta).Put(metaIndexed, m[:])
}

func seqKey(log string, seq uint64) []byte {
	k := make([]byte, 0, len(log)/2+8)
	if b, err := hex.DecodeString(log); err == nil {
		k = append(k, b...)
	} else {
		k = append(k, log...)
	}
	return binary.BigEndian.AppendUint64(k, seq)
}

// timeKey is prefix, the time and where the record is (leaf index and
// position): keys in time order, then in fleet log order.
func timeKey(prefix []byte, ms int64, at []byte) []byte {
	return append(binary.BigEndian.AppendUint64(prefix, uint64(ms)), at...)
}

// Ship checks a batch from a sidecar against the chain the witness holds
// for its log, appends what is new to the fleet log and answers where the
// witness stands. A batch that contradicts the chain is refused with an
// *IntegrityError and kept as evidence; the stream then takes nothing
// more.
func (w *Witness) Ship(ctx context.Context, from Shipper, b Batch) (BatchResponse, error) {
	if err := w.checkShape(&b); err != nil {
		return BatchResponse{}, err
	}
	verifier, err := note.NewVerifier(b.Key)
	if err != nil {
		return BatchResponse{}, fmt.Errorf("%w: key: %v", ErrBadBatch, err)
	}
	verifiers := note.VerifierList(verifier)
	s := w.streamFor(b.Log)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.st.Finding; f != nil {
		return BatchResponse{}, &IntegrityError{Log: b.Log, Finding: *f}
	}
	if s.opened && s.st.Agent != from.Agent {
		return BatchResponse{}, fmt.Errorf("%w: log %s is %s's, the sidecar is %s's", ErrOtherAgent, b.Log, s.st.Agent, from.Agent)
	}
	c := check{w: w, b: &b, from: from, first: s.st.First, next: s.st.Next, head: s.head, ckSize: s.ckSize}
	if !s.opened {
		if len(b.Records) == 0 {
			return BatchResponse{Next: 1}, nil
		}
		if err := c.open(verifiers); err != nil {
			return BatchResponse{}, err
		}
	} else if b.Key != s.st.Key {
		return BatchResponse{}, w.refuse(s, from, &b, Finding{Kind: KindKey, Seq: s.st.Next,
			Detail: fmt.Sprintf("the batch's checkpoint key %q is not the stream's %q", KeyName(b.Key), KeyName(s.st.Key))})
	}
	if f := c.records(); f != nil {
		return BatchResponse{}, w.refuse(s, from, &b, *f)
	}
	cosigned, f, err := c.checkpoints(verifiers)
	if err != nil {
		return BatchResponse{}, err
	}
	if f != nil {
		return BatchResponse{}, w.refuse(s, from, &b, *f)
	}
	if len(c.leaves) > 0 {
		j := &job{s: s, leaves: c.leaves, done: make(chan error, 1)}
		if err := w.submit(ctx, j); err != nil {
			return BatchResponse{}, err
		}
		// The commit cannot be abandoned halfway: wait for it even if ctx
		// ends, so that the stream's state is settled before its lock goes.
		if err := <-j.done; err != nil {
			return BatchResponse{}, err
		}
	}
	s.st.SidecarHead, s.st.Shipped = b.Head, w.opts.Now().UTC()
	return BatchResponse{Next: s.st.Next, Cosigned: cosigned}, nil
}

func (w *Witness) submit(ctx context.Context, j *job) error {
	w.qmu.RLock()
	defer w.qmu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	select {
	case w.queue <- j:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkShape refuses what is malformed rather than contradictory.
func (w *Witness) checkShape(b *Batch) error {
	if len(b.Log) != 32 {
		return fmt.Errorf("%w: log identity %q is not 32 hex digits", ErrBadBatch, b.Log)
	}
	if _, err := hex.DecodeString(b.Log); err != nil {
		return fmt.Errorf("%w: log identity %q is not 32 hex digits", ErrBadBatch, b.Log)
	}
	if len(b.Records) > w.opts.MaxBatch {
		return fmt.Errorf("%w: %d records, at most %d a batch", ErrBadBatch, len(b.Records), w.opts.MaxBatch)
	}
	if n := len(b.Records); n > 0 {
		if last, ok := storedSeq(b.Records[n-1]); ok && b.Head < last {
			return fmt.Errorf("%w: head %d is before the batch's last record %d", ErrBadBatch, b.Head, last)
		}
	}
	return nil
}

// storedSeq reads the seq of a stored value without checking it.
func storedSeq(v []byte) (uint64, bool) {
	if len(v) < 9 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v[1:9]), true
}

// KeyName is the name part of a note verifier key ("name+hash+base64").
func KeyName(key string) string {
	name, _, _ := strings.Cut(key, "+")
	return name
}

// check is one batch being checked against a stream's state; the fields
// move as its new records are accepted.
type check struct {
	w      *Witness
	b      *Batch
	from   Shipper
	first  uint64
	next   uint64
	head   audit.Hash
	ckSize uint64
	// fresh are the hashes of the batch's new records, by seq.
	fresh     map[uint64]audit.Hash
	leaves    []Leaf
	leafBytes int // stored bytes in the last leaf, when it holds records
}

// open starts a new stream at record 1, or after the batch's anchor.
func (c *check) open(verifiers note.Verifiers) error {
	c.first, c.head = 1, audit.GenesisHash
	if c.b.Anchor != nil {
		a, err := audit.ParseAnchor(c.b.Anchor, verifiers)
		if err != nil {
			return fmt.Errorf("%w: anchor: %v", ErrBadBatch, err)
		}
		c.first, c.head = a.Seq+1, a.Hash
	}
	c.next = c.first
	data, _ := json.Marshal(StreamOpening{Key: c.b.Key, Anchor: c.b.Anchor})
	c.leaves = append(c.leaves, Leaf{V: LeafVersion, Kind: LeafStream, Log: c.b.Log, Sidecar: c.from.Sidecar, Agent: c.from.Agent, Seq: c.first, Data: data})
	return nil
}

// records checks the batch's records in order and collects the new ones.
func (c *check) records() *Finding {
	var prevSeq uint64
	var prevHash audit.Hash
	for i, raw := range c.b.Records {
		r, err := audit.DecodeStored(raw)
		if err != nil {
			seq, _ := storedSeq(raw)
			if i > 0 {
				seq = prevSeq + 1
			}
			return &Finding{Kind: KindCorrupt, Seq: seq, Detail: err.Error()}
		}
		if i > 0 {
			if r.Seq != prevSeq+1 {
				return &Finding{Kind: KindGap, Seq: prevSeq + 1, Detail: fmt.Sprintf("the batch goes from record %d to %d", prevSeq, r.Seq)}
			}
			if r.PrevHash != prevHash {
				return &Finding{Kind: KindCorrupt, Seq: r.Seq, Detail: fmt.Sprintf("record %d does not link to record %d before it", r.Seq, prevSeq)}
			}
		}
		prevSeq, prevHash = r.Seq, r.Hash
		switch {
		case r.Seq < c.first:
			// Before what the witness holds (pruned before it first shipped).
		case r.Seq < c.next:
			held, ok, err := c.w.heldHash(c.b.Log, r.Seq)
			if err != nil || !ok {
				return &Finding{Kind: KindFork, Seq: r.Seq, Detail: fmt.Sprintf("the witness cannot read its record %d: %v", r.Seq, err)}
			}
			if held != r.Hash {
				return &Finding{Kind: KindFork, Seq: r.Seq, Detail: fmt.Sprintf("record %d differs from the one the witness holds (hash %.12s…, held %.12s…)", r.Seq, r.Hash, held)}
			}
		case r.Seq == c.next:
			if r.PrevHash != c.head {
				return &Finding{Kind: KindFork, Seq: r.Seq, Detail: fmt.Sprintf("record %d does not link to the record %d the witness holds", r.Seq, r.Seq-1)}
			}
			if c.fresh == nil {
				c.fresh = map[uint64]audit.Hash{}
			}
			c.fresh[r.Seq] = r.Hash
			c.add(&r, raw)
			c.next, c.head = r.Seq+1, r.Hash
		default:
			return &Finding{Kind: KindGap, Seq: c.next, Detail: fmt.Sprintf("the batch starts at record %d, the witness holds up to %d", r.Seq, c.next-1)}
		}
	}
	if c.b.Head+1 < c.next {
		return &Finding{Kind: KindTruncation, Seq: c.b.Head + 1,
			Detail: fmt.Sprintf("the sidecar's log ends at record %d, the witness holds up to %d", c.b.Head, c.next-1)}
	}
	return nil
}

// add puts a new record into the open records leaf, or a new one when
// that one is full.
func (c *check) add(r *audit.Record, raw []byte) {
	if n := len(c.leaves); n > 0 && c.leaves[n-1].Kind == LeafRecords && c.leafBytes+len(raw) <= maxLeafRecords {
		l := &c.leaves[n-1]
		l.Records, l.decoded = append(l.Records, raw), append(l.decoded, *r)
		c.leafBytes += len(raw)
		return
	}
	c.leaves = append(c.leaves, Leaf{V: LeafVersion, Kind: LeafRecords, Log: c.b.Log, Sidecar: c.from.Sidecar, Agent: c.from.Agent,
		Seq: r.Seq, Records: [][]byte{raw}, decoded: []audit.Record{*r}})
	c.leafBytes = len(raw)
}

// checkpoints verifies the batch's checkpoints against the chain and
// cosigns those newer than the last one cosigned.
func (c *check) checkpoints(verifiers note.Verifiers) (cosigned [][]byte, f *Finding, err error) {
	for _, msg := range c.b.Checkpoints {
		ck, err := audit.ParseCheckpoint(msg, verifiers)
		if err != nil {
			unsigned, perr := audit.ParseCheckpoint(msg, nil)
			if perr != nil {
				return nil, nil, fmt.Errorf("%w: checkpoint: %v", ErrBadBatch, perr)
			}
			return nil, &Finding{Kind: KindCheckpoint, Seq: unsigned.Size, Detail: fmt.Sprintf("checkpoint of size %d: %v", unsigned.Size, err)}, nil
		}
		if ck.Size < c.first || ck.Size >= c.next {
			continue // names a record the witness does not hold
		}
		held, ok := c.fresh[ck.Size]
		if !ok {
			if held, ok, err = c.w.heldHash(c.b.Log, ck.Size); err != nil || !ok {
				return nil, nil, fmt.Errorf("fleet: reading record %d of %s: %v", ck.Size, c.b.Log, err)
			}
		}
		if held != ck.Head {
			return nil, &Finding{Kind: KindCheckpoint, Seq: ck.Size, Detail: fmt.Sprintf("the checkpoint of size %d names hash %.12s…, the chain's record %d is %.12s…", ck.Size, ck.Head, ck.Size, held)}, nil
		}
		if ck.Size <= c.ckSize {
			continue
		}
		n, err := note.Open(msg, verifiers)
		if err != nil {
			return nil, nil, err
		}
		co, err := note.Sign(n, c.w.opts.Signer)
		if err != nil {
			return nil, nil, fmt.Errorf("fleet: cosign: %w", err)
		}
		cosigned = append(cosigned, co)
		c.ckSize = ck.Size
		c.leaves = append(c.leaves, Leaf{V: LeafVersion, Kind: LeafCheckpoint, Log: c.b.Log, Sidecar: c.from.Sidecar, Agent: c.from.Agent, Seq: ck.Size, Data: co})
	}
	return cosigned, nil, nil
}

// heldHash is the hash of the record the witness holds at seq of log.
func (w *Witness) heldHash(log string, seq uint64) (h audit.Hash, ok bool, err error) {
	err = w.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketSeqs).Get(seqKey(log, seq)); len(v) == 44 {
			copy(h[:], v[12:])
			ok = true
		}
		return nil
	})
	return h, ok, err
}

// refuse keeps the batch as evidence, marks the stream and reports the
// finding. Called with s.mu held.
func (w *Witness) refuse(s *stream, from Shipper, b *Batch, f Finding) error {
	f.At = w.opts.Now().UTC()
	name := fmt.Sprintf("%s-%d-%s-%d.json", b.Log, f.Seq, f.Kind, f.At.UnixNano())
	path := filepath.Join(w.opts.Dir, "evidence", name)
	ev, _ := json.Marshal(struct {
		Finding Finding `json:"finding"`
		Shipper Shipper `json:"shipper"`
		Batch   *Batch  `json:"batch"`
	}{f, from, b})
	if err := swap.WriteStaged(path, ev, 0o600); err != nil {
		return fmt.Errorf("fleet: keeping evidence of %s: %w", b.Log, err)
	}
	f.Evidence = name
	v, _ := json.Marshal(f)
	if err := w.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketBroken).Put([]byte(b.Log), v) }); err != nil {
		return fmt.Errorf("fleet: recording the finding on %s: %w", b.Log, err)
	}
	s.st.Finding = &f
	if s.st.Agent == "" {
		s.st.Agent, s.st.Sidecar = from.Agent, from.Sidecar
	}
	if w.opts.OnFinding != nil {
		w.opts.OnFinding(s.st, f)
	}
	return &IntegrityError{Log: b.Log, Finding: f}
}

// committer appends queued batches' leaves to the fleet log and indexes
// them, many batches at a time: one append and one index transaction for
// all that queued meanwhile.
func (w *Witness) committer() {
	defer close(w.done)
	for j := range w.queue {
		jobs, n := []*job{j}, len(j.leaves)
	more:
		for n < commitLeaves {
			select {
			case j2, ok := <-w.queue:
				if !ok {
					break more
				}
				jobs, n = append(jobs, j2), n+len(j2.leaves)
			default:
				break more
			}
		}
		err := w.commit(jobs, n)
		// Before the shippers hear back, so a record is live by the time
		// its sidecar is told it is held.
		if err == nil && w.opts.OnCommitted != nil {
			w.opts.OnCommitted(committedItems(jobs, w.size-uint64(n)))
		}
		for _, j := range jobs {
			j.done <- err
		}
	}
}

func (w *Witness) commit(jobs []*job, n int) error {
	ctx := context.Background()
	if w.lost {
		if err := w.catchUp(ctx); err != nil {
			return err
		}
		w.lost = false
		// The caught-up streams may now hold what the jobs were checked
		// against as new: refuse them, and their sidecars ship again.
		return errors.New("fleet: the index was behind the fleet log; ship again")
	}
	raws := make([][]byte, 0, n)
	for _, j := range jobs {
		for i := range j.leaves {
			raws = append(raws, j.leaves[i].Marshal())
		}
	}
	// The witness is the fleet log's only appender, so the leaves get the
	// indices from its size on: the index is written while the fleet log
	// sequences them, and committed once it has (rolled back otherwise).
	type appended struct {
		idx []uint64
		err error
	}
	done := make(chan appended, 1)
	go func() {
		idx, err := w.opts.Tree.Append(ctx, raws)
		done <- appended{idx, err}
	}()
	first := w.size
	tx, err := w.db.Begin(true)
	if err == nil {
		err = w.index(tx, jobs, first)
	}
	a := <-done
	switch {
	case a.err != nil:
		err = fmt.Errorf("fleet: append: %w", a.err)
	case len(a.idx) != len(raws) || len(raws) > 0 && (a.idx[0] != first || a.idx[len(a.idx)-1] != first+uint64(len(raws))-1):
		err = fmt.Errorf("fleet: the fleet log gave indices %v… for %d leaves from %d: another process appends to it", a.idx[:min(1, len(a.idx))], len(raws), first)
	case err == nil:
		if err = tx.Commit(); err != nil {
			err = fmt.Errorf("fleet: index: %w", err)
		}
		tx = nil
	}
	if tx != nil {
		tx.Rollback()
	}
	if a.err == nil {
		w.size += uint64(len(a.idx))
	}
	if err != nil {
		// The leaves may be in the fleet log and not in the index (or the
		// streams' states in memory ahead of both): catch up first.
		w.lost = true
		return err
	}
	return nil
}

// committedItems are the records of the jobs' leaves, numbered from
// first, as Export returns them.
func committedItems(jobs []*job, first uint64) []Item {
	var out []Item
	k := first
	for _, j := range jobs {
		for i := range j.leaves {
			l := &j.leaves[i]
			if l.Kind == LeafRecords {
				for pos := range l.Records {
					it := Item{Index: k, Position: pos, Log: l.Log, Sidecar: l.Sidecar, Agent: l.Agent}
					if pos < len(l.decoded) {
						it.Record = l.decoded[pos]
					} else if r, err := audit.DecodeStored(l.Records[pos]); err == nil {
						it.Record = r
					} else {
						continue
					}
					out = append(out, it)
				}
			}
			k++
		}
	}
	return out
}

// index writes the jobs' leaves, numbered from first, into tx.
func (w *Witness) index(tx *bolt.Tx, jobs []*job, first uint64) error {
	w.dropPuts()
	for _, b := range [][]byte{bucketSeqs, bucketTime, bucketAgents} {
		tx.Bucket(b).FillPercent = 0.9 // keys mostly arrive in order
	}
	touched := map[*stream]bool{}
	k := first
	for _, j := range jobs {
		for i := range j.leaves {
			if err := w.apply(tx, j.s, k, &j.leaves[i]); err != nil {
				return err
			}
			k++
		}
		touched[j.s] = true
	}
	return w.saveStreams(tx, touched, k)
}

// Close stops taking batches, waits for the ones in flight and closes the
// index. It does not close the Tree.
func (w *Witness) Close() error {
	var err error
	w.closeOnce.Do(func() {
		w.qmu.Lock()
		w.closed = true
		close(w.queue)
		w.qmu.Unlock()
		<-w.done
		err = w.db.Close()
	})
	return err
}
