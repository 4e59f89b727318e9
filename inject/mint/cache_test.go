package mint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/testclock"
)

// countingKind mints "tok-N" tokens that live for life, or fails with err.
type countingKind struct {
	mints   atomic.Int64
	life    time.Duration
	now     func() time.Time
	mu      sync.Mutex
	err     error
	release chan struct{} // when set, mint waits for it
	aws     bool          // mint AWS sessions rather than values
}

func (k *countingKind) check(p json.RawMessage, _ []byte) (json.RawMessage, error) { return p, nil }
func (k *countingKind) ttl(json.RawMessage) time.Duration                          { return k.life }
func (k *countingKind) mint(ctx context.Context, _ Env, r Request) (Token, error) {
	if k.release != nil {
		select {
		case <-k.release:
		case <-ctx.Done():
			return Token{}, ctx.Err()
		}
	}
	k.mu.Lock()
	err := k.err
	k.mu.Unlock()
	if err != nil {
		return Token{}, err
	}
	n := k.mints.Add(1)
	exp := k.now().Add(k.life)
	if k.aws {
		return Token{AWS: &AWSSession{AccessKeyID: fmt.Sprintf("ASIA%d", n), SecretAccessKey: "s", SessionToken: "t", Expiry: exp}, Expiry: exp}, nil
	}
	return Token{Value: fmt.Appendf(nil, "tok-%d-%s", n, r.Agent), Expiry: exp}, nil
}

func (k *countingKind) fail(err error) {
	k.mu.Lock()
	k.err = err
	k.mu.Unlock()
}

const testKind = "test-kind"

func withKind(t *testing.T, k kind) {
	t.Helper()
	kinds[testKind] = k
	t.Cleanup(func() { delete(kinds, testKind) })
}

func load(agent string) Loader {
	return func(context.Context) (Request, error) {
		return Request{Kind: testKind, Root: []byte("root"), Agent: agent}, nil
	}
}

func TestCacheServesUntilRefreshMargin(t *testing.T) {
	clk := testclock.Start()
	k := &countingKind{life: 15 * time.Minute, now: clk.Now}
	withKind(t, k)
	c := NewCache(CacheOptions{Env: Env{Now: clk.Now}})
	defer c.Close()
	ctx := context.Background()
	key := Key{Credential: "aws", Version: 1, Agent: "a"}

	first, err := c.Get(ctx, key, load("a"))
	if err != nil || string(first.Value) != "tok-1-a" {
		t.Fatalf("Get = %q, %v", first.Value, err)
	}
	clk.Advance(12 * time.Minute) // 3 min left: not yet in the 2-minute margin
	if tok, _ := c.Get(ctx, key, load("a")); string(tok.Value) != "tok-1-a" || k.mints.Load() != 1 {
		t.Fatalf("within its life: %q after %d mints", tok.Value, k.mints.Load())
	}
	clk.Advance(90 * time.Second) // 90 s left: renewed in the background, old one served meanwhile
	if tok, _ := c.Get(ctx, key, load("a")); string(tok.Value) != "tok-1-a" {
		t.Fatalf("during renewal got %q, want the old token", tok.Value)
	}
	waitFor(t, func() bool { return k.mints.Load() == 2 })
	waitFor(t, func() bool {
		tok, _ := c.Get(ctx, key, load("a"))
		return string(tok.Value) == "tok-2-a"
	})
	if k.mints.Load() != 2 {
		t.Errorf("%d mints, want 2", k.mints.Load())
	}
}

func TestCacheKeysApart(t *testing.T) {
	clk := testclock.Start()
	k := &countingKind{life: time.Hour, now: clk.Now}
	withKind(t, k)
	c := NewCache(CacheOptions{Env: Env{Now: clk.Now}})
	defer c.Close()
	ctx := context.Background()
	for _, key := range []Key{{Credential: "c", Version: 1, Agent: "a"}, {Credential: "c", Version: 1, Agent: "b"},
		{Credential: "c", Version: 2, Agent: "a"}, {Credential: "c", Version: 1, Agent: "a", Narrow: "n"}} {
		if _, err := c.Get(ctx, key, load(key.Agent)); err != nil {
			t.Fatal(err)
		}
	}
	if k.mints.Load() != 4 || c.Len() != 4 {
		t.Fatalf("%d mints, %d entries; want 4 each", k.mints.Load(), c.Len())
	}
	if n := c.DropAgent("b"); n != 1 {
		t.Errorf("DropAgent dropped %d, want 1", n)
	}
	if n := c.Drop("c"); n != 3 {
		t.Errorf("Drop dropped %d, want 3", n)
	}
}

