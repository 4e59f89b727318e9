package proxy

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/inject"
	"github.com/stackctl/stack/internal/benchkit"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/proxy/ca"
	"github.com/stackctl/stack/proxy/egress"
	"github.com/stackctl/stack/reason"
)

// benchProxy is a Proxy wired to the same real parts as the test harness
// (bbolt vault under a local KMS key, revocation store, bbolt audit log on
// disk, egress guard), built for benchmarks, which newHarness cannot take.
type benchProxy struct {
	proxy *Proxy
	token string
	audit *audit.Log
}

func newBenchProxy(b *testing.B, verifierCache int) *benchProxy {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	v := newTestVault(b, dir)
	putBearer(b, v, "stripe", stripeToken, stripeHost)
	store, err := NewVaultStore(v, nil)
	if err != nil {
		b.Fatal(err)
	}
	keys, err := passport.GenerateKeySet(time.Now())
	if err != nil {
		b.Fatal(err)
	}
	revs, err := passport.OpenRevocationStore(filepath.Join(dir, "revocations.db"), passport.RevocationOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { revs.Close() })
	verifier, err := passport.NewVerifier(passport.VerifierOptions{Keys: keys.JWKS(time.Now()), Revocations: revs, CacheSize: verifierCache})
	if err != nil {
		b.Fatal(err)
	}
	// The audit log on a real file: every Append is durable (fsync) before
	// it returns, batched by group commit under concurrency.
	log, err := audit.Open(filepath.Join(dir, "audit.db"), audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { log.Close() })
	mitm, err := ca.Generate(time.Now(), "bench MITM CA")
	if err != nil {
		b.Fatal(err)
	}
	guard, err := egress.New(egress.Options{
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Resolver:   testResolver{stripeHost: {netip.MustParseAddr("127.0.0.1")}},
	})
	if err != nil {
		b.Fatal(err)
	}
	p, err := New(Options{
		Verifier: verifier, Injector: inject.New(store, inject.Options{}), Audit: log, CA: mitm, Guard: guard,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	issuer := &passport.Issuer{Keys: keys}
	tok, _, err := issuer.Issue(ctx, passport.IssueRequest{Agent: "bot", Scope: stripeScope(), TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	return &benchProxy{proxy: p, token: tok, audit: log}
}

// request is the inner request of an intercepted tunnel as the pipeline
// sees it: absolute https URL, the agent's passport, and (withPlaceholder)
// the placeholder in Authorization.
func (bp *benchProxy) request(u *url.URL, withPlaceholder bool) (*http.Request, *reqState) {
	uu := *u
	h := http.Header{
		"Proxy-Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("bot:"+bp.token))},
		"User-Agent":          {"bench"},
	}
	if withPlaceholder {
		h["Authorization"] = []string{"Bearer stk_ph_stripe"}
	}
	req := (&http.Request{
		Method: http.MethodGet, URL: &uu, Host: uu.Host, Header: h,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Body: http.NoBody,
	}).WithContext(context.Background())
	st := &reqState{start: time.Now(), method: req.Method, path: uu.EscapedPath(), host: stripeHost}
	return req, st
}

// BenchmarkPipeline measures the per-request cost of the pipeline
// (identify, verify, scope, egress literal check, injection and the
// durable credential-access audit record) without any network: it calls
// the pipeline on requests built in memory.
//
//   - inject+audit: the placeholder is replaced and the credential access
//     is appended to the audit file, durable before the call returns.
//   - inject+audit-parallel: the same from GOMAXPROCS*4 goroutines, where
//     group commit shares each fsync among concurrent requests.
//   - no-placeholder: no credential, so no audit append in the pipeline:
//     passport check (cached), scope and the injector's scan only.
//   - no-placeholder-uncached: as above with the verifier's token cache off,
//     so every request pays an Ed25519 signature check.
func BenchmarkPipeline(b *testing.B) {
	u, err := url.Parse("https://" + stripeHost + "/v1/charges/ch_123?expand=customer")
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, bp *benchProxy, withPlaceholder bool) {
		// Warm the verifier's cache and the vault's secret cache.
		req, st := bp.request(u, withPlaceholder)
		if resp := bp.proxy.pipeline(req, st); resp != nil {
			b.Fatalf("refused: %d %s", resp.StatusCode, resp.Header.Get(reason.Header))
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			req, st := bp.request(u, withPlaceholder)
			if resp := bp.proxy.pipeline(req, st); resp != nil {
				b.Fatalf("refused: %d %s", resp.StatusCode, resp.Header.Get(reason.Header))
			}
			if withPlaceholder && req.Header.Get("Authorization") != "Bearer "+stripeToken {
				b.Fatal("the placeholder was not replaced")
			}
		}
	}

	b.Run("inject+audit", func(b *testing.B) {
		run(b, newBenchProxy(b, 0), true)
	})
	b.Run("inject+audit-parallel", func(b *testing.B) {
		bp := newBenchProxy(b, 0)
		b.SetParallelism(4)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, st := bp.request(u, true)
				if resp := bp.proxy.pipeline(req, st); resp != nil {
					b.Errorf("refused: %d %s", resp.StatusCode, resp.Header.Get(reason.Header))
					return
				}
			}
		})
	})
	b.Run("no-placeholder", func(b *testing.B) {
		run(b, newBenchProxy(b, 0), false)
	})
	b.Run("no-placeholder-uncached", func(b *testing.B) {
		run(b, newBenchProxy(b, -1), false)
	})
	// tunnel: requests inside an intercepted tunnel, as agent SDKs send
	// them, without Proxy-Authorization (the CONNECT's passport applies),
	// from concurrent goroutines. cpu-µs/op is the process's CPU per
	// request, the audit writer's share included.
	b.Run("tunnel-inject+audit-parallel", func(b *testing.B) {
		bp := newBenchProxy(b, 0)
		vd, d := bp.proxy.verify(bp.token, "bot")
		if d != nil {
			b.Fatal(d.Detail)
		}
		cs := &connState{}
		cs.verified.Store(vd)
		b.SetParallelism(16)
		b.ReportAllocs()
		cpu0 := benchkit.ProcessCPU()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, st := bp.request(u, true)
				req.Header.Del("Proxy-Authorization")
				st.conn, st.p = cs, bp.proxy
				if resp := bp.proxy.pipeline(req, st); resp != nil {
					b.Errorf("refused: %d %s", resp.StatusCode, resp.Header.Get(reason.Header))
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64((benchkit.ProcessCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	})
}
