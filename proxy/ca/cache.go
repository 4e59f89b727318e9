package ca

import (
	"container/list"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

const (
	// DefaultCacheSize is how many leaves a LeafCache keeps by default.
	DefaultCacheSize = 1024

	// DefaultRenewBefore is how close to its expiry a cached leaf is
	// replaced by a new one, so no handshake serves a leaf about to expire.
	DefaultRenewBefore = time.Hour
)

// CacheOptions tune a LeafCache. The zero value gives the defaults.
type CacheOptions struct {
	// Size is the most leaves kept; zero means DefaultCacheSize.
	Size int
	// RenewBefore is how close to NotAfter a leaf is minted again; zero
	// means DefaultRenewBefore.
	RenewBefore time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// LeafCache is a bounded cache of leaf certificates keyed by host name,
// least recently used first out. A leaf within RenewBefore of its expiry is
// treated as absent. Concurrent fetches of a host that is not cached share a
// single call of gen. It implements goproxy's CertStorage and is safe for
// concurrent use.
type LeafCache struct {
	size        int
	renewBefore time.Duration
	now         func() time.Time

	flight singleflight.Group

	mu    sync.Mutex
	order *list.List // of *cacheEntry, most recently used at the front
	items map[string]*list.Element
}

type cacheEntry struct {
	host     string
	cert     *tls.Certificate
	notAfter time.Time
}

// NewLeafCache returns an empty cache.
func NewLeafCache(opts CacheOptions) *LeafCache {
	lc := &LeafCache{
		size:        opts.Size,
		renewBefore: opts.RenewBefore,
		now:         opts.Now,
		order:       list.New(),
		items:       make(map[string]*list.Element),
	}
	if lc.size <= 0 {
		lc.size = DefaultCacheSize
	}
	if lc.renewBefore <= 0 {
		lc.renewBefore = DefaultRenewBefore
	}
	if lc.now == nil {
		lc.now = time.Now
	}
	return lc
}

// Fetch returns the cached leaf for hostname, or calls gen, caches its
// result and returns it. Host names are compared case-insensitively and
// without a trailing dot. A leaf that gen returns already close to expiry is
// returned but not cached.
func (lc *LeafCache) Fetch(hostname string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	key := cacheKey(hostname)
	if cert := lc.get(key); cert != nil {
		return cert, nil
	}
	v, err, _ := lc.flight.Do(key, func() (any, error) {
		// Another flight for this key may have finished between the lookup
		// above and this one starting: look again so gen runs once.
		if cert := lc.get(key); cert != nil {
			return cert, nil
		}
		cert, err := gen()
		if err != nil {
			return nil, err
		}
		notAfter, err := leafNotAfter(cert)
		if err != nil {
			return nil, fmt.Errorf("ca: cache leaf for %q: %w", hostname, err)
		}
		lc.put(key, cert, notAfter)
		return cert, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*tls.Certificate), nil
}

// Len reports how many leaves are cached, fresh or not.
func (lc *LeafCache) Len() int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.order.Len()
}

func (lc *LeafCache) get(key string) *tls.Certificate {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	el, ok := lc.items[key]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !lc.fresh(e.notAfter) {
		lc.order.Remove(el)
		delete(lc.items, key)
		return nil
	}
	lc.order.MoveToFront(el)
	return e.cert
}

func (lc *LeafCache) put(key string, cert *tls.Certificate, notAfter time.Time) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if !lc.fresh(notAfter) {
		return
	}
	if el, ok := lc.items[key]; ok {
		el.Value = &cacheEntry{host: key, cert: cert, notAfter: notAfter}
		lc.order.MoveToFront(el)
		return
	}
	lc.items[key] = lc.order.PushFront(&cacheEntry{host: key, cert: cert, notAfter: notAfter})
	for lc.order.Len() > lc.size {
		oldest := lc.order.Back()
		lc.order.Remove(oldest)
		delete(lc.items, oldest.Value.(*cacheEntry).host)
	}
}

func (lc *LeafCache) fresh(notAfter time.Time) bool {
	return lc.now().Add(lc.renewBefore).Before(notAfter)
}

func cacheKey(hostname string) string {
	return strings.TrimSuffix(strings.ToLower(hostname), ".")
}

func leafNotAfter(cert *tls.Certificate) (time.Time, error) {
	if cert == nil || len(cert.Certificate) == 0 {
		return time.Time{}, errors.New("generator returned no certificate")
	}
	if cert.Leaf != nil {
		return cert.Leaf.NotAfter, nil
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return time.Time{}, err
	}
	return leaf.NotAfter, nil
}
