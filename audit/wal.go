package audit

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The journal (PATH-wal, next to the log file) makes an append durable
// with one write, and one fdatasync, of a preallocated file instead of a
// bbolt commit's two syncs (data pages, then the meta page), each of which
// costs as much CPU as proxying a request on a small virtual machine. A
// batch of records is written to the journal, and only then acknowledged
// (under SyncAlways, only once synced; under SyncInterval the syncer
// group-commits the syncs in the background, see sync.go); records
// move from the journal into the log file in one bbolt transaction every
// walApplyEvery, every walApplyRecords records, when the journal fills,
// before any read, checkpoint or prune of this Log, and on Close. After a
// crash, the next writable Open moves the acknowledged records still in
// the journal into the file before anything else (a read-only Open does
// this first too, when it can take the file for writing).
//
// Frame: length (uint32, little endian) and generation (uint32) of the
// stored record that follows, exactly as the records bucket holds it (its
// sequence number, previous hash and own SHA-256 included). A journal
// holds one generation: it restarts at offset 0 with a new, random
// generation each time its records are in the file. Recovery reads frames
// from offset 0 while they belong to the first frame's generation, decode,
// and continue the chain of the file's last record (the next sequence
// number and its hash as previous hash); records already in the file are
// skipped, and the first frame that does none of this ends the journal: a
// torn write, or frames of an earlier generation or of a failed write
// beyond the last good one.
const frameHeader = 8

// Journal sizing; tests change them.
var (
	walSize         int64 = 4 << 20
	walApplyEvery         = 100 * time.Millisecond
	walApplyRecords       = 4096
)

// maxWALRead bounds what recovery reads of a journal.
const maxWALRead = 64 << 20

type wal struct {
	f    *os.File
	size int64
	off  int64 // where the next frame goes
	gen  uint32
	// mem is the journal's content, off bytes of frames: records are
	// encoded into it as frames, a commit writes what it added in one
	// write, and the pending records' values are slices of it until they
	// are in the file.
	mem []byte
	// pending are the records in the journal and not yet in the file, in
	// order.
	pending []stored
	// syncer syncs the journal in the background under SyncInterval; nil
	// under SyncAlways, where each write is synced before it is answered.
	syncer *syncer
}

// maxKeptMem is the most journal memory kept across restarts (sustained
// load of small records needs about 1 MiB between two moves into the
// file); a bigger buffer (a burst of large records) is left to the
// collector.
const maxKeptMem = 2 << 20

func walPath(path string) string { return path + "-wal" }

func newGen() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:]) | 1 // never zero, the empty header
}

// openWAL opens the journal of l's file (creating it), moves any records a
// crash left in it into the file and preallocates it. An error while
// reading or moving records fails the Open: acknowledged records must not
// be skipped, nor new ones chained past them. Other errors (no space to
// preallocate, a directory it cannot create the journal in) leave the log
// without one (nil, nil): appends then commit to the file directly.
func (l *Log) openWAL() (w *wal, err error) {
	p := walPath(l.path)
	_, statErr := os.Stat(p)
	created := errors.Is(statErr, fs.ErrNotExist)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if created {
			return nil, nil // e.g. a read-only directory: no journal
		}
		return nil, fmt.Errorf("journal: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxWALRead))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	recs, err := scanWAL(data, l.headSeq, l.headHash)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal %s: %w; move it aside to open the log without its records", p, err)
	}
	if len(recs) > 0 {
		l.wmu.Lock()
		l.markCheckpoints(recs)
		err := l.storeLocked(recs)
		if err == nil {
			last := recs[len(recs)-1]
			l.setHead(last.seq, last.hash)
		}
		l.wmu.Unlock()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("journal: recover %d records: %w", len(recs), err)
		}
	}
	w = &wal{f: f, size: max(walSize, int64(len(data))), gen: newGen()}
	if err := w.prepare(int64(len(data))); err != nil {
		f.Close()
		return nil, nil
	}
	// The journal's directory entry must be durable before an append
	// relies on it; an earlier Open killed before this point may have
	// created the file without it being.
	if d, err := os.Open(filepath.Dir(p)); err == nil {
		d.Sync()
		d.Close()
	}
	if l.opts.Sync == SyncInterval {
		w.syncer = startSyncer(f, l.opts.SyncInterval)
	}
	return w, nil
}

// prepare fills the journal with zeros up to its size, from have, so that
// writing a frame overwrites allocated blocks and its fdatasync flushes
// data only, and marks it empty.
func (w *wal) prepare(have int64) error {
	zeros := make([]byte, 64<<10)
	for off := have; off < w.size; off += int64(len(zeros)) {
		if _, err := w.f.WriteAt(zeros[:min(int64(len(zeros)), w.size-off)], off); err != nil {
			return err
		}
	}
	w.markEmpty()
	return w.f.Sync()
}

// markEmpty clears the first frame's header. Only a hint for read-only
// opens (an empty journal needs no recovery); recovery does not rely on
// it, so it is not synced.
func (w *wal) markEmpty() {
	var zero [frameHeader]byte
	w.f.WriteAt(zero[:], 0)
}

