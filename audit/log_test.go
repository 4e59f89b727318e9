package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/testclock"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
)

func TestAppendFillsAndChains(t *testing.T) {
	clk := testclock.Start()
	l, _ := openTest(t, Options{Now: clk.Now})
	ctx := context.Background()
	var prev = GenesisHash
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for i := uint64(1); i <= 5; i++ {
		seq, err := l.Append(ctx, Record{AgentID: "a1", Action: ActionRequest})
		if err != nil {
			t.Fatal(err)
		}
		if seq != i {
			t.Fatalf("seq = %d, want %d", seq, i)
		}
		r, ok, err := l.Get(seq)
		if err != nil || !ok {
			t.Fatalf("get %d: %v %v", seq, ok, err)
		}
		if r.PrevHash != prev {
			t.Fatalf("record %d prev_hash %s, want %s", seq, r.PrevHash, prev)
		}
		if r.TimestampMS != clk.Now().UnixMilli() {
			t.Fatalf("timestamp %d, want %d", r.TimestampMS, clk.Now().UnixMilli())
		}
		if !uuid.MatchString(r.EventID) {
			t.Fatalf("event id %q is not a v4 UUID", r.EventID)
		}
		prev = r.Hash
		clk.Advance(time.Second)
	}
	if seq, h := l.Head(); seq != 5 || h != prev {
		t.Fatalf("head = %d %s, want 5 %s", seq, h, prev)
	}
	// Given values are kept.
	seq, err := l.Append(ctx, Record{EventID: "evt-1", TimestampMS: 42, Action: ActionRequest})
	if err != nil {
		t.Fatal(err)
	}
	r, _, _ := l.Get(seq)
	if r.EventID != "evt-1" || r.TimestampMS != 42 {
		t.Fatalf("given event id / timestamp not kept: %+v", r)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := Record{
		Seq: 9, EventID: "e", TimestampMS: -5, AgentID: "agent-ü", PassportJTI: "jti",
		Action: ActionDetectorFired, CredentialID: "stripe", CredentialFingerprint: "sha256:ab",
		Host: "api.stripe.com", Method: "POST", Path: "/v1/transfers", Status: 403,
		Reason: "detector_blocked", Detector: "credential_burst", Severity: "critical",
		Detail: "12x baseline", BytesIn: 1 << 40, BytesOut: 7, DurationMS: 3, PrevHash: GenesisHash,
	}
	v := EncodeStored(&r)
	got, err := DecodeStored(v)
	if err != nil {
		t.Fatal(err)
	}
	if got != r {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
	}
}

func TestInvalidRecord(t *testing.T) {
	l, _ := openTest(t, Options{})
	for name, r := range map[string]Record{
		"no action": {AgentID: "a"},
		"not utf8":  {Action: "x", Host: "\xff"},
		"too long":  {Action: "x", Detail: strings.Repeat("d", MaxFieldLen+1)},
	} {
		if _, err := l.Append(context.Background(), r); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: err = %v, want ErrInvalidRecord", name, err)
		}
	}
	if seq, _ := l.Head(); seq != 0 {
		t.Fatalf("invalid records were stored: head %d", seq)
	}
}

