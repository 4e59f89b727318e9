package audit

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Enqueued records share the chain with waiting appends, in the order
// they were handed over, and Sync makes them durable and visible.
func TestEnqueueChainsInOrderAndSyncs(t *testing.T) {
	signer, verifiers := newKey(t)
	l, _ := openTest(t, Options{Signer: signer, CheckpointEvery: 10})
	ctx := context.Background()
	var mu sync.Mutex
	notified := map[uint64]string{}
	for i := range 30 {
		action := ActionRequest
		if i%3 == 0 {
			if _, err := l.Append(ctx, Record{AgentID: "a", Action: ActionCredentialAccess}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		path := "/" + string(rune('a'+i))
		err := l.Enqueue(ctx, Record{AgentID: "a", Action: action, Path: path}, func(seq uint64, err error) {
			if err != nil {
				t.Errorf("enqueue %s: %v", path, err)
			}
			mu.Lock()
			notified[seq] = path
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if seq, _ := l.Head(); seq != 30 {
		t.Fatalf("head seq = %d after Sync, want 30", seq)
	}
	var got []Record
	if err := l.Iterate(ctx, 1, func(r Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(notified) != 20 {
		t.Fatalf("notify called for %d records, want 20", len(notified))
	}
	for i, r := range got {
		wantAction := ActionRequest
		if i%3 == 0 {
			wantAction = ActionCredentialAccess
		}
		if r.Action != wantAction {
			t.Fatalf("record %d is %s, want %s: order not kept", r.Seq, r.Action, wantAction)
		}
		if wantAction == ActionRequest {
			if want := "/" + string(rune('a'+i)); r.Path != want || notified[r.Seq] != want {
				t.Fatalf("record %d path %q, notified %q, want %q", r.Seq, r.Path, notified[r.Seq], want)
			}
		}
	}
	if rep, err := l.Verify(ctx, verifiers); err != nil || rep.Records != 30 || rep.Checkpoints != 3 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// Close commits every enqueued record before it returns: none is lost.
func TestCloseCommitsEnqueued(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	var wg sync.WaitGroup
	for w := range 5 {
		wg.Go(func() {
			for range n / 5 {
				if err := l.Enqueue(context.Background(), Record{AgentID: "w", Action: ActionRequest, Status: 200 + w}, nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Enqueue(context.Background(), Record{Action: "x"}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("enqueue after close: %v", err)
	}
	if err := l.Sync(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("sync after close: %v", err)
	}
	r, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if seq, _ := r.Head(); seq != n {
		t.Fatalf("%d records after Close, want %d", seq, n)
	}
	if err := r.Sync(context.Background()); err != nil {
		t.Fatalf("sync of a read-only log: %v", err)
	}
	if err := r.Enqueue(context.Background(), Record{Action: "x"}, nil); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("enqueue on a read-only log: %v", err)
	}
}

// Enqueue checks the record at once, as Append does.
func TestEnqueueRejectsInvalid(t *testing.T) {
	l, _ := openTest(t, Options{})
	if err := l.Enqueue(context.Background(), Record{}, nil); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("enqueue of a record without action: %v", err)
	}
}

// A snapshot taken right after Enqueue holds the record.
func TestSnapshotIncludesEnqueued(t *testing.T) {
	l, _ := openTest(t, Options{})
	if err := l.Enqueue(context.Background(), Record{AgentID: "a", Action: ActionRequest}, nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := l.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyReader(context.Background(), &buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 1 {
		t.Fatalf("snapshot holds %d records, want 1", rep.Records)
	}
}

// BenchmarkEnqueue is the cost a caller pays per record when it does not
// wait for the fsync (compare BenchmarkAppend*).
func BenchmarkEnqueue(b *testing.B) {
	l, _ := openTest(b, Options{})
	ctx := context.Background()
	rec := Record{AgentID: "bot", Action: ActionRequest, Host: "api.stripe.com", Method: "GET", Path: "/v1/balance", Status: 200}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Enqueue(ctx, rec, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Sync(ctx); err != nil {
		b.Fatal(err)
	}
}

// Commits that wait for company (CommitDelay) lose nothing and keep one
// chain, whether the wait ends by time, by batch size or by Close.
func TestCommitDelayUnderConcurrency(t *testing.T) {
	for _, delay := range []time.Duration{-1, 0, 20 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "a.db")
			l, err := Open(path, Options{CommitDelay: delay})
			if err != nil {
				t.Fatal(err)
			}
			const workers, each = 16, 20
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for i := range each {
						var err error
						if i%2 == 0 {
							_, err = l.Append(context.Background(), Record{AgentID: "a", Action: ActionCredentialAccess})
						} else {
							err = l.Enqueue(context.Background(), Record{AgentID: "a", Action: ActionRequest}, nil)
						}
						if err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			// Close while a commit may be waiting: everything is committed.
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			rep, err := VerifyFile(context.Background(), path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Records != workers*each {
				t.Fatalf("%d records, want %d", rep.Records, workers*each)
			}
		})
	}
}

// A lingering commit ends as soon as enough requests are queued to fill
// the batch, however long CommitDelay is.
func TestLingerEndsWhenBatchFills(t *testing.T) {
	l := &Log{
		opts: Options{CommitDelay: time.Hour},
		reqs: make(chan *appendReq, 1024),
		full: make(chan struct{}, 1),
	}
	got := make(chan []*appendReq, 1)
	go func() {
		got <- l.linger([]*appendReq{{}}, time.NewTimer(time.Hour))
	}()
	for l.lingerWant.Load() == 0 { // until the writer waits
		time.Sleep(time.Millisecond)
	}
	for range lingerBatch - 1 {
		if err := l.submit(context.Background(), &appendReq{}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case batch := <-got:
		if len(batch) != lingerBatch {
			t.Fatalf("batch of %d requests after the wait, want %d", len(batch), lingerBatch)
		}
	case <-time.After(time.Minute): // a hang guard, far beyond any schedule
		t.Fatal("the commit kept waiting with a full batch queued")
	}
}

// Event IDs the log generates are distinct UUIDs, across the batches the
// writer reads random bytes in.
func TestGeneratedEventIDsDistinct(t *testing.T) {
	l, _ := openTest(t, Options{})
	ctx := context.Background()
	const n = 300
	for range n {
		if err := l.Enqueue(ctx, Record{Action: ActionRequest}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	err := l.Iterate(ctx, 1, func(r Record) error {
		if len(r.EventID) != uuidLen || seen[r.EventID] {
			t.Errorf("record %d: event id %q is malformed or repeated", r.Seq, r.EventID)
		}
		seen[r.EventID] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("%d event ids, want %d", len(seen), n)
	}
}

// storedLen predicts the stored size exactly, which the journal relies on
// to decide where a batch goes.
func TestStoredLen(t *testing.T) {
	long := strings.Repeat("é", MaxFieldLen/2)
	for _, r := range []Record{
		vectorRecord(),
		{Action: "x"},
		{Action: "x", Detail: long, Path: strings.Repeat("/", 200), EventID: "e"},
	} {
		want := len(EncodeStored(&r))
		if r.EventID == "" {
			var id [uuidLen]byte
			_, v := r.appendStoredID(nil, id[:])
			want = len(v)
		}
		if got := r.storedLen(); got != want {
			t.Errorf("storedLen %d, stored value %d bytes", got, want)
		}
	}
}
