package audit

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// stubSync replaces the journal's fdatasync for one test; the log must
// be opened after it and closed before the test ends.
func stubSync(t *testing.T, f func(*os.File) error) {
	t.Helper()
	prev := syncFile
	syncFile = f
	t.Cleanup(func() { syncFile = prev })
}

// waitFor fails the test if ch does not deliver within a generous bound:
// a hang, not a slow machine.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: still waiting after 30s", what)
	}
}

func rec(agent string) Record {
	return Record{AgentID: agent, Action: ActionCredentialAccess, CredentialID: "stripe", Host: "api.stripe.com", Method: "GET", Path: "/v1/balance"}
}

// Under SyncInterval an Append is answered once written, while the
// journal's fdatasync is still running; the records it acknowledged are in
// the log after Close.
func TestIntervalAcknowledgesBeforeTheSync(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	stubSync(t, func(f *os.File) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return fdatasync(f)
	})
	l, path := openTest(t, Options{Sync: SyncInterval, SyncInterval: time.Millisecond})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the log's close, on failure
	first := make(chan struct{})
	go func() {
		defer close(first)
		if _, err := l.Append(context.Background(), rec("a")); err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, first, "the first append")
	waitFor(t, entered, "background sync after a write")
	// The sync is held: appends must still be answered.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20; i++ {
			if _, err := l.Append(context.Background(), rec("b")); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	waitFor(t, done, "appends while the sync is held")
	unblock()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if seq, _ := r.Head(); seq != 21 {
		t.Fatalf("head after close = %d, want 21", seq)
	}
}

// Under SyncAlways an Append waits for the fdatasync of its record.
func TestAlwaysWaitsForTheSync(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var held atomic.Bool
	held.Store(true)
	stubSync(t, func(f *os.File) error {
		if held.Load() {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		}
		return fdatasync(f)
	})
	l, _ := openTest(t, Options{Sync: SyncAlways})
	var once sync.Once
	unblock := func() { once.Do(func() { held.Store(false); close(release) }) }
	t.Cleanup(unblock) // before the log's close, on failure
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		if _, err := l.Append(context.Background(), rec("a")); err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, entered, "the record's sync")
	select {
	case <-answered:
		t.Fatal("Append returned before its record was synced")
	default:
	}
	unblock()
	waitFor(t, answered, "Append after the sync")
}

// A failed background sync fails every later append closed until the
// records it covered are written and synced again; nothing acknowledged is
// lost.
func TestFailedSyncRefusesAppendsUntilRecovered(t *testing.T) {
	var failing atomic.Bool
	failed := make(chan struct{}, 1)
	stubSync(t, func(f *os.File) error {
		if failing.Load() {
			select {
			case failed <- struct{}{}:
			default:
			}
			return syscall.EIO
		}
		return fdatasync(f)
	})
	l, path := openTest(t, Options{Sync: SyncInterval, SyncInterval: time.Millisecond})
	ctx := context.Background()
	failing.Store(true)
	if _, err := l.Append(ctx, rec("before")); err != nil {
		t.Fatalf("the write itself succeeds: %v", err)
	}
	waitFor(t, failed, "the failing background sync")
	// The syncer records its failure right after the stub returns; an
	// append may still slip in before that, so wait for the refusal.
	var err error
	for i := 0; ; i++ {
		if _, err = l.Append(ctx, rec("during")); err != nil {
			break
		}
		if i > 1000 {
			t.Fatal("appends still accepted after the journal's sync failed")
		}
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, ErrSyncFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("append after a failed sync: %v, want ErrSyncFailed wrapping EIO", err)
	}
	if _, err := l.Append(ctx, rec("during")); !errors.Is(err, ErrSyncFailed) {
		t.Fatalf("second append while the disk still fails: %v", err)
	}
	failing.Store(false)
	if _, err := l.Append(ctx, rec("after")); err != nil {
		t.Fatalf("append once the disk works again: %v", err)
	}
	head, _ := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyFile(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != head {
		t.Fatalf("%d records after close, want %d", rep.Records, head)
	}
	r, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var agents []string
	if err := r.Iterate(ctx, 1, func(x Record) error { agents = append(agents, x.AgentID); return nil }); err != nil {
		t.Fatal(err)
	}
	if agents[0] != "before" || agents[len(agents)-1] != "after" {
		t.Fatalf("records %v: the acknowledged ones must be kept", agents)
	}
}

func TestParseSyncPolicy(t *testing.T) {
	for _, p := range []SyncPolicy{SyncInterval, SyncAlways} {
		got, err := ParseSyncPolicy(p.String())
		if err != nil || got != p {
			t.Fatalf("ParseSyncPolicy(%q) = %v, %v", p.String(), got, err)
		}
	}
	if _, err := ParseSyncPolicy("sometimes"); err == nil {
		t.Fatal("an unknown policy must be refused")
	}
}
