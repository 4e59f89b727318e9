package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/mod/sumdb/note"
)

// Defaults of Options.
const (
	DefaultOpenTimeout        = time.Second
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = 60 * time.Second
	// DefaultCommitDelay is how long a commit under sustained load waits
	// for more records (see Options.CommitDelay).
	DefaultCommitDelay = 500 * time.Microsecond
)

// busyWindow: a record that arrives within this long of the previous
// commit's end finds the log under sustained load, and its commit may
// wait CommitDelay for company. Sporadic records commit at once.
const busyWindow = 5 * time.Millisecond

// lingerBatch is the batch size at which a waiting commit stops waiting.
const lingerBatch = 64

// Bucket and meta key names; part of the format (docs/audit-format.md).
var (
	bucketRecords     = []byte("records")
	bucketCheckpoints = []byte("checkpoints")
	bucketMeta        = []byte("meta")
	metaFormat        = []byte("format")
	metaAnchor        = []byte("anchor")
	formatName        = []byte("stack-audit-v1")
)

// maxBatch bounds the records committed in one transaction, so a burst
// cannot build one huge transaction in memory.
const maxBatch = 4096

// Options configure Open. The zero value opens a writable log without
// checkpoints.
type Options struct {
	// Now is the clock (time.Now when nil). It stamps records, checkpoints
	// and anchors and drives the checkpoint interval.
	Now func() time.Time
	// OpenTimeout bounds the wait for the file lock (DefaultOpenTimeout
	// when zero): Open never hangs on a file another process holds.
	OpenTimeout time.Duration
	// ReadOnly opens the file for reading only, sharing it with other
	// readers. Append and Prune then fail with ErrReadOnly.
	ReadOnly bool
	// Signer signs checkpoints and prune anchors; nil writes no
	// checkpoints and unsigned anchors.
	Signer note.Signer
	// CheckpointEvery writes a checkpoint after this many records
	// (DefaultCheckpointEvery when zero; negative turns it off).
	CheckpointEvery int
	// CheckpointInterval writes a checkpoint at least this often while
	// records arrive. Zero turns the timer off: callers pass the configured
	// value (config.DefaultCheckpointInterval is DefaultCheckpointInterval).
	CheckpointInterval time.Duration
	// CommitDelay is the most a commit waits for more records when the
	// log is under sustained concurrent load (the previous commit, a few
	// milliseconds ago, carried several records), so one sync covers more
	// of them: each costs one fdatasync (two without the journal), a
	// hundred microseconds or more of CPU on small virtual machines,
	// whatever its size.
	// A lone appender never waits. Zero means DefaultCommitDelay under
	// SyncAlways and no wait under SyncInterval, where a commit syncs
	// nothing; negative never waits.
	CommitDelay time.Duration
	// Sync says when an append is acknowledged: once written (SyncInterval,
	// the default, with the fdatasync group-committed at most SyncInterval
	// later) or once synced (SyncAlways).
	Sync SyncPolicy
	// SyncInterval bounds the time between a record's write and its
	// fdatasync under SyncInterval (DefaultSyncInterval when zero).
	SyncInterval time.Duration
}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	db   *bolt.DB
	path string
	id   string // see ID
	opts Options
	now  func() time.Time

	// mu guards closed and the handoff to the writer: Append sends on reqs
	// under RLock and Close closes reqs under Lock, so no send can race the
	// close.
	mu     sync.RWMutex
	closed bool
	reqs   chan *appendReq
	done   chan struct{} // closed when the writer goroutine has returned
	// lingerWant, while the writer lingers (see linger), is how many
	// queued requests end its wait; 0 otherwise. full wakes it.
	lingerWant atomic.Int64
	full       chan struct{}

	// wmu serialises write transactions (the writer's commits, Prune,
	// timer checkpoints) and guards the fields below.
	wmu sync.Mutex
	// hmu guards headSeq and headHash for Head, which must not wait for a
	// commit's fsync; they are written only with wmu held too.
	hmu      sync.Mutex
	headSeq  uint64
	headHash Hash
	ckSize   uint64
	ckTime   time.Time

	// wal is the journal (see wal.go); nil when read-only or when it could
	// not be set up. Guarded by wmu; the writer also reads it without.
	wal *wal
	// unapplied counts records in the journal and not yet in the file.
	unapplied atomic.Int64
	// journalPending, for a read-only Log, counts the records in the
	// journal past the file's last (see JournalPending).
	journalPending int

	// ids supplies the random bytes of event IDs; guarded by wmu.
	ids idSource
	// barriers is the writer's scratch list of a batch's Syncs.
	barriers []*appendReq

	closeOnce   sync.Once
	closeErr    error
	walCloseErr error // set by the writer as it exits
	closeCkErr  error // set by the writer as it exits
}

