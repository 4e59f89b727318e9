package proxy

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stackctl/stack/reason"
)

// Agent connections: how many, and their deadlines.
//
// net/http counts and times out the connections it serves, but not one it
// hands over: every CONNECT tunnel is hijacked, and goproxy sets no
// deadline on it. So the proxy's listener (Proxy.Listener) wraps each
// accepted connection in an agentConn, which counts it until it really
// closes and, from the CONNECT on, sets its deadlines itself:
//
//   - handshake: an intercepted tunnel must finish its TLS handshake (or
//     send its first request, if it speaks cleartext) within
//     HandshakeTimeout of the CONNECT;
//   - idle: with no request in flight, the next request's head must
//     arrive within IdleTimeout of the last one's end, or the connection
//     closes; an HTTP/2 connection with no stream open likewise;
//   - stall: a request body that sends nothing, or an agent that takes
//     nothing of a response, for IdleTimeout ends the connection;
//   - a tunnel without interception closes after ResponseHeaderTimeout
//     with no byte either way: a request inside it may wait that long.
//
// While a request waits for its upstream (minutes, for a long LLM call)
// no deadline applies; instead a background read watches for the agent
// going away and cancels the upstream request if it does. (Starting it
// only after the wait passes 100 ms saved about 3% CPU per request in
// stack-bench, within the noise of its throughput: not worth a timer.)

// connMode is who sets an agent connection's deadlines, and how.
type connMode uint8

const (
	modeServed    connMode = iota // net/http serves it and owns its deadlines
	modeHandshake                 // an intercepted tunnel before its handshake ends
	modeHTTP1                     // an intercepted tunnel speaking HTTP/1.x
	modeHTTP2                     // an intercepted tunnel speaking HTTP/2
	modeTunnel                    // a tunnel without interception
)

// bgReadMax bounds what a background read keeps for the next Read: an
// agent that sends more while its request is pending is not read further.
const bgReadMax = 4 << 10

// aLongTimeAgo is a deadline in the past, to abort a pending read.
var aLongTimeAgo = time.Unix(1, 0)

// agentListener is the proxy's listener: it counts agent connections,
// refuses those over the cap with a 503, and wraps the rest.
type agentListener struct {
	net.Listener
	p    *Proxy
	open atomic.Int64
	// shedding counts refusals still being written; past a bound, a
	// connection over the cap is closed without an answer.
	shedding atomic.Int64
	lastLog  atomic.Int64 // unix seconds of the last "over the cap" log line
}

// Listener wraps ln as the proxy's listener: connections beyond
// MaxConnections are answered 503 overloaded and closed, the rest are
// counted in stack_active_connections until they close (hijacked tunnels
// included), have their writes coalesced (see coalescingConn), and get the
// deadlines net/http does not set (see agentConn). Serve it with the
// http.Server from NewServer.
func (p *Proxy) Listener(ln net.Listener) net.Listener {
	return &agentListener{Listener: ln, p: p}
}

// maxShedding bounds the refusals being written at once.
const maxShedding = 256

func (l *agentListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > int64(l.p.opts.MaxConnections) {
			l.open.Add(-1)
			l.shed(c)
			continue
		}
		l.p.metrics.ActiveConns.Inc()
		ac := &agentConn{Conn: c, l: l}
		return newCoalescingConn(ac), nil
	}
}

// shed answers a connection over the cap with a 503 and closes it,
// without waiting for it: the accept loop must go on.
func (l *agentListener) shed(c net.Conn) {
	l.p.metrics.Requests.WithLabelValues("denied", reason.Overloaded).Inc()
	if now := time.Now().Unix(); l.lastLog.Swap(now) != now {
		l.p.log.Warn("agent connection refused: proxy.max_connections reached")
	}
	if l.shedding.Add(1) > maxShedding {
		l.shedding.Add(-1)
		c.Close()
		return
	}
	go func() {
		defer l.shedding.Add(-1)
		defer c.Close()
		d := &denial{Status: 503, Reason: reason.Overloaded, Detail: "too many agent connections (proxy.max_connections); retry shortly"}
		resp := d.response(nil)
		c.SetDeadline(time.Now().Add(time.Second))
		if err := resp.Write(c); err != nil {
			return
		}
		// Close only after the agent has its answer: closing with its
		// request unread would reset the connection before it reads.
		if tc, ok := c.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		}
		buf := make([]byte, 4<<10)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
}

