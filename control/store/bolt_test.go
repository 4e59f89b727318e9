package store_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/control/store/storetest"
	"go.uber.org/goleak"
)

// crashChildEnv, when set to a path, turns the test binary into the child
// of TestBoltCrashKeepsAcknowledgedWrites: it writes to that store forever
// and prints every acknowledged revision and its key on its own line.
const crashChildEnv = "STACK_STORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		os.Exit(crashChild(path))
	}
	goleak.VerifyTestMain(stopAfter{m})
}

// stopAfter runs the tests, then stops the etcd cluster they may have
// started, so that the leak check sees only what they left behind.
type stopAfter struct{ m *testing.M }

func (s stopAfter) Run() int {
	code := s.m.Run()
	if stopCluster() {
		// An etcd member's HTTP connection can outlive its Close by up
		// to its 5 s read timeout (the deadline that would end it at
		// once is replaced by the read timeout): give them that long,
		// longer than goleak waits, before the check.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if goleak.Find() == nil {
				break
			}
		}
	}
	return code
}

// openBolt opens a store in a new directory and closes it when the test
// ends.
func openBolt(t testing.TB, opts store.BoltOptions) (*store.Bolt, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := store.OpenBolt(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestBoltConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openBolt(t, store.BoltOptions{})
		return s
	})
}

func TestBoltRevisionsStartAtOne(t *testing.T) {
	s, _ := openBolt(t, store.BoltOptions{})
	ctx := t.Context()
	if r, err := s.Rev(ctx); err != nil || r != 0 {
		t.Fatalf("Rev of an empty store = %d, %v; want 0", r, err)
	}
	if r, err := s.Put(ctx, "k", []byte("v")); err != nil || r != 1 {
		t.Fatalf("first Put = %d, %v; want revision 1", r, err)
	}
}

func TestBoltReopen(t *testing.T) {
	ctx := t.Context()
	s, path := openBolt(t, store.BoltOptions{})
	for i := range 10 {
		if _, err := s.Put(ctx, fmt.Sprintf("k%d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Delete(ctx, "k3"); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.Rev(ctx); err != nil || r != 11 {
		t.Fatalf("Rev after reopening = %d, %v; want 11", r, err)
	}
	kv, err := s.Get(ctx, "k9")
	if err != nil || string(kv.Value) != "9" || kv.ModRev != 10 {
		t.Fatalf("Get(k9) after reopening = %+v, %v", kv, err)
	}
	if _, err := s.Get(ctx, "k3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted key after reopening: %v", err)
	}
	kvs, r, err := s.List(ctx, "")
	if err != nil || len(kvs) != 9 || r != 11 {
		t.Fatalf("List after reopening = %d keys at %d, %v", len(kvs), r, err)
	}
	if err := watchEnd(s.Watch(ctx, "", 5)); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("watch from before the compaction after reopening = %v, want ErrCompacted", err)
	}
	evs, err := watchN(s.Watch(ctx, "", 6), 5)
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].KV.ModRev != 7 || evs[4].Type != store.EventDelete || evs[4].KV.Key != "k3" || evs[4].KV.CreateRev != 4 {
		t.Fatalf("history after reopening = %+v", evs)
	}
	if r, err := s.Put(ctx, "k", nil); err != nil || r != 12 {
		t.Fatalf("Put after reopening = %d, %v; want 12", r, err)
	}
}

func TestBoltAutoCompact(t *testing.T) {
	ctx := t.Context()
	const keep, writes = 10, 100
	s, path := openBolt(t, store.BoltOptions{KeepEvents: keep})
	for i := range writes {
		if _, err := s.Put(ctx, "k", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	// At least keep changes are kept, and not many more.
	if _, err := watchN(s.Watch(ctx, "", writes-keep), keep); err != nil {
		t.Fatalf("watch of the last %d changes: %v", keep, err)
	}
	if err := watchEnd(s.Watch(ctx, "", writes-2*keep)); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("watch from %d with %d changes kept = %v, want ErrCompacted", writes-2*keep, keep, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte("events")).Stats().KeyN
		return nil
	})
	if n < keep || n > keep+keep/8+1 {
		t.Fatalf("%d changes in the file with KeepEvents %d", n, keep)
	}
}

func TestBoltLocked(t *testing.T) {
	_, path := openBolt(t, store.BoltOptions{})
	const timeout = 200 * time.Millisecond
	start := time.Now()
	s, err := store.OpenBolt(path, store.BoltOptions{Timeout: timeout})
	if err == nil {
		s.Close()
		t.Fatal("a second OpenBolt of an open file succeeded")
	}
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "held by another process") {
		t.Fatalf("second OpenBolt = %v, want ErrLocked", err)
	}
	// bbolt gives up one retry interval (50ms) early.
	if waited := time.Since(start); waited < timeout/2 {
		t.Fatalf("gave up after %s, without waiting for the lock", waited)
	}
}

func TestBoltNotStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("something-else"))
		return err
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if s, err := store.OpenBolt(path, store.BoltOptions{}); !errors.Is(err, store.ErrNotStore) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("OpenBolt of another bbolt file = %v, want ErrNotStore", err)
	}
}