type appendReq struct {
	rec Record
	// wait marks a request whose caller waits on done (an Append or a
	// Sync); the writer must not touch it once answered, as the caller may
	// reuse it at once.
	wait bool
	// done receives the result of a waiting request.
	done chan appendResult
	// notify, when set, is called with the result of an Enqueue from the
	// writer goroutine.
	notify func(seq uint64, err error)
	// barrier marks a Sync: no record, answered once every request queued
	// before it is committed.
	barrier bool
}

// reqPool recycles the requests of Append and Enqueue (and the done
// channel each carries), which would otherwise be two allocations of a few
// hundred bytes per record. A request returns to the pool only once
// nothing can touch it again: an Append's after it has read its answer,
// an Enqueue's once the writer has notified.
var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan appendResult, 1)} }}

func getReq() *appendReq { return reqPool.Get().(*appendReq) }

func putReq(req *appendReq) {
	*req = appendReq{done: req.done} // drop the record's strings and notify
	reqPool.Put(req)
}

// answer delivers a request's result to whoever waits for it. The writer
// must not touch req afterwards.
func (req *appendReq) answer(seq uint64, err error) {
	if req.wait {
		req.done <- appendResult{seq: seq, err: err}
		return
	}
	if req.notify != nil {
		req.notify(seq, err)
	}
	putReq(req)
}

type appendResult struct {
	seq uint64
	err error
}