// agentConn is one agent connection; see the comment at the top of this
// file.
type agentConn struct {
	net.Conn
	l         *agentListener
	closeOnce sync.Once

	mu          sync.Mutex
	mode        connMode
	next        connMode  // the mode from the hijack on, chosen on the CONNECT
	active      int       // requests in flight on the connection
	idleSince   time.Time // when active last became 0, or the handshake ended
	handshakeBy time.Time
	extWrite    time.Time // a write deadline set from outside, e.g. by tls.Conn.Close
	pending     []byte    // what a background read took, for the next Read
	pendingErr  error
	bg          *bgRead
}

// agentConnOf finds the agentConn under c, or nil.
func agentConnOf(c net.Conn) *agentConn {
	switch c := c.(type) {
	case *agentConn:
		return c
	case *coalescingConn:
		ac, _ := c.Conn.(*agentConn)
		return ac
	}
	return nil
}

type agentConnKey struct{}

// agentConnFrom returns the agentConn a request arrived on, or nil when
// the server was not set up by NewServer and Listener.
func agentConnFrom(ctx context.Context) *agentConn {
	ac, _ := ctx.Value(agentConnKey{}).(*agentConn)
	return ac
}

func (c *agentConn) idle() time.Duration       { return c.l.p.opts.IdleTimeout }
func (c *agentConn) tunnelIdle() time.Duration { return c.l.p.opts.ResponseHeaderTimeout }

// willHijack says what the CONNECT on this connection becomes:
// modeHandshake for an intercepted tunnel (its handshake deadline starts
// when net/http hands the connection over), modeTunnel for one without
// interception.
func (c *agentConn) willHijack(m connMode) {
	c.mu.Lock()
	c.next = m
	c.mu.Unlock()
}

// hijacked takes over the deadlines once net/http has handed the
// connection over (http.StateHijacked). Not before: net/http's own read,
// which watches for the agent closing while a handler runs, must see
// only net/http's deadlines, or its abort at hijack would be undone.
func (c *agentConn) hijacked() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.next == modeServed {
		return // a refused CONNECT: goproxy answers and closes
	}
	c.mode = c.next
	c.extWrite = time.Time{}
	if c.mode == modeHandshake {
		c.handshakeBy = time.Now().Add(c.l.p.opts.HandshakeTimeout)
	}
}

// handshakeDone records the end of an intercepted tunnel's TLS handshake
// and the protocol it chose.
func (c *agentConn) handshakeDone(proto string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mode != modeHandshake {
		return
	}
	c.mode = modeHTTP1
	if proto == "h2" {
		c.mode = modeHTTP2
	}
	c.idleSince = time.Now()
}

// begin counts a request starting on the connection.
func (c *agentConn) begin(h2 bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mode == modeHandshake {
		// A tunnel that speaks cleartext HTTP has no handshake.
		c.mode = modeHTTP1
		if h2 {
			c.mode = modeHTTP2
		}
	}
	c.active++
	if c.active == 1 && c.mode == modeHTTP2 {
		// The frame reader stays in Read while streams are open: no
		// deadline while one is.
		c.Conn.SetReadDeadline(time.Time{})
	}
}

// end counts a request ending on the connection.
func (c *agentConn) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active--
	if c.active > 0 {
		return
	}
	c.idleSince = time.Now()
	if c.mode == modeHTTP2 {
		c.Conn.SetReadDeadline(c.idleSince.Add(c.idle()))
	}
}

