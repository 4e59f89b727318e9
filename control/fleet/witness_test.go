package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control/fleetlog"
)

var _ = fleetlog.ParseCheckpoint

func ship(t *testing.T, f *fixture, from Shipper, b Batch) BatchResponse {
	t.Helper()
	resp, err := f.w.Ship(context.Background(), from, b)
	if err != nil {
		t.Fatalf("Ship: %v", err)
	}
	return resp
}

func mustFinding(t *testing.T, err error, kind string, seq uint64) Finding {
	t.Helper()
	var ie *IntegrityError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v, want an integrity finding %s at %d", err, kind, seq)
	}
	if ie.Finding.Kind != kind || ie.Finding.Seq != seq {
		t.Fatalf("finding %s at %d (%s), want %s at %d", ie.Finding.Kind, ie.Finding.Seq, ie.Finding.Detail, kind, seq)
	}
	return ie.Finding
}

func TestShipAcceptsInOrderOnceAndProves(t *testing.T) {
	f := newFixture(t)
	sc := newSidecarLog(t, 10)
	sc.append(25, "alice")
	r1 := ship(t, f, alice, sc.batch(1, 12))
	if r1.Next != 13 || len(r1.Cosigned) != 1 {
		t.Fatalf("first batch: next %d, %d cosigned, want 13 and the checkpoint of 10", r1.Next, len(r1.Cosigned))
	}
	r2 := ship(t, f, alice, sc.batch(13, 25))
	if r2.Next != 26 || len(r2.Cosigned) != 1 {
		t.Fatalf("second batch: next %d, %d cosigned, want 26 and the checkpoint of 20", r2.Next, len(r2.Cosigned))
	}
	// The stream's opening, records 1-12, the checkpoint of 10 cosigned,
	// records 13-25, the checkpoint of 20 cosigned.
	kinds := func() string {
		t.Helper()
		leaves, err := f.tree.Entries(context.Background(), 0, f.size())
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, raw := range leaves {
			l, err := ParseLeaf(raw)
			if err != nil {
				t.Fatal(err)
			}
			switch l.Kind {
			case LeafRecords:
				fmt.Fprintf(&b, "r%d-%d ", l.Seq, l.Seq+uint64(len(l.Records))-1)
			default:
				fmt.Fprintf(&b, "%s%d ", l.Kind, l.Seq)
			}
		}
		return b.String()
	}
	merged := regexp.MustCompile(`r(\d+)-\d+ r\d+-(\d+) `)
	collapse := func(s string) string {
		for {
			n := merged.ReplaceAllString(s, "r$1-$2 ")
			if n == s {
				return s
			}
			s = n
		}
	}
	want := "stream1 r1-12 checkpoint10 r13-25 checkpoint20 "
	got := kinds()
	if collapse(got) != want {
		t.Fatalf("fleet log leaves: %s, want %s", got, want)
	}
	size := f.size()
	// Shipping everything again (a restarted sidecar) adds nothing.
	r3 := ship(t, f, alice, sc.batch(1, 25))
	if r3.Next != 26 || len(r3.Cosigned) != 0 || f.size() != size {
		t.Fatalf("re-shipped: next %d, %d cosigned, size %d; want 26, 0, %d", r3.Next, len(r3.Cosigned), f.size(), size)
	}
	// The cosigned checkpoint carries both signatures.
	ck, err := audit.ParseCheckpoint(r2.Cosigned[0], nil)
	if err != nil || ck.Size != 20 {
		t.Fatalf("cosigned checkpoint: %+v %v", ck, err)
	}
	fv, err := note.NewVerifier(f.key)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := note.NewVerifier(sc.key)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(r2.Cosigned[0], note.VerifierList(fv, sv))
	if err != nil || len(n.Sigs) != 2 {
		t.Fatalf("the cosigned checkpoint does not carry both signatures: %v %+v", err, n)
	}

	var items []Item
	if err := f.w.Export(context.Background(), Query{Agent: "alice"}, func(it Item) error {
		items = append(items, it)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(items) != 25 {
		t.Fatalf("export: %d records, want 25", len(items))
	}
	for i, it := range items {
		if it.Record.Seq != uint64(i+1) || it.Log != sc.log.ID() {
			t.Fatalf("export item %d: seq %d log %s", i, it.Record.Seq, it.Log)
		}
		want, _, _ := sc.log.Get(uint64(i + 1))
		if it.Record.Hash != want.Hash {
			t.Fatalf("export item %d differs from the sidecar's record", i)
		}
	}

	// Every record's event id proves against a checkpoint.
	ctx := context.Background()
	idx, pos, err := f.w.Locate(items[7].Record.EventID)
	if err != nil || idx != items[7].Index || pos != 7 {
		t.Fatalf("Locate: %d/%d %v, want %d/7", idx, pos, err, items[7].Index)
	}
	ckpt, err := f.tree.WaitCheckpoint(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := fleetlog.ParseCheckpoint(f.key, ckpt)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := f.tree.InclusionProof(ctx, idx, c.Size)
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := f.tree.Entries(ctx, idx, 1)
	if err != nil {
		t.Fatal(err)
	}
	p := Proof{Index: idx, Size: c.Size, Leaf: leaves[0], Hashes: proof, Checkpoint: ckpt, Item: items[7]}
	rec, err := VerifyProof(f.key, p)
	if err != nil || rec.Seq != 8 {
		t.Fatalf("VerifyProof: %v (seq %d)", err, rec.Seq)
	}
	// The proof shows what it proves: a record of another leaf, another
	// position, another key, a changed leaf all fail.
	bad := p
	bad.Item = items[20]
	if _, err := VerifyProof(f.key, bad); err == nil {
		t.Fatal("a proof showing a record of another leaf verified")
	}
	bad = p
	bad.Item.Position = 3
	if _, err := VerifyProof(f.key, bad); err == nil {
		t.Fatal("a proof pointing at another position verified")
	}
	bad = p
	bad.Leaf = append([]byte(nil), p.Leaf...)
	bad.Leaf[len(bad.Leaf)/2] ^= 1
	if _, err := VerifyProof(f.key, bad); err == nil {
		t.Fatal("a changed leaf verified")
	}
	if _, err := VerifyProof(newFixture(t).key, p); err == nil {
		t.Fatal("a proof verified with another fleet key")
	}
}

func TestIndexSurvivesReopenAndCatchesUp(t *testing.T) {
	f := newFixture(t)
	sc := newSidecarLog(t, 0)
	sc.append(10, "alice")
	ship(t, f, alice, sc.batch(1, 10))
	// A crash after the append and before the index commit: the leaves
	// are in the fleet log, the index does not know them.
	sc.append(5, "alice")
	b := sc.batch(11, 15)
	l := Leaf{V: LeafVersion, Kind: LeafRecords, Log: b.Log, Sidecar: alice.Sidecar, Agent: "alice", Seq: 11, Records: b.Records}
	if _, err := f.tree.Append(context.Background(), [][]byte{l.Marshal()}); err != nil {
		t.Fatal(err)
	}
	f.reopen()
	size := f.size()
	r := ship(t, f, alice, sc.batch(1, 15))
	if r.Next != 16 || f.size() != size {
		t.Fatalf("after catch-up: next %d, size %d→%d; want 16 and nothing appended twice", r.Next, size, f.size())
	}
	if _, _, err := f.w.Locate(mustGet(t, sc, 13).EventID); err != nil {
		t.Fatalf("a caught-up record is not indexed: %v", err)
	}
}

func mustGet(t *testing.T, sc *sidecarLog, seq uint64) audit.Record {
	t.Helper()
	r, ok, err := sc.log.Get(seq)
	if err != nil || !ok {
		t.Fatalf("record %d: %v %v", seq, ok, err)
	}
	return r
}

func TestTamperedBatchesAreFindingsKeptAsEvidence(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, sc *sidecarLog) Batch
		kind   string
		seq    uint64
	}{
		{"byte flipped", func(t *testing.T, sc *sidecarLog) Batch {
			b := sc.batch(1, 30)
			b.Records[6][60] ^= 1 // record 7's body; its stored hash no longer matches
			return b
		}, KindCorrupt, 7},
		{"record rewritten and re-hashed", func(t *testing.T, sc *sidecarLog) Batch {
			b := sc.batch(1, 30)
			r, _ := audit.DecodeStored(b.Records[4])
			r.Host = "evil.example"
			b.Records[4] = audit.EncodeStored(&r)
			return b
		}, KindFork, 5},
		{"tail cut past the last checkpoint", func(t *testing.T, sc *sidecarLog) Batch {
			b := sc.batch(1, 22)
			b.Head = 22
			return b
		}, KindTruncation, 23},
		{"whole chain rewritten", func(t *testing.T, sc *sidecarLog) Batch {
			other := newSidecarLog(t, 10)
			other.append(30, "alice")
			b := other.batch(1, 30)
			b.Log, b.Key = sc.log.ID(), sc.key
			b.Checkpoints = nil
			return b
		}, KindFork, 1},
		{"checkpoint signed by another key", func(t *testing.T, sc *sidecarLog) Batch {
			other := newSidecarLog(t, 10)
			other.append(30, "alice")
			b := sc.batch(1, 30)
			b.Checkpoints = other.batch(1, 30).Checkpoints
			return b
		}, KindCheckpoint, 10},
		{"another checkpoint key", func(t *testing.T, sc *sidecarLog) Batch {
			b := sc.batch(1, 30)
			b.Key = newSidecarLog(t, 10).key
			b.Checkpoints = nil
			return b
		}, KindKey, 31},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			sc := newSidecarLog(t, 10)
			sc.append(30, "alice")
			ship(t, f, alice, sc.batch(1, 30))
			size := f.size()
			_, err := f.w.Ship(context.Background(), alice, tc.tamper(t, sc))
			fd := mustFinding(t, err, tc.kind, tc.seq)
			if f.size() != size {
				t.Fatalf("a refused batch changed the fleet log: %d → %d", size, f.size())
			}
			if _, err := os.Stat(filepath.Join(f.dir, "evidence", fd.Evidence)); err != nil {
				t.Fatalf("no evidence kept: %v", err)
			}
			// The stream takes nothing more, even a good batch, across a
			// restart; the finding is reported once.
			f.reopen()
			sc.append(1, "alice")
			_, err = f.w.Ship(context.Background(), alice, sc.batch(31, 31))
			mustFinding(t, err, tc.kind, tc.seq)
			if len(f.findings) != 1 {
				t.Fatalf("%d findings reported, want 1", len(f.findings))
			}
			if st := f.w.Streams(); len(st) != 1 || st[0].Finding == nil || st[0].Next != 31 {
				t.Fatalf("streams after the finding: %+v", st)
			}
		})
	}
}