// Open opens (creating if needed, unless ReadOnly) the audit log at path.
func Open(path string, opts Options) (*Log, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	if opts.CheckpointEvery == 0 {
		opts.CheckpointEvery = DefaultCheckpointEvery
	}
	if opts.CommitDelay == 0 {
		opts.CommitDelay = -1
		if opts.Sync == SyncAlways {
			opts.CommitDelay = DefaultCommitDelay
		}
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.ReadOnly {
		// bbolt would create a missing file even read-only; a reader must
		// not conjure an empty, verifying log out of a wrong path.
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("audit: open %s: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      opts.OpenTimeout,
		ReadOnly:     opts.ReadOnly,
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("audit: open %s: %w (waited %s)", path, ErrLocked, opts.OpenTimeout)
		}
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	l := &Log{db: db, path: path, opts: opts, now: opts.Now}
	if err := l.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	if opts.ReadOnly {
		// A reader writes nothing: records a stopped writer left in its
		// journal are counted, and moved into the file by the next
		// writer (with the checkpoints only it can sign).
		l.journalPending = pendingInWAL(path, l.headSeq, l.headHash)
	}
	if !opts.ReadOnly {
		if l.wal, err = l.openWAL(); err != nil {
			db.Close()
			return nil, fmt.Errorf("audit: open %s: %w", path, err)
		}
		l.reqs = make(chan *appendReq, 1024)
		l.full = make(chan struct{}, 1)
		l.done = make(chan struct{})
		go l.writer()
	}
	return l, nil
}

// init creates the buckets of a new log (when writable), checks the format
// of an existing one and loads the head and the last checkpoint.
func (l *Log) init() error {
	if !l.opts.ReadOnly {
		err := l.db.Update(func(tx *bolt.Tx) error {
			meta, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			if meta.Get(metaFormat) == nil && tx.Bucket(bucketRecords) == nil {
				if err := meta.Put(metaFormat, formatName); err != nil {
					return err
				}
			}
			if _, err := tx.CreateBucketIfNotExists(bucketRecords); err != nil {
				return err
			}
			if _, err := tx.CreateBucketIfNotExists(bucketCheckpoints); err != nil {
				return err
			}
			if checkFormat(tx) != nil {
				return nil // reported below; a foreign file gets nothing of ours
			}
			return ensureLogID(meta)
		})
		if err != nil {
			return err
		}
	}
	return l.db.View(func(tx *bolt.Tx) error {
		if err := checkFormat(tx); err != nil {
			return err
		}
		seq, h, err := loadHead(tx)
		if err != nil {
			return err
		}
		l.headSeq, l.headHash = seq, h
		l.id = string(tx.Bucket(bucketMeta).Get(metaLogID))
		if k, v := tx.Bucket(bucketCheckpoints).Cursor().Last(); k != nil {
			ck, err := ParseCheckpoint(v, nil)
			if err != nil {
				return err
			}
			l.ckSize, l.ckTime = ck.Size, ck.Time
		}
		return nil
	})
}

func checkFormat(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil || tx.Bucket(bucketRecords) == nil || tx.Bucket(bucketCheckpoints) == nil {
		return ErrNotAuditLog
	}
	if f := meta.Get(metaFormat); string(f) != string(formatName) {
		return fmt.Errorf("%w: format %q", ErrNotAuditLog, f)
	}
	return nil
}

// loadHead returns the last record's seq and hash, or the anchor's, or
// (0, GenesisHash) for an empty log.
func loadHead(tx *bolt.Tx) (uint64, Hash, error) {
	if _, v := tx.Bucket(bucketRecords).Cursor().Last(); v != nil {
		r, err := DecodeStored(v)
		if err != nil {
			return 0, Hash{}, fmt.Errorf("last record: %w", err)
		}
		return r.Seq, r.Hash, nil
	}
	if v := tx.Bucket(bucketMeta).Get(metaAnchor); v != nil {
		a, err := ParseAnchor(v, nil)
		if err != nil {
			return 0, Hash{}, err
		}
		return a.Seq, a.Hash, nil
	}
	return 0, GenesisHash, nil
}

// Path returns the file the log was opened from.
func (l *Log) Path() string { return l.path }

// JournalPending is, for a log opened read-only, how many acknowledged
// records its journal holds that are not in the file yet (a writer stopped
// without moving them, as in a crash): the next writable Open moves them
// in. It is -1 when the journal cannot be read, and 0 for a writable log,
// whose reads see every record.
func (l *Log) JournalPending() int { return l.journalPending }

// Head returns the sequence number and hash of the last record (or of the
// prune anchor when every record was pruned; 0 and GenesisHash when the
// log is empty). The number of records ever appended is seq. A read-only
// log reports the head it found when opened.
func (l *Log) Head() (seq uint64, hash Hash) {
	l.hmu.Lock()
	defer l.hmu.Unlock()
	return l.headSeq, l.headHash
}

// Append stores rec and returns its sequence number once it is written:
// handed to the operating system, so that a killed process loses nothing
// Append acknowledged, and made power-safe by a background fdatasync at
// most Options.SyncInterval later; with SyncAlways, once it is synced. It
// fills Seq, PrevHash and Hash, EventID when empty and TimestampMS (from
// Options.Now) when zero. If ctx ends before the record is handed to the
// writer, nothing is stored; once handed over, Append waits for the
// commit, so a nil error always means stored and an error means the record
// was not. After a background fdatasync fails, every Append fails (with
// ErrSyncFailed) until the records it covered are written to the log file
// and synced again, which each later commit tries first.
func (l *Log) Append(ctx context.Context, rec Record) (uint64, error) {
	req, err := l.newReq(&rec)
	if err != nil {
		return 0, err
	}
	req.wait = true
	if err := l.submit(ctx, req); err != nil {
		putReq(req)
		return 0, err
	}
	res := <-req.done
	putReq(req)
	return res.seq, res.err
}

// Enqueue hands rec to the writer and returns without waiting for it to
// be durable: it is chained and committed in order with every other
// record, in the next group commit, and Close and Sync wait for it. It is
// for records that describe what has already happened (a request
// completed) where the caller must not wait for an fsync; records that
// must be durable before something proceeds use Append. Enqueue blocks
// only while the writer's queue is full (or until ctx ends, when nothing
// is stored). notify, when not nil, is called from the writer goroutine
// with the record's sequence number or the commit error; it must not
// block, nor call the Log's methods (they may wait for the writer).
func (l *Log) Enqueue(ctx context.Context, rec Record, notify func(seq uint64, err error)) error {
	req, err := l.newReq(&rec)
	if err != nil {
		return err
	}
	req.notify = notify
	if err := l.submit(ctx, req); err != nil {
		putReq(req)
		return err
	}
	return nil
}

// Sync waits until every record handed to the log before the call
// (by Append or Enqueue) is durable, or ctx ends.
func (l *Log) Sync(ctx context.Context) error {
	if l.opts.ReadOnly {
		return nil
	}
	// Not pooled: a Sync whose ctx ends leaves its request to the writer.
	req := &appendReq{barrier: true, wait: true, done: make(chan appendResult, 1)}
	if err := l.submit(ctx, req); err != nil {
		return fmt.Errorf("audit: sync: %w", errors.Unwrap(err))
	}
	select {
	case res := <-req.done:
		return res.err
	case <-ctx.Done():
		return fmt.Errorf("audit: sync: %w", ctx.Err())
	}
}

// newReq validates rec and returns a request carrying a copy of it, with
// TimestampMS filled. An empty EventID is filled by the writer as it
// encodes the record (see Log.encode).
func (l *Log) newReq(rec *Record) (*appendReq, error) {
	if l.opts.ReadOnly {
		return nil, fmt.Errorf("audit: append: %w", ErrReadOnly)
	}
	if err := rec.validate(); err != nil {
		return nil, fmt.Errorf("audit: append: %w", err)
	}
	req := getReq()
	req.rec = *rec
	if req.rec.TimestampMS == 0 {
		req.rec.TimestampMS = l.now().UnixMilli()
	}
	return req, nil
}

// submit hands req to the writer, or fails when the log is closed or ctx
// ends first.
func (l *Log) submit(ctx context.Context, req *appendReq) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return fmt.Errorf("audit: append: %w", ErrClosed)
	}
	// A queue with room takes req without a two-way select.
	select {
	case l.reqs <- req:
		l.queued()
		return nil
	default:
	}
	select {
	case l.reqs <- req:
		l.queued()
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: append: %w", ctx.Err())
	}
}

