package ca

import (
	"crypto/tls"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/stackctl/stack/internal/testclock"
)

// LeafCache plugs into goproxy as its CertStore.
var _ goproxy.CertStorage = (*LeafCache)(nil)

// counter wraps a CA's Leaf as a generator and counts its calls per host.
type counter struct {
	ca    *CA
	mu    sync.Mutex
	calls map[string]int
}

func newCounter(c *CA) *counter { return &counter{ca: c, calls: map[string]int{}} }

func (g *counter) gen(host string) func() (*tls.Certificate, error) {
	return func() (*tls.Certificate, error) {
		g.mu.Lock()
		g.calls[host]++
		g.mu.Unlock()
		return g.ca.Leaf(host)
	}
}

func (g *counter) count(host string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[host]
}

func TestCacheHit(t *testing.T) {
	c := mustGenerate(t, time.Now())
	g := newCounter(c)
	cache := NewLeafCache(CacheOptions{})
	first, err := cache.Fetch("api.example.test", g.gen("api.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	for _, spelling := range []string{"api.example.test", "API.example.test", "api.example.test."} {
		again, err := cache.Fetch(spelling, g.gen("api.example.test"))
		if err != nil {
			t.Fatal(err)
		}
		if again != first {
			t.Errorf("Fetch(%q) minted a new leaf", spelling)
		}
	}
	if n := g.count("api.example.test"); n != 1 {
		t.Errorf("gen called %d times, want 1", n)
	}
}

func TestCacheConcurrentFetchMintsOnce(t *testing.T) {
	c := mustGenerate(t, time.Now())
	var calls atomic.Int32
	gen := func() (*tls.Certificate, error) {
		calls.Add(1)
		return c.Leaf("api.example.test")
	}
	cache := NewLeafCache(CacheOptions{})
	const n = 100
	start := make(chan struct{})
	results := make([]*tls.Certificate, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = cache.Fetch("api.example.test", gen)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("fetch %d: %v", i, errs[i])
		}
		if results[i] != results[0] {
			t.Fatalf("fetch %d got a different leaf", i)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("gen called %d times under %d concurrent fetches, want 1", got, n)
	}
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := mustGenerate(t, time.Now())
	g := newCounter(c)
	cache := NewLeafCache(CacheOptions{Size: 2})
	fetch := func(host string) {
		t.Helper()
		if _, err := cache.Fetch(host, g.gen(host)); err != nil {
			t.Fatal(err)
		}
	}
	fetch("a.test")
	fetch("b.test")
	fetch("a.test") // a is now the most recently used
	fetch("c.test") // evicts b
	if cache.Len() != 2 {
		t.Errorf("Len = %d, want 2", cache.Len())
	}
	fetch("a.test")
	fetch("c.test")
	if g.count("a.test") != 1 || g.count("c.test") != 1 {
		t.Errorf("a or c was evicted: calls a=%d c=%d", g.count("a.test"), g.count("c.test"))
	}
	fetch("b.test")
	if g.count("b.test") != 2 {
		t.Errorf("b was not evicted: %d calls", g.count("b.test"))
	}
}

func TestCacheRenewsNearExpiry(t *testing.T) {
	clock := testclock.New(epoch)
	c := mustGenerate(t, epoch)
	c.Now = clock.Now
	g := newCounter(c)
	cache := NewLeafCache(CacheOptions{Now: clock.Now, RenewBefore: time.Hour})
	first, err := cache.Fetch("a.test", g.gen("a.test"))
	if err != nil {
		t.Fatal(err)
	}
	clock.Set(first.Leaf.NotAfter.Add(-61 * time.Minute))
	if again, _ := cache.Fetch("a.test", g.gen("a.test")); again != first {
		t.Error("leaf renewed more than RenewBefore ahead of expiry")
	}
	clock.Set(first.Leaf.NotAfter.Add(-59 * time.Minute))
	renewed, err := cache.Fetch("a.test", g.gen("a.test"))
	if err != nil {
		t.Fatal(err)
	}
	if renewed == first || g.count("a.test") != 2 {
		t.Fatal("leaf within RenewBefore of expiry was served from the cache")
	}
	if !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Errorf("renewed leaf expires %v, not after %v", renewed.Leaf.NotAfter, first.Leaf.NotAfter)
	}
}

// A leaf that is already near expiry when minted (the CA itself is about to
// expire) is served but never cached.
func TestCacheDoesNotKeepShortLivedLeaf(t *testing.T) {
	clock := testclock.New(epoch)
	c, err := GenerateWith(epoch, "dying", GenerateOptions{Validity: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c.Now = clock.Now
	g := newCounter(c)
	cache := NewLeafCache(CacheOptions{Now: clock.Now})
	for range 2 {
		if _, err := cache.Fetch("a.test", g.gen("a.test")); err != nil {
			t.Fatal(err)
		}
	}
	if g.count("a.test") != 2 || cache.Len() != 0 {
		t.Errorf("calls = %d, Len = %d; want 2, 0", g.count("a.test"), cache.Len())
	}
}

func TestCacheDoesNotKeepErrors(t *testing.T) {
	cache := NewLeafCache(CacheOptions{})
	boom := errors.New("boom")
	calls := 0
	gen := func() (*tls.Certificate, error) { calls++; return nil, boom }
	for range 2 {
		if _, err := cache.Fetch("a.test", gen); !errors.Is(err, boom) {
			t.Fatalf("err = %v, want boom", err)
		}
	}
	if calls != 2 {
		t.Errorf("gen called %d times, want 2", calls)
	}
	if _, err := cache.Fetch("a.test", func() (*tls.Certificate, error) { return &tls.Certificate{}, nil }); err == nil {
		t.Error("empty certificate accepted")
	}
}

func BenchmarkLeaf(b *testing.B) {
	c := mustGenerate(b, time.Now())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Leaf("api.example.test"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCacheHit(b *testing.B) {
	c := mustGenerate(b, time.Now())
	cache := NewLeafCache(CacheOptions{})
	gen := func() (*tls.Certificate, error) { return c.Leaf("api.example.test") }
	if _, err := cache.Fetch("api.example.test", gen); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := cache.Fetch("api.example.test", gen); err != nil {
				b.Fatal(err)
			}
		}
	})
}
