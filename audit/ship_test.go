package audit

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func TestLogIDSurvivesReopen(t *testing.T) {
	l, path := openTest(t, Options{})
	id := l.ID()
	if len(id) != 32 {
		t.Fatalf("ID() = %q, want 32 hex digits", id)
	}
	l.Close()
	l2, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if l2.ID() != id {
		t.Fatalf("reopened ID = %q, want %q", l2.ID(), id)
	}
	other, _ := openTest(t, Options{})
	if other.ID() == id {
		t.Fatal("two logs share an identity")
	}
}

func TestScanStoredHandsOverTheStoredBytes(t *testing.T) {
	signer, _ := newKey(t)
	l, _ := openTest(t, Options{Signer: signer, CheckpointEvery: 4})
	appendN(t, l, 10, "a")
	var seqs []uint64
	next, err := l.ScanStored(context.Background(), 3, func(seq uint64, v []byte) error {
		r, err := DecodeStored(v)
		if err != nil {
			t.Fatal(err)
		}
		want, ok, err := l.Get(seq)
		if err != nil || !ok || r.Hash != want.Hash || !bytes.Equal(EncodeStored(&want), v) {
			t.Fatalf("seq %d: stored bytes differ from Get", seq)
		}
		seqs = append(seqs, seq)
		return nil
	})
	if err != nil || next != 11 || len(seqs) != 8 || seqs[0] != 3 {
		t.Fatalf("ScanStored from 3: next %d, seqs %v, err %v", next, seqs, err)
	}
	var sizes []uint64
	if err := l.ScanCheckpoints(context.Background(), 5, 9, func(size uint64, n []byte) error {
		ck, err := ParseCheckpoint(n, nil)
		if err != nil || ck.Size != size {
			t.Fatalf("checkpoint %d: %v %+v", size, err, ck)
		}
		sizes = append(sizes, size)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 1 || sizes[0] != 8 {
		t.Fatalf("checkpoints in [5,9] = %v, want [8]", sizes)
	}
}

func TestPruneKeepsWhatWasNotShipped(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l, _ := openTest(t, Options{Now: func() time.Time { return now }})
	appendN(t, l, 10, "a")
	if _, ok, _ := l.Shipped(); ok {
		t.Fatal("a new log claims to ship")
	}
	if err := l.MarkShipped(6); err != nil {
		t.Fatal(err)
	}
	if err := l.MarkShipped(4); err != nil { // never moves back
		t.Fatal(err)
	}
	if seq, ok, _ := l.Shipped(); !ok || seq != 6 {
		t.Fatalf("Shipped = %d %v, want 6", seq, ok)
	}
	n, err := l.Prune(context.Background(), now.Add(time.Hour))
	if err != nil || n != 6 {
		t.Fatalf("Prune removed %d (%v), want the 6 shipped", n, err)
	}
	if _, ok, _ := l.Get(7); !ok {
		t.Fatal("record 7, never shipped, was pruned")
	}
	anchor, ok, err := l.Anchor()
	if err != nil || !ok {
		t.Fatal("no anchor after a prune", err)
	}
	if a, err := ParseAnchor(anchor, nil); err != nil || a.Seq != 6 {
		t.Fatalf("anchor %+v %v, want seq 6", a, err)
	}
}