// scanWAL returns the records of a journal's content that continue the
// chain of a file whose last record is head (hash h). It fails when the
// journal's first frame is a record the file should already end with or
// continue into, but does not: a journal that belongs to another state of
// the file (one restored from a backup, say). Its records were
// acknowledged; they must be neither dropped nor overwritten by new ones
// under the same numbers.
func scanWAL(data []byte, head uint64, h Hash) ([]stored, error) {
	var out []stored
	var gen uint32
	for off := 0; off+frameHeader <= len(data); {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		g := binary.LittleEndian.Uint32(data[off+4:])
		if n == 0 || n > len(data)-off-frameHeader || (off > 0 && g != gen) {
			break
		}
		gen = g
		v := data[off+frameHeader : off+frameHeader+n]
		r, err := DecodeStored(v)
		if err != nil {
			break
		}
		first := off == 0
		off += frameHeader + n
		if r.Seq <= head {
			continue // in the file already
		}
		if r.Seq != head+1 || r.PrevHash != h {
			if first {
				return nil, fmt.Errorf("%w: the journal starts at record %d, which does not continue the log's last record %d", ErrJournalMismatch, r.Seq, head)
			}
			break
		}
		out = append(out, stored{seq: r.Seq, v: v, hash: r.Hash})
		head, h = r.Seq, r.Hash
	}
	return out, nil
}

// pendingInWAL counts the records the journal of the log at path holds
// past head, for a reader (-1 when it cannot tell).
func pendingInWAL(path string, head uint64, h Hash) int {
	if !walDirty(path) {
		return 0
	}
	data, err := readWAL(walPath(path))
	if err != nil {
		return -1
	}
	recs, err := scanWAL(data, head, h)
	if err != nil {
		return -1
	}
	return len(recs)
}

func readWAL(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxWALRead))
}

// walDirty reports whether the journal of the log at path may hold
// records (its first frame header is not empty).
func walDirty(path string) bool {
	f, err := os.Open(walPath(path))
	if err != nil {
		return false
	}
	defer f.Close()
	var hdr [frameHeader]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return false
	}
	return hdr != [frameHeader]byte{}
}

// write writes the frames mem holds from start, past the last write, to
// the journal at off, and syncs them (SyncAlways) or leaves that to the
// syncer (SyncInterval). On failure the frames are refused: any of them
// that reached the disk anyway must not be recovered, so the first one's
// header is cleared (best effort).
func (w *wal) write(start int) error {
	_, err := w.f.WriteAt(w.mem[start:], w.off)
	if err == nil && w.syncer == nil {
		err = syncFile(w.f)
	}
	if err != nil {
		var zero [frameHeader]byte
		w.f.WriteAt(zero[:], w.off)
		fdatasync(w.f)
		return err
	}
	w.off = int64(len(w.mem))
	if w.syncer != nil {
		w.syncer.written()
	}
	return nil
}

// restart empties the journal once its records are in the file: it starts
// again at offset 0 with a new generation. No pending record may refer to
// mem any more.
func (w *wal) restart() {
	w.off, w.gen = 0, newGen()
	if cap(w.mem) > maxKeptMem {
		w.mem = nil
	} else {
		w.mem = w.mem[:0]
	}
	w.markEmpty()
}

// due reports whether the pending records should move into the file now.
func (w *wal) due() bool {
	return len(w.pending) >= walApplyRecords || w.off > w.size*3/4
}

// applyLocked moves the journal's pending records into the file, in one
// bbolt transaction, and restarts the journal. On failure they stay
// pending (and durable in the journal). The caller holds wmu.
func (l *Log) applyLocked() error {
	w := l.wal
	if w == nil || len(w.pending) == 0 {
		return nil
	}
	if err := l.storeLocked(w.pending); err != nil {
		return err
	}
	if cap(w.pending) > 4*walApplyRecords {
		w.pending = nil
	} else {
		clear(w.pending)
		w.pending = w.pending[:0]
	}
	l.unapplied.Store(0)
	w.restart()
	return nil
}

// recoverSyncLocked, after a background fdatasync failed, makes the
// records it covered durable again: Linux may have dropped the pages that
// failed to reach the disk, and a second fdatasync would not report it,
// so every frame of the journal is written again and synced. Until that
// works the log refuses records. The caller holds wmu.
func (l *Log) recoverSyncLocked() error {
	w := l.wal
	if w == nil || w.syncer == nil {
		return nil
	}
	failed := w.syncer.failed.Load()
	if failed == nil {
		return nil
	}
	_, err := w.f.WriteAt(w.mem[:w.off], 0)
	if err == nil {
		err = syncFile(w.f)
	}
	if err != nil {
		return fmt.Errorf("%w (writing its records again failed: %v)", *failed, err)
	}
	// A sync that failed meanwhile covered only what was just rewritten;
	// the next commit clears it the same way.
	w.syncer.failed.CompareAndSwap(failed, nil)
	return nil
}

// closeWAL moves what is pending into the file and closes the journal.
// The caller holds wmu.
func (l *Log) closeWAL() error {
	if l.wal == nil {
		return nil
	}
	if l.wal.syncer != nil {
		l.wal.syncer.close()
	}
	err := l.applyLocked()
	if err == nil {
		err = l.wal.f.Sync()
	}
	if cerr := l.wal.f.Close(); err == nil {
		err = cerr
	}
	l.wal = nil
	return err
}
