package passport

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"
)

// tokenCache remembers verified tokens by the SHA-256 of the token, so a
// token seen before skips parsing and the signature check. It is a bounded
// LRU; an entry is dropped when looked up after its expiry and, like any
// other, when it falls off the end.
type tokenCache struct {
	mu    sync.Mutex
	size  int
	ll    *list.List // front = most recently used
	items map[[sha256.Size]byte]*list.Element
}

type cacheEntry struct {
	key     [sha256.Size]byte
	claims  *Claims
	expires time.Time // exp + leeway
}

func newTokenCache(size int) *tokenCache {
	return &tokenCache{size: size, ll: list.New(), items: make(map[[sha256.Size]byte]*list.Element)}
}

// get returns the claims of a cached token that has not expired at now.
func (c *tokenCache) get(key [sha256.Size]byte, now time.Time) (*Claims, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.items, key)
		return nil, false
	}
	c.ll.MoveToFront(el)
	return e.claims, true
}

func (c *tokenCache) put(key [sha256.Size]byte, claims *Claims, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value.(*cacheEntry).claims = claims
		el.Value.(*cacheEntry).expires = expires
		c.ll.MoveToFront(el)
		return
	}
	c.items[key] = c.ll.PushFront(&cacheEntry{key: key, claims: claims, expires: expires})
	for c.ll.Len() > c.size {
		oldest := c.ll.Back()
		c.ll.Remove(oldest)
		delete(c.items, oldest.Value.(*cacheEntry).key)
	}
}

func (c *tokenCache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ll.Init()
	clear(c.items)
}

func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