// writer is the single goroutine that commits appends. Each commit takes
// every request queued while the previous one was syncing, so appenders
// share fsyncs; under sustained load it also waits up to CommitDelay for
// more (see Options.CommitDelay).
func (l *Log) writer() {
	defer close(l.done)
	var tick <-chan time.Time
	if l.opts.Signer != nil && l.opts.CheckpointInterval > 0 {
		t := time.NewTicker(l.opts.CheckpointInterval)
		defer t.Stop()
		tick = t.C
	}
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	// apply moves journaled records into the file when no commit has
	// done so for walApplyEvery.
	apply := time.NewTimer(time.Hour)
	apply.Stop()
	applyArmed := false
	defer func() {
		l.wmu.Lock()
		// A clean stop leaves every record under a signed checkpoint: an
		// unsigned tail could be rewritten and re-chained unnoticed.
		if err := l.checkpointHeadLocked(func(time.Time) bool {
			return l.opts.Signer != nil && l.headSeq > l.ckSize
		}); err != nil {
			l.closeCkErr = err
		}
		if err := l.closeWAL(); err != nil {
			l.walCloseErr = err
		}
		l.wmu.Unlock()
	}()
	var lastCommit time.Time
	lastSize := 0
	batch := make([]*appendReq, 0, maxBatch)
	for {
		select {
		case req, ok := <-l.reqs:
			if !ok {
				return
			}
			batch = append(batch[:0], req)
			batch = l.drain(batch)
			if l.lingers(len(batch), lastSize, lastCommit) {
				batch = l.linger(batch, linger)
			}
			l.commit(batch)
			lastCommit, lastSize = time.Now(), len(batch)
			clear(batch)
			if !applyArmed && l.unapplied.Load() > 0 {
				apply.Reset(walApplyEvery)
				applyArmed = true
			}
		case <-apply.C:
			applyArmed = false
			l.wmu.Lock()
			err := l.applyLocked()
			l.wmu.Unlock()
			if err != nil && l.unapplied.Load() > 0 {
				// Still durable in the journal; try again later.
				apply.Reset(walApplyEvery)
				applyArmed = true
			}
		case <-tick:
			// A quiet log still gets its last records under a checkpoint.
			// An error here resurfaces on the next commit; there is no
			// caller to tell.
			_ = l.timerCheckpoint()
		}
	}
}