// readDeadlineLocked is the deadline of a Read starting now.
func (c *agentConn) readDeadlineLocked(now time.Time) time.Time {
	switch c.mode {
	case modeHandshake:
		return c.handshakeBy
	case modeHTTP1:
		if c.active == 0 {
			// The whole head must arrive in time, however slowly it
			// trickles in.
			return c.idleSince.Add(c.idle())
		}
		// A request body: progress keeps it going.
		return now.Add(c.idle())
	case modeHTTP2:
		if c.active == 0 {
			return c.idleSince.Add(c.idle())
		}
		return time.Time{}
	case modeTunnel:
		return now.Add(c.tunnelIdle())
	}
	return time.Time{}
}

func (c *agentConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.bg != nil {
		c.mu.Unlock()
		c.stopBackgroundRead()
		c.mu.Lock()
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		c.mu.Unlock()
		return n, nil
	}
	if err := c.pendingErr; err != nil {
		c.mu.Unlock()
		return 0, err
	}
	if c.mode != modeServed {
		// Under mu, so that begin and end, which set the deadline of a
		// Read already waiting, are not undone by this one.
		c.Conn.SetReadDeadline(c.readDeadlineLocked(time.Now()))
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

func (c *agentConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.mode != modeServed {
		now := time.Now()
		d := now.Add(c.idle())
		if !c.extWrite.IsZero() && c.extWrite.Before(d) {
			d = c.extWrite
		}
		c.Conn.SetWriteDeadline(d)
		if c.mode == modeTunnel {
			// Bytes either way keep a tunnel open.
			c.Conn.SetReadDeadline(now.Add(c.tunnelIdle()))
		}
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *agentConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	if c.mode != modeServed {
		c.extWrite = t
	}
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *agentConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	if c.mode != modeServed {
		c.extWrite = t
	}
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *agentConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.l.open.Add(-1)
		c.l.p.metrics.ActiveConns.Dec()
	})
	return err
}

// bgRead is a read from the agent while its request waits upstream.
type bgRead struct {
	done    chan struct{}
	buf     []byte
	err     error
	aborted atomic.Bool
}

// watch arranges for cancel to run if the agent goes away while its
// request waits for the upstream, and returns the function that ends the
// watch, to call once the response headers are in: from then on, writing
// the response finds out.
func (c *agentConn) watch(cancel context.CancelFunc) (stop func()) {
	c.startBackgroundRead(cancel)
	return c.stopBackgroundRead
}

func (c *agentConn) startBackgroundRead(cancel context.CancelFunc) {
	c.mu.Lock()
	if c.bg != nil || c.pendingErr != nil || len(c.pending) >= bgReadMax {
		c.mu.Unlock()
		return
	}
	bg := &bgRead{done: make(chan struct{})}
	c.bg = bg
	c.Conn.SetReadDeadline(time.Time{})
	c.mu.Unlock()
	go func() {
		defer close(bg.done)
		buf := make([]byte, 512)
		for len(bg.buf) < bgReadMax {
			n, err := c.Conn.Read(buf)
			bg.buf = append(bg.buf, buf[:n]...)
			if err != nil {
				if bg.aborted.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
					return
				}
				// The agent closed or reset the connection (a TLS
				// close_notify comes first, then this): nobody is
				// waiting for the answer.
				bg.err = err
				cancel()
				return
			}
		}
	}()
}

// stopBackgroundRead ends a background read, if one runs, and keeps what
// it read for the next Read.
func (c *agentConn) stopBackgroundRead() {
	c.mu.Lock()
	bg := c.bg
	c.mu.Unlock()
	if bg == nil {
		return
	}
	bg.aborted.Store(true)
	c.Conn.SetReadDeadline(aLongTimeAgo)
	<-bg.done
	c.mu.Lock()
	c.bg = nil
	c.pending = append(c.pending, bg.buf...)
	if bg.err != nil && c.pendingErr == nil {
		c.pendingErr = bg.err
	}
	c.mu.Unlock()
}