func TestShipRefusesWhatIsNotAContradiction(t *testing.T) {
	f := newFixture(t)
	sc := newSidecarLog(t, 0)
	sc.append(5, "alice")
	ship(t, f, alice, sc.batch(1, 5))
	_, err := f.w.Ship(context.Background(), Shipper{Sidecar: "sc-bob", Agent: "bob"}, sc.batch(1, 5))
	if !errors.Is(err, ErrOtherAgent) {
		t.Fatalf("another agent's sidecar shipping alice's log: %v, want ErrOtherAgent", err)
	}
	bad := sc.batch(1, 5)
	bad.Log = "not-an-id"
	if _, err := f.w.Ship(context.Background(), alice, bad); !errors.Is(err, ErrBadBatch) {
		t.Fatalf("bad log id: %v", err)
	}
	bad = sc.batch(1, 5)
	bad.Key = "nope"
	if _, err := f.w.Ship(context.Background(), alice, bad); !errors.Is(err, ErrBadBatch) {
		t.Fatalf("bad key: %v", err)
	}
	// A gap is a finding: the witness cannot check what it never saw.
	sc.append(5, "alice")
	_, err = f.w.Ship(context.Background(), alice, sc.batch(8, 10))
	mustFinding(t, err, KindGap, 6)
	if len(f.findings) != 1 {
		t.Fatalf("findings: %v", f.findings)
	}
}

