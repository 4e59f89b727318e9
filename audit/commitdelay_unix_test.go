//go:build unix

package audit

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/benchkit"
)

// BenchmarkRequestPattern is the proxy's pattern per request, from 32
// concurrent requests: a credential-access Append, then the request record
// Appended or Enqueued (at once, or after a simulated upstream round
// trip), under each sync policy. It reports the process CPU per request:
// under SyncAlways each commit costs an fdatasync, which the commit delay
// shares among more records; under SyncInterval a commit is a write.
func BenchmarkRequestPattern(b *testing.B) {
	cases := []struct {
		name   string
		policy SyncPolicy
		delay  time.Duration
		// appendAfter: the request record is Appended (waited for) too.
		appendAfter bool
		// upstream, when set, is the mean time between the two records
		// (the upstream round trip), drawn from [upstream/2, 3*upstream/2)
		// so that requests do not move in step as they do back to back.
		upstream time.Duration
	}{
		{"always/both-appended/commit-delay=off", SyncAlways, -1, true, 0},
		{"always/request-enqueued/commit-delay=off", SyncAlways, -1, false, 0},
		{"always/request-enqueued/commit-delay=" + DefaultCommitDelay.String(), SyncAlways, DefaultCommitDelay, false, 0},
		{"always/request-enqueued/upstream=2ms/commit-delay=" + DefaultCommitDelay.String(), SyncAlways, DefaultCommitDelay, false, 2 * time.Millisecond},
		{"interval/both-appended", SyncInterval, 0, true, 0},
		{"interval/request-enqueued", SyncInterval, 0, false, 0},
		{"interval/both-appended/commit-delay=" + DefaultCommitDelay.String(), SyncInterval, DefaultCommitDelay, true, 0},
		{"interval/both-appended/upstream=2ms", SyncInterval, 0, true, 2 * time.Millisecond},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			l, _ := openTest(b, Options{Sync: tc.policy, CommitDelay: tc.delay})
			ctx := context.Background()
			rec := Record{AgentID: "bot", Action: ActionCredentialAccess, CredentialID: "stripe", Host: "api.stripe.com", Method: "GET", Path: "/v1/balance"}
			done := rec
			done.Action, done.Status = ActionRequest, 200
			cpu0 := benchkit.ProcessCPU()
			b.SetParallelism(16) // 32 goroutines on 2 CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Append(ctx, rec); err != nil {
						b.Error(err)
						return
					}
					if tc.upstream > 0 {
						time.Sleep(tc.upstream/2 + rand.N(tc.upstream))
					}
					var err error
					if tc.appendAfter {
						_, err = l.Append(ctx, done)
					} else {
						err = l.Enqueue(ctx, done, nil)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((benchkit.ProcessCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/req")
		})
	}
}
