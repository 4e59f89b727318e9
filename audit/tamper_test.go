package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/testclock"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
)

// buildTamperLog writes 20 records, each with a unique agent marker, and
// signed checkpoints every 5 records, then closes the file.
func buildTamperLog(t *testing.T) (string, note.Signer, note.Verifiers) {
	t.Helper()
	signer, verifiers := newKey(t)
	l, path := openTest(t, Options{Signer: signer, CheckpointEvery: 5})
	for i := 1; i <= 20; i++ {
		if _, err := l.Append(context.Background(), Record{
			AgentID: fmt.Sprintf("agent-marker-%02d", i), Action: ActionCredentialAccess,
			CredentialID: "stripe", Host: "api.stripe.com",
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyFile(context.Background(), path, verifiers); err != nil {
		t.Fatalf("untampered log fails: %v", err)
	}
	return path, signer, verifiers
}

// editBolt changes the file through bbolt directly, as an attacker with
// write access to the file could.
func editBolt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTamperFlipByteInFile(t *testing.T) {
	path, _, verifiers := buildTamperLog(t)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Freed pages may hold stale copies of the record: flip the byte in
	// every copy so the live one is surely hit.
	marker := []byte("agent-marker-07")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	hits := 0
	for off := bytes.Index(raw, marker); off >= 0; {
		pos := int64(off + len(marker) - 1)
		if _, err := f.WriteAt([]byte{'X'}, pos); err != nil {
			t.Fatal(err)
		}
		hits++
		next := bytes.Index(raw[off+1:], marker)
		if next < 0 {
			break
		}
		off += 1 + next
	}
	f.Close()
	if hits == 0 {
		t.Fatal("record bytes not found in the file")
	}
	_, err = VerifyFile(context.Background(), path, verifiers)
	mustVerifyError(t, err, KindModified, 7)
}

func TestTamperDeleteRecord(t *testing.T) {
	path, _, verifiers := buildTamperLog(t)
	editBolt(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketRecords).Delete(seqKey(7)) })
	_, err := VerifyFile(context.Background(), path, verifiers)
	mustVerifyError(t, err, KindMissing, 7)
}

func TestTamperSwapRecords(t *testing.T) {
	path, _, verifiers := buildTamperLog(t)
	editBolt(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		a, c := bytes.Clone(b.Get(seqKey(7))), bytes.Clone(b.Get(seqKey(8)))
		if err := b.Put(seqKey(7), c); err != nil {
			return err
		}
		return b.Put(seqKey(8), a)
	})
	_, err := VerifyFile(context.Background(), path, verifiers)
	mustVerifyError(t, err, KindOutOfOrder, 7)
}

func TestTamperCutTailAfterCheckpoint(t *testing.T) {
	path, _, verifiers := buildTamperLog(t)
	editBolt(t, path, func(tx *bolt.Tx) error {
		for s := uint64(18); s <= 20; s++ {
			if err := tx.Bucket(bucketRecords).Delete(seqKey(s)); err != nil {
				return err
			}
		}
		return nil
	})
	rep, err := VerifyFile(context.Background(), path, verifiers)
	ve := mustVerifyError(t, err, KindCutAfterCheckpoint, 18)
	if !strings.Contains(ve.Msg, "checkpoint 20") {
		t.Fatalf("message does not name the checkpoint: %s", ve.Msg)
	}
	if rep.Records != 17 {
		t.Fatalf("report checked %d records, want 17", rep.Records)
	}
}

func TestTamperRewriteRecordAndRehash(t *testing.T) {
	path, _, verifiers := buildTamperLog(t)
	editBolt(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		r, err := DecodeStored(b.Get(seqKey(7)))
		if err != nil {
			return err
		}
		r.Host = "evil.example"
		return b.Put(seqKey(7), EncodeStored(&r))
	})
	_, err := VerifyFile(context.Background(), path, verifiers)
	mustVerifyError(t, err, KindBrokenLink, 8)
}

// rewriteTail rewrites every record from seq from on and re-chains them,
// consistently: every hash and link holds.
func rewriteTail(t *testing.T, path string, from uint64) {
	t.Helper()
	editBolt(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		prev, err := DecodeStored(b.Get(seqKey(from - 1)))
		if err != nil {
			return err
		}
		h := prev.Hash
		last, _ := b.Cursor().Last()
		for s := from; s <= binary.BigEndian.Uint64(last); s++ {
			r, err := DecodeStored(b.Get(seqKey(s)))
			if err != nil {
				return err
			}
			r.Host, r.PrevHash = "innocent.example", h
			if err := b.Put(seqKey(s), EncodeStored(&r)); err != nil {
				return err
			}
			h = r.Hash
		}
		return nil
	})
}