// lingers reports whether a commit of n records should wait for more:
// only under sustained concurrent load, when the previous commit, which
// ended less than busyWindow ago, carried more than one record. A lone
// appender never waits.
func (l *Log) lingers(n, lastSize int, lastCommit time.Time) bool {
	return l.opts.CommitDelay > 0 && n < lingerBatch && lastSize > 1 && time.Since(lastCommit) < busyWindow
}

// linger waits up to CommitDelay for the queue to hold enough requests to
// make batch lingerBatch long, then adds every queued request to it. The
// writer sleeps meanwhile instead of taking each request as it comes:
// waking it per request costs more than the request's own work. The
// submit that queues the last request wanted wakes it (see queued); a
// wake-up missed in a race only makes the wait run its full length.
func (l *Log) linger(batch []*appendReq, t *time.Timer) []*appendReq {
	select {
	case <-l.full: // left by a submit after the last wait ended
	default:
	}
	want := lingerBatch - len(batch)
	l.lingerWant.Store(int64(want))
	if len(l.reqs) < want {
		t.Reset(l.opts.CommitDelay)
		select {
		case <-t.C:
		case <-l.full:
		}
		t.Stop()
	}
	l.lingerWant.Store(0)
	return l.drain(batch)
}

// queued wakes a lingering writer once the queue holds what it waits for.
func (l *Log) queued() {
	if want := l.lingerWant.Load(); want > 0 && int64(len(l.reqs)) >= want {
		select {
		case l.full <- struct{}{}:
		default:
		}
	}
}

