package audit

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchRecord is a typical credential access record.
var benchRecord = Record{
	AgentID: "billing-agent", PassportJTI: "3f1c9a", Action: ActionCredentialAccess,
	CredentialID: "stripe", CredentialFingerprint: "sha256:9f86d081", Host: "api.stripe.com",
	Method: "POST", Path: "/v1/charges", Status: 200,
}

// BenchmarkAppendParallel64 measures durable appends (each returns after
// fsync) from 64 concurrent appenders, with checkpoints every 1000.
func BenchmarkAppendParallel64(b *testing.B) {
	signer, _, err := fixedKey(1)
	if err != nil {
		b.Fatal(err)
	}
	l, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{Signer: signer})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	rec := benchRecord
	const workers = 64
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := l.Append(context.Background(), rec); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
}

// BenchmarkVerify measures Verify over a 200k-record log with signed
// checkpoints every 1000 records.
func BenchmarkVerify(b *testing.B) {
	signer, verifiers, err := fixedKey(2)
	if err != nil {
		b.Fatal(err)
	}
	const n = 200_000
	path := filepath.Join(b.TempDir(), "bench.db")
	bulkLoad(b, path, n, signer)
	l, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := l.Verify(context.Background(), verifiers); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkCommit measures the CPU of a record's way through the log other
// than the disk's: the request, chaining, encoding and hashing, journal
// framing and writing, and the move into bbolt, in batches of 64 as under
// load. The log lives in /dev/shm, where a sync costs next to nothing, so
// what is left is the work this package can make cheaper.
func BenchmarkCommit(b *testing.B) {
	dir, err := os.MkdirTemp("/dev/shm", "audit-bench-")
	if err != nil {
		b.Skipf("no memory file system: %v", err)
	}
	defer os.RemoveAll(dir)
	l, err := Open(filepath.Join(dir, "audit.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	rec := benchRecord
	const batchSize = 64
	batch := make([]*appendReq, 0, batchSize)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += batchSize {
		batch = batch[:0]
		for range min(batchSize, b.N-n) {
			req, err := l.newReq(&rec)
			if err != nil {
				b.Fatal(err)
			}
			batch = append(batch, req)
		}
		l.commit(batch)
	}
	if err := l.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
}