func TestTamperRewriteWholeTail(t *testing.T) {
	path, _, verifiers := buildTamperLog(t)
	// A consistent rewrite of records 12..20: every link holds, only the
	// signed checkpoint at 15 can tell.
	rewriteTail(t, path, 12)
	// Even without verifiers the checkpoints are compared with the chain.
	_, err := VerifyFile(context.Background(), path, nil)
	mustVerifyError(t, err, KindCheckpointMismatch, 15)
	_, err = VerifyFile(context.Background(), path, verifiers)
	mustVerifyError(t, err, KindCheckpointMismatch, 15)
}

func TestTamperCheckpointSignature(t *testing.T) {
	for _, tc := range []struct {
		name  string
		forge func(t *testing.T, old []byte) []byte
	}{
		{"other key", func(t *testing.T, old []byte) []byte {
			other, _ := newKey(t)
			text, _ := splitNote(old)
			msg, err := signStatement(text, other)
			if err != nil {
				t.Fatal(err)
			}
			return msg
		}},
		{"flipped signature byte", func(t *testing.T, old []byte) []byte {
			msg := bytes.Clone(old)
			i := bytes.LastIndex(msg, []byte(" ")) + 10
			msg[i] ^= 0x01
			if msg[i] == '+' || msg[i] == '/' || msg[i] == '\n' {
				msg[i] = 'A'
			}
			return msg
		}},
		{"unsigned", func(t *testing.T, old []byte) []byte {
			text, _ := splitNote(old)
			return []byte(text)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, _, verifiers := buildTamperLog(t)
			editBolt(t, path, func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketCheckpoints)
				return b.Put(seqKey(10), tc.forge(t, b.Get(seqKey(10))))
			})
			_, err := VerifyFile(context.Background(), path, verifiers)
			mustVerifyError(t, err, KindBadCheckpointSignature, 10)
		})
	}
}

func TestTamperForgedCheckpointBeyondTail(t *testing.T) {
	// A cut tail with the evidence replaced by a checkpoint from another
	// key is reported as a bad signature, not merely a cut.
	path, _, verifiers := buildTamperLog(t)
	other, _ := newKey(t)
	editBolt(t, path, func(tx *bolt.Tx) error {
		msg, err := signStatement(statementText(CheckpointOrigin, 25, Hash{}, testclock.Start().Now()), other)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketCheckpoints).Put(seqKey(25), msg)
	})
	_, err := VerifyFile(context.Background(), path, verifiers)
	mustVerifyError(t, err, KindBadCheckpointSignature, 25)
}

// A clean close signs the records after the last periodic checkpoint, so
// a consistent rewrite of them no longer goes unnoticed.
func TestTamperRewriteTailAfterCleanClose(t *testing.T) {
	signer, verifiers := newKey(t)
	l, path := openTest(t, Options{Signer: signer, CheckpointEvery: 5})
	appendN(t, l, 23, "a")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyFile(context.Background(), path, verifiers)
	if err != nil {
		t.Fatal(err)
	}
	if rep.LastCheckpoint == nil || rep.LastCheckpoint.Size != 23 || rep.Uncovered != 0 {
		t.Fatalf("cleanly closed log: %+v, want its last checkpoint at 23 and nothing uncovered", rep)
	}
	rewriteTail(t, path, 21)
	_, err = VerifyFile(context.Background(), path, verifiers)
	mustVerifyError(t, err, KindCheckpointMismatch, 23)
}

// Records no checkpoint covers verify, since a running or killed writer
// leaves some, but the report counts them.
func TestVerifyReportsUncoveredTail(t *testing.T) {
	ctx := context.Background()
	signer, verifiers := newKey(t)
	for _, tc := range []struct {
		name      string
		build     func(t *testing.T) string
		verifiers note.Verifiers // nil for a log without a signer
		uncovered uint64
	}{
		{"closing checkpoint removed", func(t *testing.T) string {
			l, path := openTest(t, Options{Signer: signer, CheckpointEvery: 5})
			appendN(t, l, 23, "a")
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			editBolt(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketCheckpoints).Delete(seqKey(23)) })
			rewriteTail(t, path, 21)
			return path
		}, verifiers, 3},
		{"no signer", func(t *testing.T) string {
			l, path := openTest(t, Options{})
			appendN(t, l, 7, "a")
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			return path
		}, nil, 7},
		{"pruned, no signer", func(t *testing.T) string {
			clk := testclock.Start()
			l, path, start := buildTimedLog(t, clk, 12, Options{})
			if _, err := l.Prune(ctx, start.Add(4*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			return path
		}, nil, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := VerifyFile(ctx, tc.build(t), tc.verifiers)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Uncovered != tc.uncovered {
				t.Fatalf("uncovered = %d, want %d (%+v)", rep.Uncovered, tc.uncovered, rep)
			}
		})
	}
}