func TestCacheOneMintInFlight(t *testing.T) {
	clk := testclock.Start()
	k := &countingKind{life: time.Hour, now: clk.Now, release: make(chan struct{})}
	withKind(t, k)
	c := NewCache(CacheOptions{Env: Env{Now: clk.Now}})
	defer c.Close()
	key := Key{Credential: "c", Version: 1, Agent: "a"}
	var wg sync.WaitGroup
	got := make([]string, 20)
	for i := range got {
		wg.Go(func() {
			tok, err := c.Get(context.Background(), key, load("a"))
			if err != nil {
				t.Error(err)
			}
			got[i] = string(tok.Value)
		})
	}
	time.Sleep(50 * time.Millisecond) // let them pile up on the one flight
	close(k.release)
	wg.Wait()
	if k.mints.Load() != 1 {
		t.Errorf("%d mints for 20 concurrent callers, want 1", k.mints.Load())
	}
	for _, v := range got {
		if v != "tok-1-a" {
			t.Errorf("a caller got %q", v)
		}
	}
}

func TestCacheFailedRenewalKeepsServing(t *testing.T) {
	clk := testclock.Start()
	k := &countingKind{life: 10 * time.Minute, now: clk.Now}
	withKind(t, k)
	var mintErrs atomic.Int64
	c := NewCache(CacheOptions{Env: Env{Now: clk.Now}, OnMint: func(_ string, _ time.Duration, err error) {
		if err != nil {
			mintErrs.Add(1)
		}
	}})
	defer c.Close()
	ctx := context.Background()
	key := Key{Credential: "c", Version: 1, Agent: "a"}
	if _, err := c.Get(ctx, key, load("a")); err != nil {
		t.Fatal(err)
	}
	k.fail(errors.New("token endpoint down"))
	clk.Advance(9 * time.Minute) // in the margin: renewal fails, the old token is served
	if tok, err := c.Get(ctx, key, load("a")); err != nil || string(tok.Value) != "tok-1-a" {
		t.Fatalf("Get = %q, %v; want the old token", tok.Value, err)
	}
	waitFor(t, func() bool { return mintErrs.Load() == 1 })
	clk.Advance(56 * time.Second) // 4 s left: less than MinValidity
	_, err := c.Get(ctx, key, load("a"))
	if !errors.Is(err, ErrMint) {
		t.Fatalf("near expiry with the issuer down: %v, want ErrMint", err)
	}
	k.fail(nil)
	if tok, err := c.Get(ctx, key, load("a")); err != nil || string(tok.Value) != "tok-2-a" {
		t.Fatalf("after recovery: %q, %v", tok.Value, err)
	}
}

func TestCacheRefusesExpiredMint(t *testing.T) {
	clk := testclock.Start()
	k := &countingKind{life: -time.Second, now: clk.Now}
	withKind(t, k)
	c := NewCache(CacheOptions{Env: Env{Now: clk.Now}})
	defer c.Close()
	if _, err := c.Get(context.Background(), Key{Credential: "c"}, load("a")); !errors.Is(err, ErrMint) {
		t.Fatalf("an already expired token: %v, want ErrMint", err)
	}
}

// A full cache drops the token that expires first, not the oldest, and
// zeroes it.
func TestCacheEvictsAtMax(t *testing.T) {
	clk := testclock.Start()
	k := &countingKind{now: clk.Now}
	withKind(t, k)
	c := NewCache(CacheOptions{Env: Env{Now: clk.Now}, MaxEntries: 3})
	defer c.Close()
	held := map[string]*entry{}
	get := func(agent string, life time.Duration) {
		t.Helper()
		k.life = life
		key := Key{Credential: "c", Agent: agent}
		if _, err := c.Get(context.Background(), key, load(agent)); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		held[agent] = c.entries[key]
		c.mu.Unlock()
		clk.Advance(time.Second)
	}
	agents := func() []string {
		c.mu.Lock()
		defer c.mu.Unlock()
		var out []string
		for k := range c.entries {
			out = append(out, k.Agent)
		}
		slices.Sort(out)
		return out
	}
	get("a", time.Hour)
	get("b", 10*time.Minute)
	get("c", 30*time.Minute)
	get("d", time.Hour) // full: b expires first
	if got := agents(); !slices.Equal(got, []string{"a", "c", "d"}) {
		t.Fatalf("held %v after the fourth, want a, c and d", got)
	}
	if v := held["b"].tok.Value; v != nil && !bytes.Equal(v, make([]byte, len(v))) {
		t.Errorf("the evicted token was not zeroed: %q", v)
	}
	get("e", time.Hour) // then c
	if got := agents(); !slices.Equal(got, []string{"a", "d", "e"}) {
		t.Fatalf("held %v after the fifth, want a, d and e", got)
	}
}

