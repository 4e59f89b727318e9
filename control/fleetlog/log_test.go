package fleetlog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stackctl/stack/control/fleetlog"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"go.uber.org/goleak"
)

func TestAppendAndReadBack(t *testing.T) {
	k := newKey(t, fleetlog.DefaultOrigin)
	l := openLog(t, t.TempDir(), k)
	ctx := context.Background()

	var all [][]byte
	for _, n := range []int{1, 10, 300, 255, 1} {
		leaves := makeLeaves(fmt.Sprintf("call%d", len(all)), n)
		idx := appendAll(t, l, leaves)
		for i, got := range idx {
			if want := uint64(len(all) + i); got != want {
				t.Fatalf("leaf %d of a call got index %d, want %d (a lone caller's leaves are contiguous)", i, got, want)
			}
		}
		all = append(all, leaves...)
	}

	size, err := l.Size(ctx)
	if err != nil || size != uint64(len(all)) {
		t.Fatalf("Size = %d, %v; want %d", size, err, len(all))
	}
	got, err := l.Entries(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	assertLeaves(t, got, all)

	// A range inside the log, across bundle boundaries.
	got, err = l.Entries(ctx, 250, 20)
	if err != nil {
		t.Fatal(err)
	}
	assertLeaves(t, got, all[250:270])

	if idx, err := l.Append(ctx, nil); err != nil || len(idx) != 0 {
		t.Errorf("Append(nil) = %v, %v; want nothing", idx, err)
	}
}

func assertLeaves(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d leaves, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("leaf %d = %.20q, want %.20q", i, got[i], want[i])
		}
	}
}

func TestConcurrentAppendsKeepEachCallInOrder(t *testing.T) {
	k := newKey(t, fleetlog.DefaultOrigin)
	l := openLog(t, t.TempDir(), k)
	ctx := context.Background()

	const writers, calls, perCall = 6, 10, 120
	type result struct {
		leaves [][]byte
		idx    []uint64
	}
	results := make(chan result, writers*calls)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for c := range calls {
				leaves := makeLeaves(fmt.Sprintf("w%d/c%d", w, c), perCall)
				idx, err := l.Append(ctx, leaves)
				if err != nil {
					t.Error(err)
					return
				}
				results <- result{leaves, idx}
			}
		})
	}
	wg.Wait()
	close(results)

	size, err := l.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if size != writers*calls*perCall {
		t.Fatalf("size %d, want %d", size, writers*calls*perCall)
	}
	stored, err := l.Entries(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	seen := make([]bool, size)
	for r := range results {
		for i, x := range r.idx {
			if i > 0 && x <= r.idx[i-1] {
				t.Fatalf("a call's leaf %d got index %d after %d", i, x, r.idx[i-1])
			}
			if seen[x] {
				t.Fatalf("index %d given twice", x)
			}
			seen[x] = true
			if !bytes.Equal(stored[x], r.leaves[i]) {
				t.Fatalf("index %d holds %.20q, want %.20q", x, stored[x], r.leaves[i])
			}
		}
	}
}