func TestConcurrentAppendersKeepOneChain(t *testing.T) {
	signer, verifiers := newKey(t)
	l, _ := openTest(t, Options{Signer: signer, CheckpointEvery: 100})
	const workers, each = 64, 50
	seen := make([]bool, workers*each+1)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				seq, err := l.Append(context.Background(), Record{AgentID: "a", Action: ActionRequest})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seq == 0 || seq >= uint64(len(seen)) || seen[seq] {
					t.Errorf("seq %d out of range or returned twice", seq)
				} else {
					seen[seq] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	rep, err := l.Verify(context.Background(), verifiers)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != workers*each || rep.Checkpoints != workers*each/100 {
		t.Fatalf("report %+v", rep)
	}
}

func TestReopenContinuesChain(t *testing.T) {
	signer, verifiers := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.db")
	for round := 0; round < 3; round++ {
		l, err := Open(path, Options{Signer: signer, CheckpointEvery: 4})
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, l, 5, "a")
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := VerifyFile(context.Background(), path, verifiers)
	if err != nil {
		t.Fatal(err)
	}
	// Checkpoints 4 records after the last one, across reopenings, and
	// one at each close: 4, 5, 9, 10, 14, 15.
	if rep.Records != 15 || rep.LastSeq != 15 || rep.Checkpoints != 6 || rep.LastCheckpoint.Size != 15 || rep.Uncovered != 0 {
		t.Fatalf("report %+v", rep)
	}
}

func TestCheckpointInterval(t *testing.T) {
	clk := testclock.Start()
	signer, verifiers := newKey(t)
	l, _ := openTest(t, Options{Now: clk.Now, Signer: signer, CheckpointEvery: -1, CheckpointInterval: time.Minute})
	appendN(t, l, 1, "a") // first record: no checkpoint yet, so one is due
	clk.Advance(30 * time.Second)
	appendN(t, l, 1, "a")
	ck, ok, err := l.LastCheckpoint()
	if err != nil || !ok || ck.Size != 1 {
		t.Fatalf("after 30s: checkpoint %+v ok=%v err=%v, want size 1", ck, ok, err)
	}
	clk.Advance(31 * time.Second)
	appendN(t, l, 1, "a")
	if ck, _, _ = l.LastCheckpoint(); ck.Size != 3 || !ck.Time.Equal(clk.Now()) {
		t.Fatalf("after 61s: checkpoint %+v, want size 3 at %v", ck, clk.Now())
	}
	// The timer covers a quiet log's last records.
	appendN(t, l, 2, "a")
	clk.Advance(time.Minute)
	if err := l.timerCheckpoint(); err != nil {
		t.Fatal(err)
	}
	if ck, _, _ = l.LastCheckpoint(); ck.Size != 5 {
		t.Fatalf("timer checkpoint size %d, want 5", ck.Size)
	}
	rep, err := l.Verify(context.Background(), verifiers)
	if err != nil || rep.Checkpoints != 3 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

func TestNoSignerNoCheckpoints(t *testing.T) {
	l, _ := openTest(t, Options{CheckpointEvery: 1, CheckpointInterval: time.Nanosecond})
	appendN(t, l, 3, "a")
	if _, ok, _ := l.LastCheckpoint(); ok {
		t.Fatal("checkpoint written without a signer")
	}
	if err := l.Checkpoint(context.Background()); err == nil {
		t.Fatal("Checkpoint without a signer succeeded")
	}
}

func TestOpenTimeoutAndReadOnly(t *testing.T) {
	l, path := openTest(t, Options{})
	appendN(t, l, 2, "a")
	_, err := Open(path, Options{OpenTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer: err = %v, want ErrLocked", err)
	}
	l.Close()

	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.Append(context.Background(), Record{Action: "x"}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("append read-only: %v", err)
	}
	if _, err := ro.Prune(context.Background(), time.Now()); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("prune read-only: %v", err)
	}
	if seq, _ := ro.Head(); seq != 2 {
		t.Fatalf("read-only head %d", seq)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "nope.db"), Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read-only open of a missing file: %v", err)
	}
}

func TestNotAuditLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("secrets")); return err })
	db.Close()
	if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, ErrNotAuditLog) {
		t.Fatalf("err = %v, want ErrNotAuditLog", err)
	}
}

func TestCloseIdempotentAndNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	l, err := Open(filepath.Join(t.TempDir(), "a.db"), Options{Signer: nil, CheckpointInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 3, "a")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append(context.Background(), Record{Action: "x"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if err := l.Iterate(context.Background(), 0, func(Record) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("iterate after close: %v", err)
	}
	// The writer closes done as its last step, so it may still be on its
	// way out when Close returns: wait for it to be gone. A goroutine
	// that stays is a leak; the deadline only bounds the wait.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("goroutines: %d before Open, %d after Close", before, after)
	}
}

func TestAppendHonoursContextBeforeHandoff(t *testing.T) {
	l, _ := openTest(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// With a cancelled context the send may still win the select when the
	// queue has room; either way the result must be consistent.
	seq, err := l.Append(ctx, Record{Action: "x"})
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		if h, _ := l.Head(); h != 0 {
			t.Fatalf("cancelled append stored a record")
		}
		return
	}
	if _, ok, _ := l.Get(seq); !ok {
		t.Fatalf("append reported seq %d but it is not stored", seq)
	}
}

func TestScanFilterLastExport(t *testing.T) {
	clk := testclock.Start()
	l, _ := openTest(t, Options{Now: clk.Now})
	ctx := context.Background()
	start := clk.Now()
	for i := 0; i < 10; i++ {
		agent := "a"
		if i%2 == 1 {
			agent = "b"
		}
		action := ActionRequest
		if i%5 == 4 {
			action = ActionRequestDenied
		}
		if _, err := l.Append(ctx, Record{AgentID: agent, Action: action, Host: "h<&>"}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute)
	}
	var seqs []uint64
	next, err := l.Scan(ctx, 3, Filter{AgentID: "b"}, func(r Record) error { seqs = append(seqs, r.Seq); return nil })
	if err != nil || next != 11 || !equal(seqs, []uint64{4, 6, 8, 10}) {
		t.Fatalf("scan b from 3: %v next=%d err=%v", seqs, next, err)
	}
	seqs = nil
	l.Scan(ctx, 0, Filter{Action: ActionRequestDenied}, func(r Record) error { seqs = append(seqs, r.Seq); return nil })
	if !equal(seqs, []uint64{5, 10}) {
		t.Fatalf("denied: %v", seqs)
	}
	seqs = nil
	l.Iterate(ctx, 0, func(r Record) error {
		seqs = append(seqs, r.Seq)
		if r.Seq == 3 {
			return ErrStop
		}
		return nil
	})
	if !equal(seqs, []uint64{1, 2, 3}) {
		t.Fatalf("stop: %v", seqs)
	}
	last, err := l.Last(ctx, 2, Filter{AgentID: "a"})
	if err != nil || len(last) != 2 || last[0].Seq != 7 || last[1].Seq != 9 {
		t.Fatalf("last 2 of a: %+v %v", last, err)
	}

	var buf bytes.Buffer
	n, err := l.Export(ctx, &buf, start.Add(7*time.Minute))
	if err != nil || n != 3 {
		t.Fatalf("export: n=%d err=%v", n, err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"host":"h<&>"`) {
		t.Fatalf("export lines: %q", lines)
	}
	var r Record
	if err := json.Unmarshal([]byte(lines[2]), &r); err != nil {
		t.Fatal(err)
	}
	stored, _, _ := l.Get(10)
	if r != stored {
		t.Fatalf("exported record differs from stored:\n%+v\n%+v", r, stored)
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFollow(t *testing.T) {
	l, _ := openTest(t, Options{})
	appendN(t, l, 2, "a")
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan uint64, 16)
	errc := make(chan error, 1)
	go func() {
		errc <- l.Follow(ctx, 0, Filter{AgentID: "a"}, time.Millisecond, func(r Record) error {
			got <- r.Seq
			return nil
		})
	}()
	for want := uint64(1); want <= 2; want++ {
		if s := <-got; s != want {
			t.Fatalf("got %d want %d", s, want)
		}
	}
	appendN(t, l, 1, "b")
	appendN(t, l, 1, "a")
	if s := <-got; s != 4 {
		t.Fatalf("followed %d, want 4 (3 is agent b)", s)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("follow returned %v", err)
	}
}

func TestSnapshotVerifies(t *testing.T) {
	signer, verifiers := newKey(t)
	l, _ := openTest(t, Options{Signer: signer, CheckpointEvery: 3})
	appendN(t, l, 7, "a")
	var buf bytes.Buffer
	if err := l.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyReader(context.Background(), &buf, verifiers)
	if err != nil {
		t.Fatal(err)
	}
	seq, head := l.Head()
	if rep.Records != 7 || rep.LastSeq != seq || rep.Head != head || rep.LastCheckpoint.Size != 6 {
		t.Fatalf("report %+v", rep)
	}
}

// brokenSigner signs until told to fail.
type brokenSigner struct {
	note.Signer
	fail *atomic.Bool
}

func (s brokenSigner) Sign(msg []byte) ([]byte, error) {
	if s.fail.Load() {
		return nil, errors.New("signer gone")
	}
	return s.Signer.Sign(msg)
}

// A closing checkpoint that cannot be signed is Close's error; the
// records are in the file all the same.
func TestCloseReportsCheckpointError(t *testing.T) {
	signer, _ := newKey(t)
	var fail atomic.Bool
	l, path := openTest(t, Options{Signer: brokenSigner{signer, &fail}, CheckpointEvery: 5})
	appendN(t, l, 7, "a")
	// Into the file, with the checkpoint at 5, while the signer works.
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	if err := l.Close(); err == nil || !strings.Contains(err.Error(), "signer gone") {
		t.Fatalf("Close = %v, want the signing error", err)
	}
	rep, err := VerifyFile(context.Background(), path, nil)
	if err != nil || rep.Records != 7 || rep.Uncovered != 2 {
		t.Fatalf("after a failed closing checkpoint: %+v, %v; want 7 records, 2 uncovered", rep, err)
	}
}
