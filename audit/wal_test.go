package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withJournal sets the journal's tunables for one test.
func withJournal(t *testing.T, size int64, every time.Duration, records int) {
	t.Helper()
	s, e, r := walSize, walApplyEvery, walApplyRecords
	walSize, walApplyEvery, walApplyRecords = size, every, records
	t.Cleanup(func() { walSize, walApplyEvery, walApplyRecords = s, e, r })
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// crashCopy leaves at dir/audit.db the state a crash of l would leave
// now: its file and its journal as they are on disk, records acknowledged
// but not yet moved into the file included.
func crashCopy(t *testing.T, l *Log, dir string) string {
	t.Helper()
	to := filepath.Join(dir, "audit.db")
	copyFile(t, l.Path(), to)
	copyFile(t, walPath(l.Path()), walPath(to))
	return to
}

// Acknowledged records that were only in the journal when the writer died
// are in the file after the next writable open, chained, with their
// checkpoints. A read-only open changes nothing: it reads the file as it
// is and counts what the journal holds.
func TestJournalRecoversAcknowledgedRecords(t *testing.T) {
	withJournal(t, 1<<20, time.Hour, 1<<20) // nothing moves on its own
	signer, verifiers := newKey(t)
	l, _ := openTest(t, Options{Signer: signer, CheckpointEvery: 10})
	appendN(t, l, 25, "a")
	if n := l.unapplied.Load(); n != 25 {
		t.Fatalf("%d records pending in the journal, want 25", n)
	}
	path := crashCopy(t, l, t.TempDir())
	count := func(l *Log) int {
		var n int
		if err := l.Iterate(context.Background(), 1, func(Record) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}

	before, _ := os.ReadFile(walPath(path))
	rl, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if n, p := count(rl), rl.JournalPending(); n != 0 || p != 25 {
		t.Errorf("read-only: %d records in the file, %d pending in the journal; want 0 and 25", n, p)
	}
	rl.Close()
	if after, _ := os.ReadFile(walPath(path)); !bytes.Equal(before, after) {
		t.Error("a read-only open changed the journal")
	}

	wl, err := Open(path, Options{Signer: signer, CheckpointEvery: 10})
	if err != nil {
		t.Fatal(err)
	}
	if n, seq := count(wl), func() uint64 { s, _ := wl.Head(); return s }(); n != 25 || seq != 25 {
		t.Errorf("after recovery: %d records, head %d; want 25", n, seq)
	}
	// The chain goes on from the recovered records.
	if seq, err := wl.Append(context.Background(), Record{AgentID: "a", Action: ActionRequest}); err != nil || seq != 26 {
		t.Errorf("append after recovery: seq %d, %v", seq, err)
	}
	if err := wl.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyFile(context.Background(), path, verifiers)
	if err != nil {
		t.Fatal(err)
	}
	if rep.LastSeq != 26 || rep.Checkpoints != 3 || rep.LastCheckpoint.Size != 26 {
		t.Errorf("report %+v, want 26 records and checkpoints at 10, 20 and 26 (the close)", rep)
	}
	if walDirty(path) {
		t.Error("the journal is not marked empty after a clean close")
	}
}

// A journal whose records do not continue the file (the file restored
// from a backup) stops the writable open instead of losing them.
func TestJournalMismatchRefusesToOpen(t *testing.T) {
	withJournal(t, 1<<20, time.Hour, 1<<20)
	dir := t.TempDir()
	l, _ := openTest(t, Options{})
	appendN(t, l, 3, "a")
	if err := l.Sync(context.Background()); err != nil { // records 1-3 in the file
		t.Fatal(err)
	}
	backup := filepath.Join(dir, "backup.db")
	copyFile(t, l.Path(), backup)
	appendN(t, l, 5, "a") // 4-8 in the journal only
	path := crashCopy(t, l, dir)
	copyFile(t, backup, path) // the file goes back to 1-3; its journal starts at 4
	walData, _ := os.ReadFile(walPath(path))
	// Make the journal start past the file: drop the frame of record 4.
	n := int(binary.LittleEndian.Uint32(walData))
	if err := os.WriteFile(walPath(path), walData[frameHeader+n:], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{}); !errors.Is(err, ErrJournalMismatch) {
		t.Fatalf("open: %v, want ErrJournalMismatch", err)
	}
	if rl, err := Open(path, Options{ReadOnly: true}); err != nil || rl.JournalPending() != -1 {
		t.Errorf("read-only open: %v, pending %d; want the file and -1", err, rl.JournalPending())
	} else {
		rl.Close()
	}
}

// A torn last frame, as a crash in the middle of a journal write leaves
// it, ends the journal there: the records before it are recovered, and
// the torn record (never acknowledged) is not.
func TestJournalTornWrite(t *testing.T) {
	withJournal(t, 1<<20, time.Hour, 1<<20)
	l, _ := openTest(t, Options{})
	appendN(t, l, 3, "a")
	path := crashCopy(t, l, t.TempDir())
	w, err := os.OpenFile(walPath(path), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The third frame's record loses its last bytes.
	hdr := make([]byte, frameHeader)
	off := int64(0)
	for i := 0; i < 2; i++ {
		w.ReadAt(hdr, off)
		off += frameHeader + int64(binary.LittleEndian.Uint32(hdr))
	}
	w.ReadAt(hdr, off)
	n := int64(binary.LittleEndian.Uint32(hdr))
	w.WriteAt(make([]byte, 10), off+frameHeader+n-10)
	w.Close()

	rl, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	if seq, _ := rl.Head(); seq != 2 {
		t.Errorf("head %d after recovering a journal with a torn third frame, want 2", seq)
	}
}

// A journal smaller than the traffic restarts whenever it fills, and a
// batch too big for it goes straight to the file; nothing is lost either
// way.
func TestJournalWrapsAndOverflows(t *testing.T) {
	withJournal(t, 16<<10, time.Hour, 1<<20)
	signer, verifiers := newKey(t)
	l, path := openTest(t, Options{Signer: signer, CheckpointEvery: 100})
	appendN(t, l, 300, "a") // about 40 KiB of frames through a 16 KiB journal
	big := Record{AgentID: "a", Action: ActionRequest, Detail: strings.Repeat("x", 8000), Path: strings.Repeat("/p", 1000)}
	if _, err := l.Append(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 5, "a")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyFile(context.Background(), path, verifiers)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 306 || rep.Checkpoints != 4 {
		t.Errorf("report %+v, want 306 records and 4 checkpoints (100, 200, 300, the close)", rep)
	}
}

// Records of an earlier generation past the current one's last frame, or
// frames that do not continue the chain, are not recovered.
func TestScanWALStopsWhereTheChainDoes(t *testing.T) {
	frame := func(gen uint32, r *Record) []byte {
		v := EncodeStored(r)
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(v)))
		b = binary.LittleEndian.AppendUint32(b, gen)
		return append(b, v...)
	}
	r1 := &Record{Seq: 1, PrevHash: GenesisHash, AgentID: "a", Action: ActionRequest, TimestampMS: 1}
	EncodeStored(r1)
	r2 := &Record{Seq: 2, PrevHash: r1.Hash, AgentID: "a", Action: ActionRequest, TimestampMS: 2}
	EncodeStored(r2)
	r3 := &Record{Seq: 3, PrevHash: r2.Hash, AgentID: "a", Action: ActionRequest, TimestampMS: 3}
	EncodeStored(r3)
	fork := &Record{Seq: 3, PrevHash: r1.Hash, AgentID: "b", Action: ActionRequest, TimestampMS: 3}
	EncodeStored(fork)
	genesis := GenesisHash

	cases := []struct {
		name string
		data []byte
		head uint64
		h    Hash
		want int
	}{
		{"all", cat(frame(7, r1), frame(7, r2), frame(7, r3)), 0, genesis, 3},
		{"applied ones skipped", cat(frame(7, r1), frame(7, r2), frame(7, r3)), 2, r2.Hash, 1},
		{"older generation after", cat(frame(7, r1), frame(7, r2), frame(6, r3)), 0, genesis, 2},
		{"a fork", cat(frame(7, r1), frame(7, r2), frame(7, fork)), 0, genesis, 2},
		{"a gap", cat(frame(7, r1), frame(7, r3)), 0, genesis, 1},
		{"empty header", cat(make([]byte, 8), frame(7, r1)), 0, genesis, 0},
		{"zeros", make([]byte, 4096), 0, genesis, 0},
	}
	for _, c := range cases {
		if got, _ := scanWAL(c.data, c.head, c.h); len(got) != c.want {
			t.Errorf("%s: %d records recovered, want %d", c.name, len(got), c.want)
		}
	}
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func FuzzScanWAL(f *testing.F) {
	r1 := &Record{Seq: 1, PrevHash: GenesisHash, AgentID: "a", Action: ActionRequest, TimestampMS: 1}
	v := EncodeStored(r1)
	seed := binary.LittleEndian.AppendUint32(nil, uint32(len(v)))
	seed = binary.LittleEndian.AppendUint32(seed, 9)
	f.Add(append(seed, v...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		head, prev := uint64(0), GenesisHash
		recs, _ := scanWAL(data, 0, prev)
		for _, r := range recs {
			got, err := DecodeStored(r.v)
			if err != nil || got.Seq != head+1 || got.PrevHash != prev || got.Hash != r.hash {
				t.Fatalf("recovered a record that does not continue the chain: %+v %v", got, err)
			}
			head, prev = got.Seq, got.Hash
		}
	})
}