func TestReopenKeepsTheLog(t *testing.T) {
	k := newKey(t, fleetlog.DefaultOrigin)
	dir := t.TempDir()
	ctx := context.Background()

	l, err := fleetlog.Open(ctx, fleetlog.Options{Dir: dir, Signer: k.signer, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	first := makeLeaves("first", 300)
	appendAll(t, l, first)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// Close published a checkpoint covering everything appended.
	cp, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := fleetlog.ParseCheckpoint(k.verifier, cp)
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 300 || !bytes.Equal(c.Root, rootOf(t, first)) {
		t.Fatalf("checkpoint after Close: size %d root %x, want 300 and the leaves' root", c.Size, c.Root)
	}

	l = openLog(t, dir, k)
	if size, err := l.Size(ctx); err != nil || size != 300 {
		t.Fatalf("Size after reopen = %d, %v; want 300", size, err)
	}
	got, err := l.Entries(ctx, 0, 300)
	if err != nil {
		t.Fatal(err)
	}
	assertLeaves(t, got, first)

	second := makeLeaves("second", 5)
	idx := appendAll(t, l, second)
	if idx[0] != 300 {
		t.Fatalf("first index after reopen = %d, want 300", idx[0])
	}
	newer, c2 := waitFor(t, l, k, idx[4])
	if !bytes.Equal(c2.Root, rootOf(t, append(first, second...))) {
		t.Fatal("root after reopen is not the root of all leaves")
	}
	p, err := l.ConsistencyProof(ctx, c.Size, c2.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := fleetlog.VerifyConsistency(k.verifier, cp, newer, p); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesAnotherOrigin(t *testing.T) {
	k := newKey(t, fleetlog.DefaultOrigin)
	dir := t.TempDir()
	ctx := context.Background()

	if _, err := fleetlog.Open(ctx, fleetlog.Options{Dir: dir, Signer: k.signer, Origin: "other/v1"}); err == nil {
		t.Fatal("Open with an Origin other than the key's name succeeded")
	}
	l, err := fleetlog.Open(ctx, fleetlog.Options{Dir: dir, Signer: k.signer, Origin: fleetlog.DefaultOrigin})
	if err != nil {
		t.Fatal(err)
	}
	if l.Origin() != fleetlog.DefaultOrigin {
		t.Errorf("Origin() = %q", l.Origin())
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	other := newKey(t, "other/v1")
	if _, err := fleetlog.Open(ctx, fleetlog.Options{Dir: dir, Signer: other.signer}); !errors.Is(err, fleetlog.ErrCheckpoint) {
		t.Fatalf("Open of a %s log with a key named other/v1: %v, want ErrCheckpoint", fleetlog.DefaultOrigin, err)
	}

	for name, opts := range map[string]fleetlog.Options{
		"no dir":    {Signer: k.signer},
		"no signer": {Dir: dir},
		"negative":  {Dir: dir, Signer: k.signer, BatchMaxSize: -1},
	} {
		if _, err := fleetlog.Open(ctx, opts); err == nil {
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

func TestProofsVerify(t *testing.T) {
	k := newKey(t, fleetlog.DefaultOrigin)
	l := openLog(t, t.TempDir(), k)
	ctx := context.Background()

	leaves := makeLeaves("a", 700)
	idx := appendAll(t, l, leaves)
	older, oc := waitFor(t, l, k, idx[len(idx)-1])

	more := makeLeaves("b", 70_000)
	for i := 0; i < len(more); i += 5000 {
		appendAll(t, l, more[i:i+5000])
	}
	leaves = append(leaves, more...)
	newer, nc := waitFor(t, l, k, uint64(len(leaves)-1))
	if !bytes.Equal(nc.Root, rootOf(t, leaves)) {
		t.Fatal("the checkpoint's root is not the root of the leaves")
	}

	for _, i := range []uint64{0, 1, 255, 256, 699, 65535, 65536, uint64(len(leaves) - 1)} {
		p, err := l.InclusionProof(ctx, i, nc.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := fleetlog.VerifyInclusion(k.verifier, newer, leaves[i], i, p); err != nil {
			t.Errorf("leaf %d: %v", i, err)
		}
	}
	p, err := l.ConsistencyProof(ctx, oc.Size, nc.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := fleetlog.VerifyConsistency(k.verifier, older, newer, p); err != nil {
		t.Fatal(err)
	}
	if err := fleetlog.VerifyConsistency(k.verifier, newer, newer, nil); err != nil {
		t.Errorf("a checkpoint is consistent with itself: %v", err)
	}
}

// Proofs can be asked for any size the log has integrated, not only the
// sizes at which batches ended (where tessera wrote partial tiles).
func TestProofsAtEverySize(t *testing.T) {
	k := newKey(t, fleetlog.DefaultOrigin)
	l := openLog(t, t.TempDir(), k)
	ctx := context.Background()

	var leaves [][]byte
	for _, n := range []int{3, 250, 20, 300} {
		more := makeLeaves(fmt.Sprint(n), n)
		appendAll(t, l, more)
		leaves = append(leaves, more...)
	}
	h := rfc6962.DefaultHasher
	roots := make([][]byte, len(leaves)+1)
	for size := 1; size <= len(leaves); size += 7 {
		roots[size] = rootOf(t, leaves[:size])
		for _, i := range []int{0, size / 2, size - 1} {
			p, err := l.InclusionProof(ctx, uint64(i), uint64(size))
			if err != nil {
				t.Fatalf("inclusion of %d in %d: %v", i, size, err)
			}
			if err := proof.VerifyInclusion(h, uint64(i), uint64(size), h.HashLeaf(leaves[i]), p, roots[size]); err != nil {
				t.Fatalf("inclusion of %d in %d: %v", i, size, err)
			}
		}
	}
	last := len(leaves)
	roots[last] = rootOf(t, leaves)
	for size := 1; size < last; size += 7 {
		p, err := l.ConsistencyProof(ctx, uint64(size), uint64(last))
		if err != nil {
			t.Fatalf("consistency %d to %d: %v", size, last, err)
		}
		if err := proof.VerifyConsistency(h, uint64(size), uint64(last), p, roots[size], roots[last]); err != nil {
			t.Fatalf("consistency %d to %d: %v", size, last, err)
		}
	}
}

func TestBeyondTheLog(t *testing.T) {
	k := newKey(t, fleetlog.DefaultOrigin)
	l := openLog(t, t.TempDir(), k)
	ctx := context.Background()
	appendAll(t, l, makeLeaves("x", 10))

	for name, err := range map[string]error{
		"entries past the end": second(l.Entries(ctx, 5, 6)),
		"entries from the end": second(l.Entries(ctx, 11, 0)),
		"entries huge n":       second(l.Entries(ctx, 1, ^uint64(0))),
		"inclusion index":      second(l.InclusionProof(ctx, 10, 10)),
		"inclusion size":       second(l.InclusionProof(ctx, 0, 11)),
		"consistency to":       second(l.ConsistencyProof(ctx, 1, 11)),
		"consistency inverted": second(l.ConsistencyProof(ctx, 5, 4)),
	} {
		if !errors.Is(err, fleetlog.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}

	big := make([]byte, fleetlog.MaxLeafSize+1)
	if _, err := l.Append(ctx, [][]byte{[]byte("ok"), big}); !errors.Is(err, fleetlog.ErrLeafTooLarge) {
		t.Errorf("Append of an oversized leaf: %v, want ErrLeafTooLarge", err)
	}
	if size, _ := l.Size(ctx); size != 10 {
		t.Errorf("a refused Append added leaves: size %d", size)
	}
	if idx, err := l.Append(ctx, [][]byte{make([]byte, fleetlog.MaxLeafSize)}); err != nil || idx[0] != 10 {
		t.Errorf("Append of a leaf of MaxLeafSize = %v, %v", idx, err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Append(cancelled, makeLeaves("y", 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a cancelled context: %v", err)
	}

	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := l.WaitCheckpoint(short, 1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitCheckpoint for an index never appended: %v, want the context's error", err)
	}
}

func second[T any](_ T, err error) error { return err }

func TestClosedLog(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	k := newKey(t, fleetlog.DefaultOrigin)
	ctx := context.Background()
	l, err := fleetlog.Open(ctx, fleetlog.Options{Dir: t.TempDir(), Signer: k.signer, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, l, makeLeaves("x", 3))

	waited := make(chan error, 1)
	go func() {
		_, err := l.WaitCheckpoint(ctx, 1<<40)
		waited <- err
	}()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; !errors.Is(err, fleetlog.ErrClosed) {
		t.Errorf("WaitCheckpoint across Close: %v, want ErrClosed", err)
	}
	for name, err := range map[string]error{
		"Append":           second(l.Append(ctx, makeLeaves("y", 1))),
		"Size":             second(l.Size(ctx)),
		"Checkpoint":       second(l.Checkpoint(ctx)),
		"WaitCheckpoint":   second(l.WaitCheckpoint(ctx, 0)),
		"Entries":          second(l.Entries(ctx, 0, 1)),
		"InclusionProof":   second(l.InclusionProof(ctx, 0, 1)),
		"ConsistencyProof": second(l.ConsistencyProof(ctx, 1, 2)),
	} {
		if !errors.Is(err, fleetlog.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
