package proxy

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/passport"
)

// newDetectBenchProxy is a bench proxy whose grid runs credential_burst
// in alert mode, with absoluteCap as its pre-baseline cap, and which logs
// as the sidecar does (JSON at info level), to io.Discard. Repeated
// signals are folded as the sidecar folds them by default.
func newDetectBenchProxy(b *testing.B, absoluteCap int) (*Proxy, *passport.Claims) {
	b.Helper()
	bp := newBenchProxy(b, 0)
	burst, err := detect.NewBurst(detect.BurstOptions{AbsoluteCap: absoluteCap})
	if err != nil {
		b.Fatal(err)
	}
	grid, err := detect.NewGrid(detect.GridOptions{Detectors: []detect.Detector{burst}})
	if err != nil {
		b.Fatal(err)
	}
	sum, err := detect.NewSummarizer(detect.SummarizerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	opts := bp.proxy.opts
	opts.Grid = grid
	opts.Summaries = sum
	opts.Log = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
	p, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	vd, d := p.verify(bp.token, "bot")
	if d != nil {
		b.Fatal(d.Detail)
	}
	return p, vd.Claims()
}

// BenchmarkDetectStorm measures runDetectors on a request that would
// receive a credential, the detector step of the pipeline:
//
//   - quiet: credential_burst runs and never fires (its pre-baseline cap
//     is off), the cost of detection alone.
//   - storm: the agent is bursting, so credential_burst fires on every
//     request past its default cap of 60 a minute, in alert mode. The
//     first signal was reported; the ones timed are folded into a
//     summary.
//
// The -parallel variants run the same from GOMAXPROCS*4 goroutines, one
// agent and credential among all of them, as in a storm.
func BenchmarkDetectStorm(b *testing.B) {
	for _, bc := range []struct {
		name        string
		absoluteCap int
		parallel    bool
	}{
		{"quiet", -1, false},
		{"storm", 0, false},
		{"quiet-parallel", -1, true},
		{"storm-parallel", 0, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p, claims := newDetectBenchProxy(b, bc.absoluteCap)
			ctx := context.Background()
			event := func() *detect.Event {
				return &detect.Event{
					Time: time.Now(), Direction: detect.Request, Agent: claims.Subject, PassportJTI: claims.ID,
					Mode: string(claims.Mode), Host: stripeHost, Method: http.MethodGet, Path: "/v1/charges/ch_123",
					Credentials: []string{"stripe"},
				}
			}
			// Past the cap, so that a storm is one from the first timed call.
			for range 2 * detect.DefaultBurstAbsoluteCap {
				if d := p.runDetectors(ctx, event(), claims); d != nil {
					b.Fatalf("refused: %s", d.Detail)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			if !bc.parallel {
				for b.Loop() {
					p.runDetectors(ctx, event(), claims)
				}
				return
			}
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p.runDetectors(ctx, event(), claims)
				}
			})
		})
	}
}
