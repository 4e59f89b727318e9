package audit

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/testclock"
	bolt "go.etcd.io/bbolt"
)

// buildTimedLog appends n records one minute apart starting at the clock's
// time, with checkpoints every 5.
func buildTimedLog(t *testing.T, clk *testclock.Clock, n int, opts Options) (*Log, string, time.Time) {
	t.Helper()
	opts.Now = clk.Now
	opts.CheckpointEvery = 5
	l, path := openTest(t, opts)
	start := clk.Now()
	for i := 0; i < n; i++ {
		appendN(t, l, 1, "a")
		clk.Advance(time.Minute)
	}
	return l, path, start
}

func TestPruneLeavesVerifiableAnchor(t *testing.T) {
	clk := testclock.Start()
	signer, verifiers := newKey(t)
	l, _, start := buildTimedLog(t, clk, 20, Options{Signer: signer})
	ctx := context.Background()
	_, head := l.Head()

	removed, err := l.Prune(ctx, start.Add(10*time.Minute))
	if err != nil || removed != 10 {
		t.Fatalf("prune: removed %d err %v, want 10", removed, err)
	}
	if _, ok, _ := l.Get(10); ok {
		t.Fatal("record 10 survived the prune")
	}
	rep, err := l.Verify(ctx, verifiers)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Anchor == nil || rep.Anchor.Seq != 10 || !rep.Anchor.Signed || rep.FirstSeq != 11 || rep.Records != 10 || rep.Head != head {
		t.Fatalf("report after prune %+v anchor %+v", rep, rep.Anchor)
	}
	// Checkpoint 5 is gone; 10 (at the anchor) and later remain.
	if rep.Checkpoints != 3 {
		t.Fatalf("checkpoints after prune: %d, want 3 (10, 15, 20)", rep.Checkpoints)
	}

	// Pruning again with the same cut removes nothing.
	if n, err := l.Prune(ctx, start.Add(10*time.Minute)); err != nil || n != 0 {
		t.Fatalf("second prune: %d %v", n, err)
	}

	// Prune everything, reopen, append: the chain continues from the anchor.
	if n, err := l.Prune(ctx, clk.Now().Add(time.Hour)); err != nil || n != 10 {
		t.Fatalf("prune all: %d %v", n, err)
	}
	path := l.Path()
	l.Close()
	l2, err := Open(path, Options{Signer: signer, CheckpointEvery: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if seq, h := l2.Head(); seq != 20 || h != head {
		t.Fatalf("head after prune-all and reopen: %d %s", seq, h)
	}
	appendN(t, l2, 3, "a")
	rep, err = l2.Verify(ctx, verifiers)
	if err != nil {
		t.Fatal(err)
	}
	if rep.FirstSeq != 21 || rep.LastSeq != 23 || rep.Anchor.Seq != 20 {
		t.Fatalf("after prune-all and appends: %+v", rep)
	}
}

func TestPruneStopsAtFirstNewerRecord(t *testing.T) {
	clk := testclock.Start()
	l, _, start := buildTimedLog(t, clk, 6, Options{})
	// Record 7 is stamped in the past; it stays because record 6 is newer.
	if _, err := l.Append(context.Background(), Record{Action: "x", TimestampMS: start.UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	n, err := l.Prune(context.Background(), start.Add(3*time.Minute))
	if err != nil || n != 3 {
		t.Fatalf("prune: %d %v, want 3", n, err)
	}
	rep, err := l.Verify(context.Background(), nil)
	if err != nil || rep.Records != 4 || rep.Anchor.Signed {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

func TestPruneRefusesTamperedRecord(t *testing.T) {
	clk := testclock.Start()
	l, path, start := buildTimedLog(t, clk, 10, Options{})
	l.Close()
	editBolt(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		v := append([]byte(nil), b.Get(seqKey(3))...)
		v[60] ^= 1
		return b.Put(seqKey(3), v)
	})
	l2, err := Open(path, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	n, err := l2.Prune(context.Background(), start.Add(5*time.Minute))
	mustVerifyError(t, err, KindModified, 3)
	if n != 0 {
		t.Fatalf("removed %d records before the tampered one was seen; the transaction must roll back", n)
	}
	if _, ok, _ := l2.Get(1); !ok {
		t.Fatal("record 1 was removed by a failed prune")
	}
}

func TestAnchorMustBeSigned(t *testing.T) {
	clk := testclock.Start()
	_, verifiers := newKey(t)
	// Pruned without a signer: the anchor is unsigned, which a verifier
	// that trusts a key refuses.
	l, _, start := buildTimedLog(t, clk, 8, Options{})
	if _, err := l.Prune(context.Background(), start.Add(4*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Verify(context.Background(), nil); err != nil {
		t.Fatalf("without verifiers: %v", err)
	}
	_, err := l.Verify(context.Background(), verifiers)
	mustVerifyError(t, err, KindBadAnchorSignature, 0)
}

func TestForgedAnchorDetected(t *testing.T) {
	clk := testclock.Start()
	signer, verifiers := newKey(t)
	l, path, start := buildTimedLog(t, clk, 12, Options{Signer: signer})
	if _, err := l.Prune(context.Background(), start.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// An attacker removes more records and writes an anchor they cannot sign.
	other, _ := newKey(t)
	editBolt(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		r, err := DecodeStored(b.Get(seqKey(6)))
		if err != nil {
			return err
		}
		for s := uint64(3); s <= 6; s++ {
			if err := b.Delete(seqKey(s)); err != nil {
				return err
			}
		}
		msg, err := signStatement(statementText(AnchorOrigin, 6, r.Hash, clk.Now()), other)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(metaAnchor, msg)
	})
	if _, err := VerifyFile(context.Background(), filepath.Clean(path), nil); err != nil {
		t.Fatalf("without verifiers the forged anchor chains: %v", err)
	}
	_, err := VerifyFile(context.Background(), path, verifiers)
	mustVerifyError(t, err, KindBadAnchorSignature, 0)
}
