package passport

import (
	"crypto/sha256"
	"errors"
	"testing"
	"time"
)

func TestCacheHitStillSeesRevocation(t *testing.T) {
	f, store := newStoreFixture(t)
	tok, c := f.issue(t, IssueRequest{Agent: "cached"})
	for i := 0; i < 2; i++ {
		if _, err := f.verify.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if !f.verify.cache.has(tok) {
		t.Fatal("token not cached after Verify")
	}
	if _, err := store.RevokeAgent(c.Subject, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.verify.Verify(tok); !errors.Is(err, ErrRevoked) {
		t.Fatalf("cached token after agent revocation: err = %v, want ErrRevoked", err)
	}
}

func TestCacheExpiredEntryNotServed(t *testing.T) {
	f := newFixture(t, nil)
	tok, _ := f.issue(t, IssueRequest{TTL: time.Minute})
	if _, err := f.verify.Verify(tok); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute + DefaultLeeway)
	if _, err := f.verify.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("err = %v, want ErrExpired", err)
	}
	if f.verify.cache.has(tok) {
		t.Fatal("expired entry kept in the cache")
	}
}

func TestCacheBoundedLRU(t *testing.T) {
	f := newFixture(t, nil)
	v, err := NewVerifier(VerifierOptions{Keys: f.keys.JWKS(f.clock.Now()), Now: f.clock.Now, CacheSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := f.issue(t, IssueRequest{Agent: "a"})
	b, _ := f.issue(t, IssueRequest{Agent: "b"})
	c, _ := f.issue(t, IssueRequest{Agent: "c"})
	for _, tok := range []string{a, b, a, c} { // b is least recently used when c arrives
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if v.cache.len() != 2 || !v.cache.has(a) || v.cache.has(b) || !v.cache.has(c) {
		t.Fatalf("cache holds a=%v b=%v c=%v (len %d), want a and c", v.cache.has(a), v.cache.has(b), v.cache.has(c), v.cache.len())
	}
	// Failed verifications are not cached.
	if _, err := v.Verify(a + "x"); err == nil {
		t.Fatal("tampered token verified")
	}
	if v.cache.has(a + "x") {
		t.Fatal("failed token cached")
	}

	off, err := NewVerifier(VerifierOptions{Keys: f.keys.JWKS(f.clock.Now()), Now: f.clock.Now, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := off.Verify(a); err != nil || off.cache != nil {
		t.Fatalf("cacheless verifier: %v, cache %v", err, off.cache)
	}
}

func TestCachedClaimsAreCopies(t *testing.T) {
	f := newFixture(t, nil)
	tok, _ := f.issue(t, IssueRequest{Agent: "a"})
	c1, err := f.verify.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	c1.Subject = "mallory"
	c2, err := f.verify.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Subject != "a" {
		t.Fatalf("cache served a caller's modification: %q", c2.Subject)
	}
}

func (c *tokenCache) has(token string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.items[sha256.Sum256([]byte(token))]
	return ok
}
