package vault

import (
	"container/list"
	"sync"
	"time"
)

// cache holds decrypted secrets for a TTL, evicting the least recently
// used beyond max entries. Evicted and expired secrets are zeroed.
type cache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	ll *list.List // front = most recently used
	m  map[string]*list.Element
}

type cacheEntry struct {
	name    string
	cred    *Credential
	secret  []byte
	expires time.Time
}

func newCache(ttl time.Duration, max int, now func() time.Time) *cache {
	return &cache{ttl: ttl, max: max, now: now, ll: list.New(), m: map[string]*list.Element{}}
}

func (c *cache) enabled() bool { return c.ttl > 0 && c.max > 0 }

// get returns copies of a live entry.
func (c *cache) get(name string) (*Credential, []byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.liveLocked(name)
	if e == nil {
		return nil, nil, false
	}
	return e.cred.clone(), append([]byte(nil), e.secret...), true
}

// secret is get without the credential's metadata (but its kind), which
// the request path does not need and get copies.
func (c *cache) secret(name string) ([]byte, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.liveLocked(name)
	if e == nil {
		return nil, "", false
	}
	return append([]byte(nil), e.secret...), e.cred.Kind, true
}

// liveLocked returns name's entry, marked most recently used, or nil when
// there is none or it has expired (and is dropped).
func (c *cache) liveLocked(name string) *cacheEntry {
	if !c.enabled() {
		return nil
	}
	el, ok := c.m[name]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.removeElement(el)
		return nil
	}
	c.ll.MoveToFront(el)
	return e
}

// put stores copies of cred and secret.
func (c *cache) put(cred *Credential, secret []byte) {
	if !c.enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[cred.Name]; ok {
		c.removeElement(el)
	}
	e := &cacheEntry{name: cred.Name, cred: cred.clone(), secret: append([]byte(nil), secret...), expires: c.now().Add(c.ttl)}
	c.m[cred.Name] = c.ll.PushFront(e)
	for c.ll.Len() > c.max {
		c.removeElement(c.ll.Back())
	}
}

func (c *cache) remove(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[name]; ok {
		c.removeElement(el)
	}
}

func (c *cache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.ll.Front(); el != nil; el = c.ll.Front() {
		c.removeElement(el)
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

func (c *cache) removeElement(el *list.Element) {
	e := el.Value.(*cacheEntry)
	clear(e.secret)
	c.ll.Remove(el)
	delete(c.m, e.name)
}
