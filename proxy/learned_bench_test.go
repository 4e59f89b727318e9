package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/elazarl/goproxy"

	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/detect/injection"
	"github.com/stackctl/stack/internal/benchkit"
	"github.com/stackctl/stack/reason"
)

// newLearnedDetectProxy is a bench proxy with the sidecar's shipped grid
// (see newShippedDetectProxy), prompt_injection's learned layer at
// learned (0: off).
func newLearnedDetectProxy(b *testing.B, learned float64) *benchProxy {
	b.Helper()
	return newShippedDetectProxyWith(b, detect.PromptInjectionOptions{LearnedThreshold: learned})
}

// BenchmarkExchangeLearned measures the sidecar's exchange (as
// BenchmarkExchangeDetect: a GET with the placeholder, its answer
// redacted and scanned, the shipped detector set) with prompt_injection's
// learned layer off and at its recommended threshold, side by side, for
// the harness's 512-byte JSON answer and a 16 KiB text answer. The
// throughput ratio is ns/op off over ns/op on of the same body.
func BenchmarkExchangeLearned(b *testing.B) {
	u, err := url.Parse("https://" + stripeHost + "/v1/charges/ch_123")
	if err != nil {
		b.Fatal(err)
	}
	for _, body := range []struct {
		name  string
		ctype string
		b     []byte
	}{
		{"json-512B", "application/json", benchkit.BalanceJSON(512)},
		{"text-16KiB", "text/plain; charset=utf-8", benchkit.Prose(16 << 10)},
	} {
		for _, layer := range []struct {
			name    string
			learned float64
		}{{"off", 0}, {"on", injection.RecommendedLearnedThreshold}} {
			b.Run(body.name+"/learned-"+layer.name, func(b *testing.B) {
				bp := newLearnedDetectProxy(b, layer.learned)
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
						Header: http.Header{"Authorization": {"Bearer stk_ph_stripe"}, "User-Agent": {"bench"}, "Accept": {"*/*"}},
						Body:   http.NoBody,
					}).WithContext(context.Background())
					ctx := &goproxy.ProxyCtx{Req: req, UserData: cs}
					if _, resp := bp.proxy.handleRequest(req, ctx); resp != nil {
						b.Fatalf("refused: %d %s", resp.StatusCode, resp.Header.Get(reason.Header))
					}
					resp := &http.Response{
						StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: req,
						Header: http.Header{
							"Content-Type":   {body.ctype},
							"Content-Length": {strconv.Itoa(len(body.b))},
						},
						ContentLength: int64(len(body.b)), Body: io.NopCloser(bytes.NewReader(body.b)),
					}
					wrapUpstreamBody(resp)
					resp = bp.proxy.handleResponse(resp, ctx)
					if resp.StatusCode != http.StatusOK {
						b.Fatalf("response refused: %d %s", resp.StatusCode, resp.Header.Get(reason.Header))
					}
					if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != int64(len(body.b)) {
						b.Fatalf("read %d bytes of %d: %v", n, len(body.b), err)
					}
					resp.Body.Close()
				}
				// Past credential_burst's cap, as in BenchmarkExchangeDetect,
				// so that both arms run in the same state.
				for range 2 * detect.DefaultBurstAbsoluteCap {
					exchange()
				}
				b.SetBytes(int64(len(body.b)))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					exchange()
				}
			})
		}
	}
}
