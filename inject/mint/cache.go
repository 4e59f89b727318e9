package mint

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Key names what one mint is for: a credential version, minted for one
// agent under one narrowing (passport.Narrowing.Key).
type Key struct {
	Credential string
	Version    int
	// Created is the version's creation time (Unix nanoseconds): a
	// credential removed and stored again starts at version 1 again.
	Created int64
	Agent   string
	Narrow  string
}

func (k Key) flight() string {
	return fmt.Sprintf("%s\x00%d\x00%d\x00%s\x00%s", k.Credential, k.Version, k.Created, k.Agent, k.Narrow)
}

// Cache defaults.
const (
	DefaultMaxEntries  = 4096
	DefaultMinValidity = 5 * time.Second
	// maxRefreshMargin is the most a token is renewed ahead of its expiry.
	maxRefreshMargin = 2 * time.Minute
	// mintTimeout bounds a mint no caller waits for (a refresh).
	mintTimeout = 30 * time.Second
)

// CacheOptions configure a Cache.
type CacheOptions struct {
	Env Env
	// MaxEntries bounds the tokens held; zero means DefaultMaxEntries.
	MaxEntries int
	// MinValidity: a token that expires sooner than this is never served
	// (it could expire on its way); zero means DefaultMinValidity.
	MinValidity time.Duration
	// OnMint, when set, is told of every mint: its kind, how long it took
	// and its error.
	OnMint func(kind string, took time.Duration, err error)
}

// Cache holds minted tokens until shortly before they expire: a token is
// renewed in the background once it has less than a quarter of its life
// (at most two minutes) left, while the old one is still served; a failed
// renewal leaves the old token in use until it is too close to expiry.
// One mint is in flight per key. It is safe for concurrent use.
type Cache struct {
	opts   CacheOptions
	flight singleflight.Group

	mu      sync.Mutex
	entries map[Key]*entry
	// gen counts drops: a mint that started before one does not store
	// what it minted, so a revocation is not undone by a mint in flight.
	gen    uint64
	closed bool
	wg     sync.WaitGroup
	stop   chan struct{}
}

type entry struct {
	tok Token
	// freshUntil is the token's expiry less its renewal margin: GetFresh
	// serves it only before then. Unlike refreshAt it never moves.
	freshUntil time.Time
	// refreshAt is when a background renewal starts: freshUntil at
	// first, later after a failed renewal.
	refreshAt time.Time
	// refreshing is set while a background renewal runs.
	refreshing bool
}

// NewCache returns an empty cache. Close stops its background renewals.
func NewCache(opts CacheOptions) *Cache {
	opts.Env = opts.Env.withDefaults()
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.MinValidity <= 0 {
		opts.MinValidity = DefaultMinValidity
	}
	return &Cache{opts: opts, entries: map[Key]*entry{}, stop: make(chan struct{})}
}

// Loader reads what a mint of a key needs (the vault entry and its root
// material); it is called only when the cache mints.
type Loader func(ctx context.Context) (Request, error)

// Get returns a token for key that is valid for at least MinValidity,
// from the cache or minted with what load returns. The token's bytes are
// the caller's.
func (c *Cache) Get(ctx context.Context, key Key, load Loader) (Token, error) {
	return c.get(ctx, key, load, false)
}

// GetFresh is Get for a caller that keeps what it gets for a while (a
// lease handed to a sidecar) rather than using it at once: a token in its
// renewal margin is renewed before it is returned, so that the caller
// always gets one with at least the margin left.
func (c *Cache) GetFresh(ctx context.Context, key Key, load Loader) (Token, error) {
	return c.get(ctx, key, load, true)
}

func (c *Cache) get(ctx context.Context, key Key, load Loader, fresh bool) (Token, error) {
	now := c.opts.Env.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Token{}, fmt.Errorf("%w: the credential cache is closed", ErrMint)
	}
	e := c.entries[key]
	if e != nil && fresh && !now.Before(e.freshUntil) {
		e = nil // renew it now, below
	}
	if e != nil && now.Add(c.opts.MinValidity).Before(e.tok.Expiry) {
		tok := copyToken(e.tok)
		if !now.Before(e.refreshAt) && !e.refreshing {
			e.refreshing = true
			c.wg.Add(1)
			go c.refresh(key, e, load)
		}
		c.mu.Unlock()
		return tok, nil
	}
	c.mu.Unlock()

	ch := c.flight.DoChan(key.flight(), func() (any, error) {
		// Close waits for mints too: none outlives the cache.
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return Token{}, fmt.Errorf("%w: the credential cache is closed", ErrMint)
		}
		c.wg.Add(1)
		c.mu.Unlock()
		defer c.wg.Done()
		// The mint is shared: one caller giving up must not fail the
		// others.
		mctx, cancel := c.mintContext(context.WithoutCancel(ctx))
		defer cancel()
		return c.mint(mctx, key, load)
	})
	select {
	case <-ctx.Done():
		return Token{}, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return Token{}, r.Err
		}
		return copyToken(r.Val.(Token)), nil
	}
}

