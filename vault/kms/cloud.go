package kms

import (
	"errors"
	"fmt"
	"sync"
)

// cloudFormatV1 is the first byte of the plaintext the cloud backends hand
// to their service: version || plaintext. It lets an empty plaintext be
// wrapped (AWS rejects empty input) and leaves room for a later format.
const cloudFormatV1 = 0x01

func cloudPayload(plaintext []byte) []byte {
	p := make([]byte, 1+len(plaintext))
	p[0] = cloudFormatV1
	copy(p[1:], plaintext)
	return p
}

func cloudOpen(uri string, payload []byte) ([]byte, error) {
	if len(payload) == 0 || payload[0] != cloudFormatV1 {
		clear(payload)
		return nil, opError(uri, "unwrap", ErrIntegrity, errors.New("unknown wrapped format version"))
	}
	return payload[1:], nil
}

// closer makes Close idempotent and lets calls fail after it.
type closer struct {
	mu     sync.RWMutex
	closed bool
}

func (c *closer) isClosed() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.closed
}

// close marks the closer closed and reports whether this call did it.
func (c *closer) close() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.closed = true
	return true
}

func invalidURI(uri, format string, args ...any) error {
	return opError(uri, "open", ErrInvalidURI, fmt.Errorf(format, args...))
}