// A watcher that lags while the history it needs is compacted ends with
// ErrCompacted after what it had already read, rather than skipping.
func TestBoltLaggingWatcherCompacted(t *testing.T) {
	ctx := t.Context()
	s, _ := openBolt(t, store.BoltOptions{})
	ch := s.Watch(ctx, "", 0)
	const n = 2000 // several of the watcher's reads
	for i := range n {
		if _, err := s.Put(ctx, fmt.Sprintf("k%d", i%10), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Compact(ctx, n); err != nil {
		t.Fatal(err)
	}
	var got int64
	timeout := time.After(30 * time.Second)
	for {
		var resp store.WatchResponse
		select {
		case r, ok := <-ch:
			if !ok {
				t.Fatal("watch closed without ErrCompacted")
			}
			resp = r
		case <-timeout:
			t.Fatalf("no ErrCompacted within 30s, after %d changes", got)
		}
		if resp.Err != nil {
			if !errors.Is(resp.Err, store.ErrCompacted) {
				t.Fatalf("lagging watcher ended with %v, want ErrCompacted", resp.Err)
			}
			if got >= n {
				t.Fatalf("watcher got all %d changes and then ErrCompacted", got)
			}
			return
		}
		for _, ev := range resp.Events {
			if got++; ev.KV.ModRev != got {
				t.Fatalf("event at %d, want %d", ev.KV.ModRev, got)
			}
		}
	}
}

// Close and cancelled watches leave no goroutine behind.
func TestBoltNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := store.OpenBolt(filepath.Join(t.TempDir(), "store.db"), store.BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, "k", nil); err != nil {
			t.Fatal(err)
		}
		cancelled, cancelWatch := context.WithCancel(ctx)
		chs := []<-chan store.WatchResponse{s.Watch(ctx, "", 0), s.Watch(ctx, "k", 1), s.Watch(cancelled, "", 0)}
		cancelWatch()
		s.Close()
		for _, ch := range chs {
			if err := watchEnd(ch); err != nil && !errors.Is(err, store.ErrClosed) && !errors.Is(err, errEndedQuietly) {
				t.Fatal(err)
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

func crashChild(path string) int {
	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				// Unique per process too: the pid tells rounds apart.
				key := fmt.Sprintf("crash/%d/%d/%d", os.Getpid(), w, i)
				rev, err := s.Put(context.Background(), key, []byte(key))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				// One write per line, unbuffered: a line the parent reads
				// whole was printed after Put returned.
				os.Stdout.WriteString(strconv.FormatInt(rev, 10) + " " + key + "\n")
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return 0
}

func TestBoltCrashKeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "store.db")
	var lastRev int64
	for round := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[int64]string{}
		parse := func(line string) {
			revText, key, ok := strings.Cut(line, " ")
			rev, err := strconv.ParseInt(revText, 10, 64)
			if !ok || err != nil {
				t.Fatalf("child printed %q", line)
			}
			acked[rev] = key
		}
		sc := bufio.NewScanner(out)
		for len(acked) < 2000 && sc.Scan() {
			parse(sc.Text())
		}
		// Kill mid-stream, with writes in flight.
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Lines already printed before the kill are acknowledged too; a
		// line cut by the kill is not.
		for sc.Scan() {
			if _, _, ok := strings.Cut(sc.Text(), " "); ok {
				parse(sc.Text())
			}
		}
		cmd.Wait()
		if len(acked) < 2000 {
			t.Fatalf("child acknowledged only %d writes", len(acked))
		}

		s, err := store.OpenBolt(path, store.BoltOptions{})
		if err != nil {
			t.Fatalf("round %d: reopening after SIGKILL: %v", round, err)
		}
		ctx := t.Context()
		cur, err := s.Rev(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for rev, key := range acked {
			kv, err := s.Get(ctx, key)
			if err != nil || kv.ModRev != rev || kv.Key != key || string(kv.Value) != key {
				t.Fatalf("round %d: acknowledged write %d of %s lost: %+v, %v", round, rev, key, kv, err)
			}
			if rev <= lastRev || rev > cur {
				t.Fatalf("round %d: acknowledged revision %d outside (%d, %d]", round, rev, lastRev, cur)
			}
		}
		// The history is whole: one change per revision, none missing.
		if _, err := watchN(s.Watch(ctx, "", 0), int(cur)); err != nil {
			t.Fatalf("round %d: history after SIGKILL: %v", round, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d acknowledged, revision %d after the kill", round, len(acked), cur)
		lastRev = cur
	}
}

// watchN reads n events and checks that their revisions follow one
// another.
func watchN(ch <-chan store.WatchResponse, n int) ([]store.Event, error) {
	var evs []store.Event
	timeout := time.After(30 * time.Second)
	for len(evs) < n {
		select {
		case resp, ok := <-ch:
			if !ok {
				return evs, fmt.Errorf("watch closed after %d of %d events", len(evs), n)
			}
			if resp.Err != nil {
				return evs, resp.Err
			}
			for _, ev := range resp.Events {
				if len(evs) > 0 && ev.KV.ModRev != evs[len(evs)-1].KV.ModRev+1 {
					return evs, fmt.Errorf("event at %d after %d", ev.KV.ModRev, evs[len(evs)-1].KV.ModRev)
				}
				evs = append(evs, ev)
			}
		case <-timeout:
			return evs, fmt.Errorf("%d of %d events within 30s", len(evs), n)
		}
	}
	return evs, nil
}

// errEndedQuietly is watchEnd's error for a watch that closed without an
// error response.
var errEndedQuietly = errors.New("watch closed without an error")

// watchEnd returns the error a watch ends with.
func watchEnd(ch <-chan store.WatchResponse) error {
	timeout := time.After(30 * time.Second)
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				return errEndedQuietly
			}
			if resp.Err != nil {
				return resp.Err
			}
		case <-timeout:
			return errors.New("watch did not end within 30s")
		}
	}
}
