package proxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Write coalescing on agent connections.
//
// An intercepted response leaves as at least two TLS records: goproxy
// writes its head, then its body (and a chunked body as three writes per
// chunk). Each is a write system call on the proxy's side and, when they
// arrive apart, another wakeup and read on the agent's. A coalescingConn
// holds what is written while nobody reads the connection and sends it all
// at once when the connection is next read, which an HTTP/1.1 server does
// right after a response, so a small response goes out in one segment
// without waiting for anything.
//
// Nothing waits long for a read that is not coming: holdFor bounds how long
// bytes are held (a streamed body whose next chunk is still upstream), a
// write while another goroutine reads (a tunnel or an upgraded connection
// copying both ways) goes out at once, and so do holdMax bytes.
const (
	holdFor = 200 * time.Microsecond
	holdMax = 32 << 10
	keepBuf = 4 << 10
)

type coalescingConn struct {
	net.Conn
	// reading counts Reads in progress: while one is, nothing is held.
	reading atomic.Int32
	// held mirrors len(buf) > 0 for Read, which must not wait for mu
	// when there is nothing to send.
	held atomic.Bool

	mu    sync.Mutex
	buf   []byte
	armed bool
	timer *time.Timer
	err   error // the first failed write; every later write fails with it
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c}
	cc.timer = time.AfterFunc(time.Hour, cc.timerFlush)
	cc.timer.Stop()
	return cc
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.reading.Load() > 0 || len(c.buf)+len(p) > holdMax {
		if len(c.buf) == 0 {
			n, err := c.Conn.Write(p)
			c.err = err
			return n, err
		}
		bufs := net.Buffers{c.buf, p}
		_, err := bufs.WriteTo(c.Conn)
		c.reset(err)
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.buf = append(c.buf, p...)
	c.held.Store(true)
	if !c.armed {
		c.armed = true
		c.timer.Reset(holdFor)
	}
	return len(p), nil
}

// flushLocked sends what is held.
func (c *coalescingConn) flushLocked() error {
	if c.err != nil || len(c.buf) == 0 {
		return c.err
	}
	_, err := c.Conn.Write(c.buf)
	c.reset(err)
	return err
}

// reset empties the buffer after a send that ended with err.
func (c *coalescingConn) reset(err error) {
	c.err = err
	if cap(c.buf) > keepBuf {
		// A connection that streamed a large body once should not keep
		// its buffer while it idles.
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	c.held.Store(false)
	if c.armed {
		c.armed = false
		c.timer.Stop()
	}
}

func (c *coalescingConn) timerFlush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	_ = c.flushLocked()
}

func (c *coalescingConn) Read(p []byte) (int, error) {
	c.reading.Add(1)
	defer c.reading.Add(-1)
	// A writer holding mu sends what is held with its own bytes (it sees
	// this read) or arms the timer: a read never waits behind a write
	// that may block.
	if c.held.Load() && c.mu.TryLock() {
		err := c.flushLocked()
		c.mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

// SetWriteDeadline sends what is held first, under the deadline it was
// written under: crypto/tls, closing, sets a deadline in the past so
// that nothing written after its close_notify goes out, and held bytes
// written before it must.
func (c *coalescingConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.flushLocked()
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sends what is held first, as SetWriteDeadline does.
func (c *coalescingConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.flushLocked()
	return c.Conn.SetDeadline(t)
}

func (c *coalescingConn) Close() error {
	c.mu.Lock()
	_ = c.flushLocked()
	c.timer.Stop()
	c.armed = false
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.mu.Unlock()
	return c.Conn.Close()
}
