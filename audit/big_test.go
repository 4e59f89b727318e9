package audit

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
)

// bulkLoad writes n chained records (and a signed checkpoint every 1000)
// straight into a new log file in large transactions, which is much faster
// than durable appends and stores the same bytes.
func bulkLoad(tb testing.TB, path string, n uint64, signer note.Signer) Hash {
	tb.Helper()
	l, err := Open(path, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := l.Close(); err != nil {
		tb.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	prev := GenesisHash
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	const perTx = 100_000
	for start := uint64(1); start <= n; start += perTx {
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketRecords)
			b.FillPercent = 1
			cks := tx.Bucket(bucketCheckpoints)
			var arena []byte
			for seq := start; seq < start+perTx && seq <= n; seq++ {
				r := Record{
					Seq: seq, EventID: fmt.Sprintf("evt-%d", seq), TimestampMS: ts + int64(seq),
					AgentID: "agent-" + fmt.Sprint(seq%16), Action: ActionCredentialAccess,
					CredentialID: "stripe", Host: "api.stripe.com", Method: "POST",
					Path: "/v1/charges", Status: 200, PrevHash: prev,
				}
				if len(arena) > 1<<20 {
					arena = nil
				}
				var v []byte
				arena, v = r.appendStored(arena)
				if err := b.Put(seqKey(seq), v); err != nil {
					return err
				}
				prev = r.Hash
				if signer != nil && seq%1000 == 0 {
					msg, err := signStatement(statementText(CheckpointOrigin, seq, prev, time.UnixMilli(ts+int64(seq))), signer)
					if err != nil {
						return err
					}
					if err := cks.Put(seqKey(seq), msg); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	if err := db.Sync(); err != nil {
		tb.Fatal(err)
	}
	return prev
}

// heapPeak samples HeapInuse until stopped and reports the peak.
type heapPeak struct {
	peak atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

func startHeapPeak() *heapPeak {
	h := &heapPeak{stop: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > h.peak.Load() {
				h.peak.Store(ms.HeapInuse)
			}
			select {
			case <-h.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return h
}

func (h *heapPeak) Stop() uint64 {
	close(h.stop)
	h.wg.Wait()
	return h.peak.Load()
}

// TestExportVerifyBoundedMemory checks that verify and export stream: the
// heap they use does not grow with the log. Default 200k records;
// STACK_AUDIT_BIG=1 runs the full 10 million.
func TestExportVerifyBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a large log")
	}
	n := uint64(200_000)
	if os.Getenv("STACK_AUDIT_BIG") == "1" {
		n = 10_000_000
	}
	signer, verifiers, err := fixedKey(3)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "big.db")
	t0 := time.Now()
	head := bulkLoad(t, path, n, signer)
	fi, _ := os.Stat(path)
	t.Logf("loaded %d records in %s (%d MiB file)", n, time.Since(t0).Round(time.Millisecond), fi.Size()>>20)

	// A low GC target makes the peak follow live memory rather than the
	// garbage the collector lets pile up between cycles.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	debug.FreeOSMemory()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	hp := startHeapPeak()

	ctx := context.Background()
	t0 = time.Now()
	rep, err := VerifyFile(ctx, path, verifiers)
	if err != nil {
		t.Fatal(err)
	}
	verifyTook := time.Since(t0)
	if rep.Records != n || rep.Head != head || rep.Checkpoints != int(n/1000) {
		t.Fatalf("report %+v", rep)
	}

	l, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t0 = time.Now()
	cw := &countingWriter{}
	exported, err := l.Export(ctx, cw, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	exportTook := time.Since(t0)
	peak := hp.Stop()
	if exported != n {
		t.Fatalf("exported %d of %d", exported, n)
	}
	growth := int64(peak) - int64(base.HeapInuse)
	t.Logf("verify %s (%.0f records/s), export %s (%d MiB JSONL), heap in use: base %d MiB, peak %d MiB",
		verifyTook.Round(time.Millisecond), float64(n)/verifyTook.Seconds(),
		exportTook.Round(time.Millisecond), cw.n>>20, base.HeapInuse>>20, peak>>20)
	// A full load would hold hundreds of bytes per record (>= 60 MiB at
	// 200k); streaming keeps a handful of pages and one record.
	const bound = 16 << 20
	if growth > bound {
		t.Fatalf("heap grew by %d MiB during verify+export, bound %d MiB", growth>>20, bound>>20)
	}
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countingWriter)(nil)
