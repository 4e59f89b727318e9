package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/elazarl/goproxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/internal/benchkit"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// benchWithGrid is bp's proxy again with grid, repeated signals folded as the
// sidecar folds them by default, and logs as the sidecar writes them
// (JSON at info level), to io.Discard; it is closed when b ends.
func benchWithGrid(b *testing.B, bp *benchProxy, grid *detect.Grid) *Proxy {
	b.Helper()
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
	return p
}

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
	p := benchWithGrid(b, bp, grid)
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

// newShippedDetectProxy is a bench proxy whose grid is the sidecar's
// shipped one (cmd/stack): credential_burst with its default cap,
// scope_drift, prompt_injection and credential_exfiltration (with a
// binding function and an index of the vault's secrets), every one in
// alert mode; repeated signals folded by a summarizer; JSON logs at info
// level to io.Discard.
func newShippedDetectProxy(b *testing.B) *benchProxy {
	b.Helper()
	return newShippedDetectProxyWith(b, detect.PromptInjectionOptions{})
}

// newShippedDetectProxyWith is newShippedDetectProxy with prompt_injection
// built from pio.
func newShippedDetectProxyWith(b *testing.B, pio detect.PromptInjectionOptions) *benchProxy {
	b.Helper()
	bp := newBenchProxy(b, 0)
	burst, err := detect.NewBurst(detect.BurstOptions{})
	if err != nil {
		b.Fatal(err)
	}
	drift, err := detect.NewDrift(detect.DriftOptions{})
	if err != nil {
		b.Fatal(err)
	}
	pi, err := detect.NewPromptInjection(pio)
	if err != nil {
		b.Fatal(err)
	}
	ex, err := detect.NewExfiltration(detect.ExfiltrationOptions{
		Bound: func(name string) ([]string, bool) {
			if name == "stripe" {
				return []string{stripeHost}, true
			}
			return nil, false
		},
		Secrets: detect.NewSecretIndex(map[string][]byte{"stripe": []byte(stripeToken), "gh": []byte(ghToken)}),
	})
	if err != nil {
		b.Fatal(err)
	}
	grid, err := detect.NewGrid(detect.GridOptions{Detectors: []detect.Detector{burst, drift, pi, ex},
		Policy: detect.Policy{Modes: map[string]detect.Mode{
			detect.BurstName: detect.ModeAlert, detect.DriftName: detect.ModeAlert,
			detect.InjectionName: detect.ModeAlert, detect.ExfiltrationName: detect.ModeAlert,
		}}})
	if err != nil {
		b.Fatal(err)
	}
	bp.proxy = benchWithGrid(b, bp, grid)
	return bp
}

// BenchmarkExchangeDetect measures one request and its answer through the
// request and response handlers, as the load harness drives the sidecar:
// a keep-alive tunnel's GET carrying the placeholder, answered by the
// harness's 512-byte JSON body with a Content-Length, read to the end.
// The credential is injected, its access audited, the answer redacted
// and scanned.
//
//   - shipped-storm: the shipped detector set, with the agent bursting,
//     so credential_burst fires on every request (folded into a summary).
//   - no-detectors: no grid, the cost of everything else.
func BenchmarkExchangeDetect(b *testing.B) {
	u, err := url.Parse("https://" + stripeHost + "/v1/charges/ch_123")
	if err != nil {
		b.Fatal(err)
	}
	body := benchkit.BalanceJSON(512)
	for _, bc := range []struct {
		name string
		mk   func(b *testing.B) *benchProxy
	}{
		{"shipped-storm", newShippedDetectProxy},
		{"no-detectors", func(b *testing.B) *benchProxy { return newBenchProxy(b, 0) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bp := bc.mk(b)
			vd, d := bp.proxy.verify(bp.token, "bot")
			if d != nil {
				b.Fatal(d.Detail)
			}
			cs := &connState{}
			cs.verified.Store(vd)
			exchange := func() {
				uu := *u
				req := (&http.Request{
					Method: http.MethodGet, URL: &uu, Host: uu.Host, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
					Header: http.Header{
						"Authorization": {"Bearer stk_ph_stripe"},
						"User-Agent":    {"bench"},
						"Accept":        {"*/*"},
					},
					Body: http.NoBody,
				}).WithContext(context.Background())
				ctx := &goproxy.ProxyCtx{Req: req, UserData: cs}
				if _, resp := bp.proxy.handleRequest(req, ctx); resp != nil {
					b.Fatalf("refused: %d %s", resp.StatusCode, resp.Header.Get(reason.Header))
				}
				if req.Header.Get("Authorization") != "Bearer "+stripeToken {
					b.Fatal("the placeholder was not replaced")
				}
				resp := &http.Response{
					StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: req,
					Header: http.Header{
						"Content-Type":   {"application/json"},
						"Content-Length": {strconv.Itoa(len(body))},
						"Date":           {"Tue, 25 Nov 2026 10:00:00 GMT"},
					},
					ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body)),
				}
				wrapUpstreamBody(resp)
				resp = bp.proxy.handleResponse(resp, ctx)
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("response refused: %d %s", resp.StatusCode, resp.Header.Get(reason.Header))
				}
				n, err := io.Copy(io.Discard, resp.Body)
				if err != nil || n != int64(len(body)) {
					b.Fatalf("read %d bytes of %d: %v", n, len(body), err)
				}
				resp.Body.Close()
			}
			// Past credential_burst's cap, so that a storm is one from the
			// first timed call.
			for range 2 * detect.DefaultBurstAbsoluteCap {
				exchange()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				exchange()
			}
		})
	}
}