func TestPrunedLogOpensAtItsAnchor(t *testing.T) {
	f := newFixture(t)
	sc := newSidecarLog(t, 0)
	sc.append(10, "alice")
	if err := sc.log.MarkShipped(6); err != nil { // as if shipped elsewhere
		t.Fatal(err)
	}
	if _, err := sc.log.Prune(context.Background(), farFuture()); err != nil {
		t.Fatal(err)
	}
	b := sc.batch(1, 10)
	anchor, ok, err := sc.log.Anchor()
	if err != nil || !ok {
		t.Fatal("no anchor", err)
	}
	b.Anchor = anchor
	if r := ship(t, f, alice, b); r.Next != 11 {
		t.Fatalf("next %d, want 11", r.Next)
	}
	if st := f.w.Streams(); st[0].First != 7 {
		t.Fatalf("stream starts at %d, want 7 (after the anchor)", st[0].First)
	}
}

func TestItemsFromFollowsTheLog(t *testing.T) {
	f := newFixture(t)
	sc := newSidecarLog(t, 10)
	sc.append(30, "alice")
	ship(t, f, alice, sc.batch(1, 30))
	ctx := context.Background()
	var got []Item
	next := uint64(0)
	for {
		items, n, err := f.w.ItemsFrom(ctx, next, 3)
		if err != nil {
			t.Fatal(err)
		}
		if n == next {
			break
		}
		got, next = append(got, items...), n
	}
	if next != f.size() || len(got) != 30 {
		t.Fatalf("followed to %d of %d leaves, %d records, want 30", next, f.size(), len(got))
	}
	for i, it := range got {
		if it.Record.Seq != uint64(i+1) || it.Agent != "alice" || it.Sidecar != alice.Sidecar {
			t.Fatalf("item %d: %+v", i, it)
		}
	}
	sc.append(5, "alice")
	ship(t, f, alice, sc.batch(31, 35))
	items, _, err := f.w.ItemsFrom(ctx, next, 100)
	if err != nil || len(items) != 5 || items[0].Record.Seq != 31 {
		t.Fatalf("after more: %d items from %d, %v", len(items), next, err)
	}
}

