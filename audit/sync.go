package audit

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// SyncPolicy says when an appended record becomes power-safe.
type SyncPolicy int

const (
	// SyncInterval, the default: Append returns once the record is written
	// to the journal (its write(2) returned), so a killed process loses
	// nothing acknowledged; the fdatasync that makes it survive a power
	// loss or a kernel crash runs in the background, at most
	// Options.SyncInterval after the write, and covers every record
	// written before it started (a group commit).
	SyncInterval SyncPolicy = iota
	// SyncAlways: Append returns only once the record is synced to disk.
	SyncAlways
)

// DefaultSyncInterval bounds how long a written record waits for its
// fdatasync under SyncInterval.
const DefaultSyncInterval = 10 * time.Millisecond

// String returns the policy as the configuration spells it.
func (p SyncPolicy) String() string {
	switch p {
	case SyncInterval:
		return "interval"
	case SyncAlways:
		return "always"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// Policy returns the log's sync policy.
func (l *Log) Policy() SyncPolicy { return l.opts.Sync }

// ParseSyncPolicy reads "interval" or "always".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "interval":
		return SyncInterval, nil
	case "always":
		return SyncAlways, nil
	}
	return 0, fmt.Errorf("audit: unknown sync policy %q (interval or always)", s)
}

// ErrSyncFailed wraps the error of a background fdatasync. Records written
// before it are not known to be on disk: the log refuses appends until it
// has written them again and synced them (see Log.Append).
var ErrSyncFailed = errors.New("audit: journal sync failed")

// syncFile is the journal's fdatasync; tests make it fail.
var syncFile = fdatasync

// syncer group-commits the journal's writes under SyncInterval: the writer
// marks the journal dirty after a write, and the syncer runs one fdatasync
// at most interval after the first write since the previous one.
type syncer struct {
	f        *os.File
	interval time.Duration
	// dirty is the time (UnixNano) of the first write the last fdatasync
	// did not cover, or 0.
	dirty atomic.Int64
	kick  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	// failed holds the error of the last failed fdatasync until the
	// writer has made the records it covered durable another way.
	failed atomic.Pointer[error]
}

func startSyncer(f *os.File, interval time.Duration) *syncer {
	s := &syncer{f: f, interval: interval, kick: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

// written notes a write to the journal that returned.
func (s *syncer) written() {
	if s.dirty.Load() != 0 {
		return // a sync is due already
	}
	if s.dirty.CompareAndSwap(0, time.Now().UnixNano()) {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

func (s *syncer) run() {
	defer close(s.done)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-s.kick:
		case <-s.stop:
			return
		}
		since := s.dirty.Load()
		if since == 0 {
			continue
		}
		if wait := time.Until(time.Unix(0, since).Add(s.interval)); wait > 0 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-s.stop:
				t.Stop()
				return // the journal's close syncs what is left
			}
		}
		// Every write that returned before this store is covered by the
		// fdatasync below; a later one marks the journal dirty again.
		s.dirty.Store(0)
		if err := syncFile(s.f); err != nil {
			err = fmt.Errorf("%w: %w", ErrSyncFailed, err)
			s.failed.Store(&err)
		}
	}
}

// close stops the syncer and waits for it. It does not sync: the caller
// does, with the journal's close.
func (s *syncer) close() {
	close(s.stop)
	<-s.done
}