// refresh renews key's token, held in e, in the background.
func (c *Cache) refresh(key Key, e *entry, load Loader) {
	defer c.wg.Done()
	ctx, cancel := c.mintContext(context.Background())
	defer cancel()
	_, err, _ := c.flight.Do(key.flight(), func() (any, error) { return c.mint(ctx, key, load) })
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[key] != e {
		// Stored anew, or dropped, meanwhile: that entry has its own
		// schedule.
		return
	}
	// Still e: the renewal failed, or a drop of another credential kept
	// its token from being stored. Either way e may renew again.
	e.refreshing = false
	if err != nil {
		// Try again after a tenth of what is left, not on the very next
		// request.
		now := c.opts.Env.Now()
		e.refreshAt = now.Add(max(e.tok.Expiry.Sub(now)/10, time.Second))
	}
}

// mintContext bounds a mint by mintTimeout and by Close.
func (c *Cache) mintContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, mintTimeout)
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// mint loads, mints and stores key's token.
func (c *Cache) mint(ctx context.Context, key Key, load Loader) (Token, error) {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	req, err := load(ctx)
	if err != nil {
		return Token{}, err
	}
	start := c.opts.Env.Now()
	tok, err := Mint(ctx, c.opts.Env, req)
	clear(req.Root)
	if err == nil {
		err = c.checkValidity(req.Kind, tok)
	}
	if c.opts.OnMint != nil {
		c.opts.OnMint(req.Kind, c.opts.Env.Now().Sub(start), err)
	}
	if err != nil {
		return Token{}, err
	}
	life := tok.Expiry.Sub(start)
	margin := min(life/4, maxRefreshMargin)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		tok.clear()
		return Token{}, fmt.Errorf("%w: the credential cache is closed", ErrMint)
	}
	if c.gen != gen {
		// Dropped meanwhile (a revocation, a new version): the callers
		// waiting get it, the cache does not keep it.
		return tok, nil
	}
	for k, e := range c.entries {
		if k != key && !start.Before(e.tok.Expiry) {
			e.tok.clear()
			delete(c.entries, k)
		}
	}
	if old := c.entries[key]; old != nil {
		old.tok.clear()
	} else if len(c.entries) >= c.opts.MaxEntries {
		c.evictLocked()
	}
	fresh := tok.Expiry.Add(-margin)
	c.entries[key] = &entry{tok: tok, freshUntil: fresh, refreshAt: fresh}
	return copyToken(tok), nil
}

// checkValidity refuses, and zeroes, a token just minted that expires
// within MinValidity: Get would never serve it, and a caller handed it
// could see it expire on its way.
func (c *Cache) checkValidity(kind string, tok Token) error {
	now := c.opts.Env.Now()
	if now.Add(c.opts.MinValidity).Before(tok.Expiry) {
		return nil
	}
	tok.clear()
	return fmt.Errorf("%w: %s: the issuer returned a credential that expires at %s, less than %s from now",
		ErrMint, kind, tok.Expiry.UTC().Format(time.RFC3339), c.opts.MinValidity)
}

// evictLocked drops the token that expires first, zeroing it.
func (c *Cache) evictLocked() {
	var victim Key
	var at time.Time
	for k, e := range c.entries {
		if at.IsZero() || e.tok.Expiry.Before(at) {
			victim, at = k, e.tok.Expiry
		}
	}
	c.entries[victim].tok.clear()
	delete(c.entries, victim)
}

// Drop forgets every token of credential (after it changed or was
// removed), zeroing their values and letting go of their AWS sessions.
func (c *Cache) Drop(credential string) int {
	return c.dropIf(func(k Key) bool { return k.Credential == credential })
}

// DropAgent forgets every token minted for agent (after its revocation),
// as Drop does.
func (c *Cache) DropAgent(agent string) int {
	return c.dropIf(func(k Key) bool { return k.Agent == agent })
}

// DropAll forgets every token, as Drop does.
func (c *Cache) DropAll() int { return c.dropIf(func(Key) bool { return true }) }

func (c *Cache) dropIf(f func(Key) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	n := 0
	for k, e := range c.entries {
		if f(k) {
			e.tok.clear()
			delete(c.entries, k)
			n++
		}
	}
	return n
}

// Len is the number of tokens held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Close stops background renewals, waits for them, and forgets every
// token as Drop does. It is idempotent.
func (c *Cache) Close() {
	// Every wg.Add happens under mu while the cache is open, so none
	// races the Wait below.
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.stop)
	}
	c.mu.Unlock()
	c.wg.Wait()
	c.DropAll()
}

// copyToken is t for a caller, sharing nothing with what the cache holds.
func copyToken(t Token) Token {
	t.Value = append([]byte(nil), t.Value...)
	if t.AWS != nil {
		s := *t.AWS
		t.AWS = &s
	}
	return t
}