// What the cache lets go of, it zeroes: token values are cleared and AWS
// sessions dropped, whether by Drop, by a new token in their place, by
// eviction or by Close.
func TestCacheZeroesWhatItDrops(t *testing.T) {
	clk := testclock.Start()
	k := &countingKind{life: 15 * time.Minute, now: clk.Now, aws: true}
	withKind(t, k)
	c := NewCache(CacheOptions{Env: Env{Now: clk.Now}, MaxEntries: 2})
	ctx := context.Background()
	held := func(key Key) *entry {
		t.Helper()
		tok, err := c.GetFresh(ctx, key, load(key.Agent))
		if err != nil || tok.AWS == nil {
			t.Fatalf("GetFresh = %+v, %v", tok, err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.entries[key]
	}
	zeroed := func(how string, e *entry) {
		t.Helper()
		c.mu.Lock()
		defer c.mu.Unlock()
		if e.tok.AWS != nil {
			t.Errorf("%s: the entry let go of still holds its AWS session", how)
		}
	}
	a, b := Key{Credential: "c", Agent: "a"}, Key{Credential: "c", Agent: "b"}
	dropped := held(a)
	c.Drop("c")
	zeroed("Drop", dropped)

	replaced := held(a)
	clk.Advance(14 * time.Minute) // in the margin: GetFresh mints again
	held(a)
	zeroed("replaced", replaced)

	evicted := held(a)
	clk.Advance(time.Second) // a expires first
	held(b)
	held(Key{Credential: "c", Agent: "c"})
	zeroed("evicted", evicted)

	closed := held(b)
	c.Close()
	zeroed("Close", closed)

	if got, err := c.Get(ctx, a, load("a")); err == nil || got.AWS != nil {
		t.Fatalf("Get after Close = %+v, %v", got, err)
	}
}

// A caller's token is its own: changing it changes nothing in the cache.
func TestCacheTokenIsTheCallers(t *testing.T) {
	clk := testclock.Start()
	k := &countingKind{life: time.Hour, now: clk.Now, aws: true}
	withKind(t, k)
	c := NewCache(CacheOptions{Env: Env{Now: clk.Now}})
	defer c.Close()
	key := Key{Credential: "c", Agent: "a"}
	first, err := c.Get(context.Background(), key, load("a"))
	if err != nil {
		t.Fatal(err)
	}
	first.AWS.SessionToken = ""
	again, err := c.Get(context.Background(), key, load("a"))
	if err != nil || again.AWS.SessionToken != "t" {
		t.Fatalf("Get after the caller changed its copy: %+v, %v", again.AWS, err)
	}
}

func TestCacheGetHonoursContext(t *testing.T) {
	k := &countingKind{life: time.Hour, now: time.Now, release: make(chan struct{})}
	withKind(t, k)
	c := NewCache(CacheOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx, Key{Credential: "c"}, load("a")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get = %v, want the caller's deadline", err)
	}
	close(k.release)
	c.Close()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestCacheGetFreshRenewsInTheMargin(t *testing.T) {
	clk := testclock.Start()
	k := &countingKind{life: 15 * time.Minute, now: clk.Now}
	withKind(t, k)
	c := NewCache(CacheOptions{Env: Env{Now: clk.Now}})
	defer c.Close()
	ctx := context.Background()
	key := Key{Credential: "c", Version: 1, Agent: "a"}
	if _, err := c.GetFresh(ctx, key, load("a")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * time.Minute) // 5 min left: outside the margin, kept
	if tok, _ := c.GetFresh(ctx, key, load("a")); string(tok.Value) != "tok-1-a" {
		t.Fatalf("outside the margin: %q", tok.Value)
	}
	clk.Advance(4 * time.Minute) // 1 min left: a lease must not get it
	tok, err := c.GetFresh(ctx, key, load("a"))
	if err != nil || string(tok.Value) != "tok-2-a" || !tok.Expiry.Equal(clk.Now().Add(15*time.Minute)) {
		t.Fatalf("in the margin: %q expiring %s, %v; want a fresh token", tok.Value, tok.Expiry, err)
	}
	if got, _ := c.Get(ctx, key, load("a")); string(got.Value) != "tok-2-a" || k.mints.Load() != 2 {
		t.Fatalf("Get after GetFresh: %q after %d mints", got.Value, k.mints.Load())
	}
}

// A revocation while a mint is in flight is not undone by it: the waiting
// caller gets its token, the cache keeps none.
func TestCacheDropDuringMint(t *testing.T) {
	clk := testclock.Start()
	k := &countingKind{life: time.Hour, now: clk.Now, release: make(chan struct{})}
	withKind(t, k)
	c := NewCache(CacheOptions{Env: Env{Now: clk.Now}})
	defer c.Close()
	key := Key{Credential: "c", Version: 1, Agent: "a"}
	done := make(chan Token)
	go func() {
		tok, err := c.Get(context.Background(), key, load("a"))
		if err != nil {
			t.Error(err)
		}
		done <- tok
	}()
	time.Sleep(20 * time.Millisecond) // the mint waits for release
	c.DropAgent("a")
	close(k.release)
	if tok := <-done; string(tok.Value) != "tok-1-a" {
		t.Fatalf("the waiting caller got %q", tok.Value)
	}
	if c.Len() != 0 {
		t.Fatalf("the cache kept a token minted across a revocation of its agent")
	}
}

// A lease taken after a failed renewal must not get the token the renewal
// was for: the retry schedule a failure sets is not how fresh it is.
func TestCacheGetFreshAfterFailedRenewal(t *testing.T) {
	clk := testclock.Start()
	k := &countingKind{life: 15 * time.Minute, now: clk.Now}
	withKind(t, k)
	var mintErrs atomic.Int64
	c := NewCache(CacheOptions{Env: Env{Now: clk.Now}, OnMint: func(_ string, _ time.Duration, err error) {
		if err != nil {
			mintErrs.Add(1)
		}
	}})
	defer c.Close()
	ctx := context.Background()
	key := Key{Credential: "c", Version: 1, Agent: "a"}
	if _, err := c.Get(ctx, key, load("a")); err != nil {
		t.Fatal(err)
	}
	k.fail(errors.New("token endpoint down"))
	clk.Advance(14 * time.Minute) // 1 min left: in the 2-minute margin
	if tok, err := c.Get(ctx, key, load("a")); err != nil || string(tok.Value) != "tok-1-a" {
		t.Fatalf("Get = %q, %v; want the old token while it renews", tok.Value, err)
	}
	waitFor(t, func() bool { return mintErrs.Load() == 1 })
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return !c.entries[key].refreshing })
	k.fail(nil)
	tok, err := c.GetFresh(ctx, key, load("a"))
	if err != nil || string(tok.Value) != "tok-2-a" {
		t.Fatalf("GetFresh after a failed renewal = %q, %v; want a token minted now", tok.Value, err)
	}
}

// A token that the issuer says expires within MinValidity is refused at
// once: it would be served to no one, or to a caller it expires under.
func TestCacheRefusesMintWithinMinValidity(t *testing.T) {
	clk := testclock.Start()
	k := &countingKind{life: 3 * time.Second, now: clk.Now}
	withKind(t, k)
	var mintErrs atomic.Int64
	c := NewCache(CacheOptions{Env: Env{Now: clk.Now}, OnMint: func(_ string, _ time.Duration, err error) {
		if err != nil {
			mintErrs.Add(1)
		}
	}})
	defer c.Close()
	tok, err := c.Get(context.Background(), Key{Credential: "c"}, load("a"))
	if !errors.Is(err, ErrMint) || tok.Value != nil || c.Len() != 0 {
		t.Fatalf("a token with 3 s left = %q, %v (%d held); want ErrMint and nothing kept", tok.Value, err, c.Len())
	}
	for _, want := range []string{"expires at", "5s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if mintErrs.Load() != 1 {
		t.Errorf("OnMint saw %d failures, want 1", mintErrs.Load())
	}
}

// A failed renewal leaves alone an entry stored for its key after it
// started (the credential dropped and minted again meanwhile).
func TestCacheFailedRenewalLeavesReplacement(t *testing.T) {
	clk := testclock.Start()
	k := &countingKind{life: 10 * time.Minute, now: clk.Now}
	withKind(t, k)
	c := NewCache(CacheOptions{Env: Env{Now: clk.Now}})
	defer c.Close()
	ctx := context.Background()
	key := Key{Credential: "c", Version: 1, Agent: "a"}
	if _, err := c.Get(ctx, key, load("a")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(9 * time.Minute) // in the margin: the next Get renews
	started, hold := make(chan struct{}), make(chan struct{})
	blocked := func(context.Context) (Request, error) {
		close(started)
		<-hold
		return Request{}, errors.New("vault unreachable")
	}
	if _, err := c.Get(ctx, key, blocked); err != nil {
		t.Fatal(err)
	}
	<-started
	c.Drop("c")
	if tok, err := c.mint(ctx, key, load("a")); err != nil || string(tok.Value) != "tok-2-a" {
		t.Fatalf("replacement = %q, %v", tok.Value, err)
	}
	c.mu.Lock()
	repl := c.entries[key]
	want := *repl
	c.mu.Unlock()
	close(hold)
	c.wg.Wait() // the renewal has given up
	c.mu.Lock()
	defer c.mu.Unlock()
	if got := c.entries[key]; got != repl || got.refreshAt != want.refreshAt || got.refreshing != want.refreshing {
		t.Fatalf("the failed renewal changed the replacement: refresh at %s (want %s), refreshing %v",
			got.refreshAt, want.refreshAt, got.refreshing)
	}
}
