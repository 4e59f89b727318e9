package store

import (
	"context"
	"sync"
)

// closing is what both stores keep to refuse calls once Close has begun
// and to end their watchers.
type closing struct {
	mu     sync.Mutex // guards closed; a store may guard more under it
	closed bool
	done   chan struct{} // closed by shut
}

// shut marks the store closed and ends its watchers' waits.
func (c *closing) shut() {
	c.mu.Lock()
	c.closed = true
	close(c.done)
	c.mu.Unlock()
}

// check is what every method checks before it starts.
func (c *closing) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return nil
}

// checkKey is check for the methods that take a key.
func (c *closing) checkKey(ctx context.Context, key string) error {
	if key == "" {
		return ErrInvalidKey
	}
	return c.check(ctx)
}

// send hands a watcher its events. It stops instead when the watcher's
// ctx ends (stop, nil) or the store closes (stop, ErrClosed).
func (c *closing) send(ctx context.Context, ch chan<- WatchResponse, evs []Event) (stop bool, err error) {
	select {
	case ch <- WatchResponse{Events: evs}:
		return false, nil
	case <-ctx.Done():
		return true, nil
	case <-c.done:
		return true, ErrClosed
	}
}
