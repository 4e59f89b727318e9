package fleetlog_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/stackctl/stack/control/fleetlog"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// testKey is a log key pair: the signer for Open, the verifier string for
// the Verify functions.
type testKey struct {
	signer   note.Signer
	verifier string
	skey     string
}

func newKey(t testing.TB, name string) testKey {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{signer: s, verifier: vkey, skey: skey}
}

// sign signs text (a checkpoint body) with k, as the log would.
func (k testKey) sign(t testing.TB, text string) []byte {
	t.Helper()
	n, err := note.Sign(&note.Note{Text: text}, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// openLog opens a log in dir with fast test settings and closes it, checking
// the close, when the test ends.
func openLog(t testing.TB, dir string, k testKey) *fleetlog.Log {
	t.Helper()
	l, err := fleetlog.Open(context.Background(), fleetlog.Options{
		Dir:                dir,
		Signer:             k.signer,
		CheckpointInterval: 100 * time.Millisecond,
		BatchMaxAge:        5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// makeLeaves returns n distinct leaves of about 300 bytes tagged with tag.
func makeLeaves(tag string, n int) [][]byte {
	leaves := make([][]byte, n)
	for i := range leaves {
		leaf := make([]byte, 300)
		copy(leaf, fmt.Sprintf("%s/%d:", tag, i))
		leaves[i] = leaf
	}
	return leaves
}

// appendAll appends leaves and fails the test on error.
func appendAll(t testing.TB, l *fleetlog.Log, leaves [][]byte) []uint64 {
	t.Helper()
	idx, err := l.Append(context.Background(), leaves)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// waitFor waits for a checkpoint covering index and returns it parsed.
func waitFor(t testing.TB, l *fleetlog.Log, k testKey, index uint64) ([]byte, fleetlog.Checkpoint) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cp, err := l.WaitCheckpoint(ctx, index)
	if err != nil {
		t.Fatal(err)
	}
	c, err := fleetlog.ParseCheckpoint(k.verifier, cp)
	if err != nil {
		t.Fatal(err)
	}
	if c.Size <= index {
		t.Fatalf("WaitCheckpoint(%d) returned a checkpoint of size %d", index, c.Size)
	}
	return cp, c
}

// rootOf computes the RFC 6962 root of leaves independently of tessera's
// tiles, with a compact range.
func rootOf(t testing.TB, leaves [][]byte) []byte {
	t.Helper()
	h := rfc6962.DefaultHasher
	if len(leaves) == 0 {
		return h.EmptyRoot()
	}
	r := (&compact.RangeFactory{Hash: h.HashChildren}).NewEmptyRange(0)
	for _, leaf := range leaves {
		if err := r.Append(h.HashLeaf(leaf), nil); err != nil {
			t.Fatal(err)
		}
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	return root
}