// drain adds the requests already queued to batch, up to maxBatch. It
// stops early when reqs is closed.
func (l *Log) drain(batch []*appendReq) []*appendReq {
	for len(batch) < maxBatch {
		select {
		case r, ok := <-l.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// commit writes batch in one transaction, chaining each record to the one
// before, adds any checkpoint due, and answers every request.
func (l *Log) commit(batch []*appendReq) {
	records := 0
	// Barriers are collected before any request is answered: an answered
	// Append's request may already be reused by its caller.
	barriers := l.barriers[:0]
	for _, req := range batch {
		if req.barrier {
			barriers = append(barriers, req)
		} else {
			records++
		}
	}
	defer func() {
		clear(barriers)
		l.barriers = barriers[:0]
	}()
	if records == 0 && l.wal == nil {
		// Only Syncs: everything before them is already committed.
		for _, req := range barriers {
			req.answer(0, nil)
		}
		return
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	err := l.writeLocked(batch, records)
	if err != nil {
		err = fmt.Errorf("audit: append: commit: %w", err)
	}
	// Appenders are answered first: a move into the file that this batch
	// makes due (a Sync, or a full journal) is not theirs to wait for.
	for _, req := range batch {
		switch {
		case err != nil:
			req.answer(0, err)
		case !req.barrier:
			req.answer(req.rec.Seq, nil)
		}
	}
	var syncErr error
	if l.wal != nil && (len(barriers) > 0 || l.wal.due()) {
		if syncErr = l.applyLocked(); syncErr != nil {
			syncErr = fmt.Errorf("audit: sync: %w", syncErr)
		}
	}
	if err == nil {
		for _, req := range barriers {
			req.answer(0, syncErr)
		}
	}
}

// writeLocked chains the records of batch to the head, makes them
// durable (in the journal, or in the file when there is none or the batch
// is too big for it) with the checkpoints due among them, and moves the
// head. On failure nothing is stored or changed. The caller holds wmu.
func (l *Log) writeLocked(batch []*appendReq, records int) error {
	if records == 0 {
		return nil
	}
	if err := l.recoverSyncLocked(); err != nil {
		return err
	}
	ckSize, ckTime := l.ckSize, l.ckTime
	size := 0
	for _, req := range batch {
		if !req.barrier {
			size += frameHeader + req.rec.storedLen()
		}
	}
	w := l.wal
	if w != nil && int64(size) <= w.size/2 {
		if w.off+int64(size) > w.size {
			if err := l.applyLocked(); err != nil {
				return err
			}
		}
		start, n := len(w.mem), len(w.pending)
		w.mem = slices.Grow(w.mem, size)
		w.mem, w.pending = l.encode(batch, w.mem, w.pending, w.gen)
		recs := w.pending[n:]
		l.markCheckpoints(recs)
		if err := w.write(start); err != nil {
			clear(recs)
			w.pending, w.mem = w.pending[:n], w.mem[:start]
			l.ckSize, l.ckTime = ckSize, ckTime
			return err
		}
		l.unapplied.Store(int64(len(w.pending)))
		last := w.pending[len(w.pending)-1]
		l.setHead(last.seq, last.hash)
		return nil
	}
	// Straight into the file. bbolt keeps the values until its commit, so
	// they get a buffer of their own rather than the journal's.
	_, recs := l.encode(batch, make([]byte, 0, size), make([]stored, 0, records), 0)
	l.markCheckpoints(recs)
	var err error
	if w != nil {
		err = l.applyLocked()
	}
	if err == nil {
		err = l.storeLocked(recs)
	}
	if err != nil {
		l.ckSize, l.ckTime = ckSize, ckTime
		return err
	}
	last := recs[len(recs)-1]
	l.setHead(last.seq, last.hash)
	if w != nil {
		// The journal starts afresh, durably empty: no frame of it may be
		// read as continuing the file.
		w.restart()
		fdatasync(w.f)
	}
	return nil
}

// encode chains the records of batch to the head: it fills their Seq,
// PrevHash and Hash, appends each one's stored value to buf (behind a
// journal frame header of generation gen unless gen is 0) and its entry
// to recs. Records without an EventID get a random one here, formatted
// straight into buf, rather than a string each on the appender's side.
func (l *Log) encode(batch []*appendReq, buf []byte, recs []stored, gen uint32) ([]byte, []stored) {
	seq, prev := l.headSeq, l.headHash
	var id [uuidLen]byte
	for _, req := range batch {
		if req.barrier {
			continue
		}
		r := &req.rec
		seq++
		r.Seq, r.PrevHash = seq, prev
		hdr := len(buf)
		if gen != 0 {
			buf = append(buf, make([]byte, frameHeader)...)
		}
		var eventID []byte
		if r.EventID == "" {
			l.ids.uuid(&id)
			eventID = id[:]
		}
		var v []byte
		buf, v = r.appendStoredID(buf, eventID)
		if gen != 0 {
			binary.LittleEndian.PutUint32(buf[hdr:], uint32(len(v)))
			binary.LittleEndian.PutUint32(buf[hdr+4:], gen)
		}
		prev = r.Hash
		recs = append(recs, stored{seq: seq, v: v, hash: prev})
	}
	return buf, recs
}

// stored is a record encoded for the records bucket.
type stored struct {
	seq  uint64
	v    []byte // the stored value
	hash Hash
	// ck, when set, is the time of the checkpoint due after this record.
	ck time.Time
}

func (l *Log) setHead(seq uint64, h Hash) {
	l.hmu.Lock()
	l.headSeq, l.headHash = seq, h
	l.hmu.Unlock()
}

// markCheckpoints decides, as recs are committed, after which of them a
// checkpoint is due (every CheckpointEvery records, or CheckpointInterval
// after the last one) and notes it on the record, to be written with it.
// A caller whose commit fails restores ckSize and ckTime. The caller holds
// wmu.
func (l *Log) markCheckpoints(recs []stored) {
	if l.opts.Signer == nil || len(recs) == 0 {
		return
	}
	every := uint64(max(l.opts.CheckpointEvery, 0))
	now := l.now()
	for i := range recs {
		if every > 0 && recs[i].seq-l.ckSize >= every {
			recs[i].ck = now
			l.ckSize, l.ckTime = recs[i].seq, now
		}
	}
	last := &recs[len(recs)-1]
	if l.intervalDue(last.seq, l.ckSize, l.ckTime, now) {
		last.ck = now
		l.ckSize, l.ckTime = last.seq, now
	}
}

// storeLocked writes recs, which continue the records in the file, to the
// records bucket in one bbolt transaction (durable when it returns), with
// the checkpoints markCheckpoints noted on them. The caller holds wmu.
func (l *Log) storeLocked(recs []stored) error {
	if len(recs) == 0 {
		return nil
	}
	return l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		b.FillPercent = 1 // keys only ever grow: pack pages full
		cks := tx.Bucket(bucketCheckpoints)
		cks.FillPercent = 1
		// bbolt copies keys (not values), so one key buffer serves all.
		var key [8]byte
		for _, r := range recs {
			binary.BigEndian.PutUint64(key[:], r.seq)
			if err := b.Put(key[:], r.v); err != nil {
				return err
			}
			if !r.ck.IsZero() {
				if err := l.putCheckpoint(cks, r.seq, r.hash, r.ck); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func (l *Log) intervalDue(seq, ckSize uint64, ckTime, now time.Time) bool {
	return l.opts.Signer != nil && l.opts.CheckpointInterval > 0 && seq > ckSize &&
		now.Sub(ckTime) >= l.opts.CheckpointInterval
}

func (l *Log) putCheckpoint(cks *bolt.Bucket, size uint64, head Hash, now time.Time) error {
	msg, err := signStatement(statementText(CheckpointOrigin, size, head, now), l.opts.Signer)
	if err != nil {
		return err
	}
	return cks.Put(seqKey(size), msg)
}

// timerCheckpoint writes a checkpoint of the current head if the interval
// has passed since the last one and records arrived since.
func (l *Log) timerCheckpoint() error {
	return l.checkpointHead(func(now time.Time) bool {
		return l.intervalDue(l.headSeq, l.ckSize, l.ckTime, now)
	})
}

// Checkpoint writes a signed checkpoint of the current head now, unless the
// last checkpoint already covers it. It needs Options.Signer.
func (l *Log) Checkpoint(ctx context.Context) error {
	if err := l.usable(ctx, "checkpoint", true); err != nil {
		return err
	}
	if l.opts.Signer == nil {
		return errors.New("audit: checkpoint: no signer configured")
	}
	return l.checkpointHead(func(time.Time) bool { return l.headSeq != 0 && l.headSeq != l.ckSize })
}

// checkpointHead moves the journal into the file and, when due says so,
// writes a checkpoint of the head.
func (l *Log) checkpointHead(due func(now time.Time) bool) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	return l.checkpointHeadLocked(due)
}

// checkpointHeadLocked is checkpointHead for a caller holding wmu.
func (l *Log) checkpointHeadLocked(due func(now time.Time) bool) error {
	if err := l.applyLocked(); err != nil {
		return fmt.Errorf("audit: checkpoint: %w", err)
	}
	now := l.now()
	if !due(now) {
		return nil
	}
	err := l.db.Update(func(tx *bolt.Tx) error {
		return l.putCheckpoint(tx.Bucket(bucketCheckpoints), l.headSeq, l.headHash, now)
	})
	if err != nil {
		return fmt.Errorf("audit: checkpoint: %w", err)
	}
	l.ckSize, l.ckTime = l.headSeq, now
	return nil
}

// LastCheckpoint returns the newest stored checkpoint, parsed but not
// verified; ok is false when there is none.
func (l *Log) LastCheckpoint() (ck Checkpoint, ok bool, err error) {
	if err := l.usable(context.Background(), "last checkpoint", false); err != nil {
		return ck, false, err
	}
	err = l.db.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketCheckpoints).Cursor().Last()
		if k == nil {
			return nil
		}
		ck, err = ParseCheckpoint(v, nil)
		ok = err == nil
		return err
	})
	return ck, ok, err
}

// WriteSnapshot writes a consistent copy of the whole bbolt file to w
// (bbolt Tx.WriteTo); a reader can open the copy with Open. The copy holds
// every record handed to the log before the call, Enqueued ones included.
func (l *Log) WriteSnapshot(w io.Writer) error {
	if err := l.usable(context.Background(), "snapshot", false); err != nil {
		return err
	}
	if err := l.Sync(context.Background()); err != nil {
		return fmt.Errorf("audit: snapshot: %w", err)
	}
	err := l.db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(w)
		return err
	})
	if err != nil {
		return fmt.Errorf("audit: snapshot: %w", err)
	}
	return nil
}

func (l *Log) usable(ctx context.Context, op string, write bool) error {
	if write && l.opts.ReadOnly {
		return fmt.Errorf("audit: %s: %w", op, ErrReadOnly)
	}
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	if closed {
		return fmt.Errorf("audit: %s: %w", op, ErrClosed)
	}
	if l.unapplied.Load() > 0 {
		// Readers read the file: move the journal's records into it. If
		// that fails (a full disk), they read the file as it is rather
		// than nothing; the records are safe in the journal. A cancelled
		// ctx ends the wait.
		if err := l.Sync(ctx); err != nil && ctx.Err() != nil {
			return fmt.Errorf("audit: %s: %w", op, ctx.Err())
		}
	}
	return nil
}

// Close waits for pending appends to commit, writes a checkpoint of the
// head when a signer is set and records came after the last one, stops
// the writer and closes the file. It is idempotent.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		if l.reqs != nil {
			close(l.reqs)
			select {
			case l.full <- struct{}{}: // a lingering commit goes at once
			default:
			}
			<-l.done
		}
		if l.closeCkErr != nil {
			l.closeErr = fmt.Errorf("audit: close: %w", l.closeCkErr)
		}
		if l.walCloseErr != nil && l.closeErr == nil {
			l.closeErr = fmt.Errorf("audit: close: journal: %w", l.walCloseErr)
		}
		if err := l.db.Close(); err != nil && l.closeErr == nil {
			l.closeErr = fmt.Errorf("audit: close: %w", err)
		}
	})
	return l.closeErr
}
