package fleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control/fleetlog"
)

// BenchmarkShip measures ingest into the fleet log: 20 sidecars ship
// batches of 500 new records at once, each checked, appended and
// indexed. It reports records/s; the target is 50,000.
func BenchmarkShip(b *testing.B) {
	const sidecars, per = 20, 500
	f := newFixture(b)
	logs := make([]*sidecarLog, sidecars)
	for i := range logs {
		logs[i] = newSidecarLog(b, 1000)
	}
	// Every sidecar holds b.N batches' worth of records, read before the clock starts.
	batches := make([][]Batch, sidecars)
	var wg sync.WaitGroup
	for i := range logs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			logs[i].append(b.N*per, fmt.Sprintf("agent-%d", i))
			for n := 0; n < b.N; n++ {
				batches[i] = append(batches[i], logs[i].batch(uint64(n*per+1), uint64((n+1)*per)))
			}
		}()
	}
	wg.Wait()
	b.ResetTimer()
	for i := range logs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			who := Shipper{Sidecar: fmt.Sprintf("sc-%d", i), Agent: fmt.Sprintf("agent-%d", i)}
			for _, bt := range batches[i] {
				if _, err := f.w.Ship(context.Background(), who, bt); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(sidecars*per*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkProve measures what answering and checking one proof costs in
// a fleet log of 100,000 records: locate the event, read its leaf, build
// the inclusion proof against the current checkpoint, and verify it as
// `stack audit prove` does. The target is 1 ms a proof.
func BenchmarkProve(b *testing.B) {
	const records, per = 100_000, 1000
	f := newFixture(b)
	sl := newSidecarLog(b, 1000)
	sl.append(records, "alice")
	var ids []string
	for from := uint64(1); from <= records; from += per {
		bt := sl.batch(from, from+per-1)
		if _, err := f.w.Ship(context.Background(), alice, bt); err != nil {
			b.Fatal(err)
		}
		for _, raw := range bt.Records {
			r, err := audit.DecodeStored(raw)
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, r.EventID)
		}
	}
	ctx := context.Background()
	ck, err := f.tree.WaitCheckpoint(ctx, f.size()-1)
	if err != nil {
		b.Fatal(err)
	}
	c, err := fleetlog.ParseCheckpoint(f.key, ck)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for b.Loop() {
		id := ids[rng.IntN(len(ids))]
		idx, pos, err := f.w.Locate(id)
		if err != nil {
			b.Fatal(err)
		}
		hashes, err := f.tree.InclusionProof(ctx, idx, c.Size)
		if err != nil {
			b.Fatal(err)
		}
		leaf, item, err := f.w.Record(ctx, idx, pos)
		if err != nil {
			b.Fatal(err)
		}
		r, err := VerifyProof(f.key, Proof{Index: idx, Size: c.Size, Leaf: leaf, Hashes: hashes, Checkpoint: ck, Item: item})
		if err != nil || r.EventID != id {
			b.Fatalf("proof of %s: %v (%s)", id, err, r.EventID)
		}
	}
}