// OnCommitted hears of every record once it is in the fleet log, in log
// order, with the place Export gives it, and of no record twice.
func TestOnCommittedTellsOfEveryNewRecordOnce(t *testing.T) {
	f := newFixture(t)
	sc := newSidecarLog(t, 10)
	sc.append(30, "alice")
	ship(t, f, alice, sc.batch(1, 30))
	ship(t, f, alice, sc.batch(1, 30)) // shipped again: nothing new
	sc.append(5, "alice")
	ship(t, f, alice, sc.batch(25, 35))
	f.mu.Lock()
	got := append([]Item(nil), f.committed...)
	f.mu.Unlock()
	var want []Item
	if err := f.w.Export(context.Background(), Query{}, func(it Item) error { want = append(want, it); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 35 || len(want) != 35 {
		t.Fatalf("told of %d records, the log holds %d, want 35", len(got), len(want))
	}
	for i, it := range got {
		if it.Record.Seq != uint64(i+1) || it.Agent != "alice" || it.Sidecar != alice.Sidecar ||
			it.Index != want[i].Index || it.Position != want[i].Position || it.Record.Hash != want[i].Record.Hash {
			t.Fatalf("item %d: %+v, Export has %+v", i, it, want[i])
		}
	}
}

func TestFollowSendsEveryRecordOnceItIsAcknowledged(t *testing.T) {
	f := newFixture(t)
	sc := newSidecarLog(t, 10)
	sc.append(30, "alice")
	ship(t, f, alice, sc.batch(1, 30))
	const cursor = "test"
	var (
		mu    sync.Mutex
		seqs  []uint64
		calls int
		errs  int
	)
	follow := func(want int) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- f.w.Follow(ctx, FollowOptions{Cursor: cursor, Leaves: 2, Every: 10 * time.Millisecond,
				OnError: func(error) { mu.Lock(); errs++; mu.Unlock() },
				Send: func(_ context.Context, items []Item) error {
					mu.Lock()
					defer mu.Unlock()
					if calls++; calls == 2 {
						return errors.New("receiver down") // the same run comes again
					}
					for _, it := range items {
						seqs = append(seqs, it.Record.Seq)
					}
					return nil
				}})
		}()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			n := len(seqs)
			mu.Unlock()
			if n >= want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("followed %d records, want %d", n, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	follow(30)
	sc.append(5, "alice")
	ship(t, f, alice, sc.batch(31, 35))
	follow(35) // from the cursor: nothing sent twice
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("sent %v, want 1..35 once each in order", seqs)
		}
	}
	if len(seqs) != 35 || errs != 1 {
		t.Fatalf("%d records sent, %d errors", len(seqs), errs)
	}
}
