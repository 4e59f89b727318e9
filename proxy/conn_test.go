package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// proxyAuth is the Proxy-Authorization value of agent's passport tok.
func proxyAuth(agent, tok string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(agent+":"+tok))
}

// rawConnect opens a connection to the proxy and sends CONNECT to
// hostport with auth (none when empty), returning the connection, a
// reader positioned after the response head, and the response.
func (hs *harness) rawConnect(hostport, auth string) (net.Conn, *bufio.Reader, *http.Response) {
	hs.t.Helper()
	c, err := net.Dial("tcp", hs.server.Listener.Addr().String())
	if err != nil {
		hs.t.Fatal(err)
	}
	hs.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	req := "CONNECT " + hostport + " HTTP/1.1\r\nHost: " + hostport + "\r\n"
	if auth != "" {
		req += "Proxy-Authorization: " + auth + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		hs.t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		hs.t.Fatal(err)
	}
	return c, br, resp
}

// mitmTLS runs the agent's side of the handshake inside an intercepted
// tunnel, trusting only the MITM CA, offering protos.
func (hs *harness) mitmTLS(c net.Conn, br *bufio.Reader, host string, protos ...string) *tls.Conn {
	hs.t.Helper()
	tc := tls.Client(&bufConn{Conn: c, r: br}, &tls.Config{ServerName: host, RootCAs: newPool(hs.ca.Certificate()), NextProtos: protos})
	if err := tc.Handshake(); err != nil {
		hs.t.Fatal(err)
	}
	return tc
}

// h2Client returns a client that speaks only HTTP/2 through the proxy, as
// gRPC does: each connection is a CONNECT, then TLS offering only h2.
// Each connection made is passed to dialled, if set.
func (hs *harness) h2Client(agent, tok string, dialled ...func(net.Conn)) *http.Client {
	var protos http.Protocols
	protos.SetHTTP2(true)
	tr := &http.Transport{
		Protocols: &protos,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, br, resp := hs.rawConnect(addr, proxyAuth(agent, tok))
			if resp.StatusCode != 200 {
				c.Close()
				return nil, fmt.Errorf("CONNECT %s: %s", addr, resp.Status)
			}
			c.SetDeadline(time.Time{})
			host, _, _ := net.SplitHostPort(addr)
			tc := hs.mitmTLS(c, br, host, "h2")
			for _, f := range dialled {
				f(tc)
			}
			return tc, nil
		},
	}
	hs.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// waitClosed reads c until the proxy closes it, failing if that takes
// longer than a generous bound (a deadline the proxy never set).
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the proxy held the connection open")
	}
}

// waitGauge waits (bounded) for the active-connection gauge to read want.
func (hs *harness) waitActive(want float64) {
	hs.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := testutil.ToFloat64(hs.proxy.Metrics().ActiveConns)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			hs.t.Fatalf("%s = %v, want %v", MetricActiveConns, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func withConnTimeouts(handshake, idle time.Duration) harnessOption {
	return func(o *Options) { o.HandshakeTimeout, o.IdleTimeout = handshake, idle }
}

// A CONNECT whose tunnel never starts TLS, or stalls in a request, is
// closed by the proxy, and is counted as an open connection until then.
func TestStalledTunnelsAreClosed(t *testing.T) {
	hs := newHarness(t, echoAuth, withConnTimeouts(300*time.Millisecond, 300*time.Millisecond))
	tok, _ := hs.issue("billing-bot", stripeScope(), 0)
	target := stripeHost + ":" + hs.up.port

	t.Run("no handshake", func(t *testing.T) {
		c, _, resp := hs.rawConnect(target, proxyAuth("billing-bot", tok))
		if resp.StatusCode != 200 {
			t.Fatalf("CONNECT status %d", resp.StatusCode)
		}
		hs.waitActive(1) // hijacked, still counted
		waitClosed(t, c)
		hs.waitActive(0)
	})
	t.Run("half a request head", func(t *testing.T) {
		c, br, _ := hs.rawConnect(target, proxyAuth("billing-bot", tok))
		tc := hs.mitmTLS(c, br, stripeHost, "http/1.1")
		io.WriteString(tc, "GET /v1/charges/ch_1 HTTP/1.1\r\nHost: "+stripeHost+":"+hs.up.port+"\r\n")
		waitClosed(t, tc)
		hs.waitActive(0)
	})
	t.Run("a body that stops", func(t *testing.T) {
		c, br, _ := hs.rawConnect(target, proxyAuth("billing-bot", tok))
		tc := hs.mitmTLS(c, br, stripeHost, "http/1.1")
		io.WriteString(tc, "POST /v1/charges/ch_1 HTTP/1.1\r\nHost: "+stripeHost+":"+hs.up.port+"\r\nContent-Length: 5000000\r\n\r\npartial")
		waitClosed(t, tc)
		hs.waitActive(0)
	})
	t.Run("idle after a request", func(t *testing.T) {
		c, br, _ := hs.rawConnect(target, proxyAuth("billing-bot", tok))
		tc := hs.mitmTLS(c, br, stripeHost, "http/1.1")
		io.WriteString(tc, "GET /v1/charges/ch_1 HTTP/1.1\r\nHost: "+stripeHost+":"+hs.up.port+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		waitClosed(t, tc)
		hs.waitActive(0)
	})
	t.Run("http2 without streams", func(t *testing.T) {
		c, br, _ := hs.rawConnect(target, proxyAuth("billing-bot", tok))
		tc := hs.mitmTLS(c, br, stripeHost, "h2")
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			t.Fatalf("negotiated %q, want h2", p)
		}
		io.WriteString(tc, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		waitClosed(t, tc)
		hs.waitActive(0)
	})
}

// Waiting minutes for an upstream is not idling: the idle and handshake
// deadlines do not cut a slow answer short, over HTTP/1.1, HTTP/2 or plain
// HTTP.
func TestSlowUpstreamOutlivesIdleTimeout(t *testing.T) {
	const wait = 1200 * time.Millisecond
	hs := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(wait)
		fmt.Fprint(w, "late but here")
	}), withConnTimeouts(200*time.Millisecond, 200*time.Millisecond))
	tok, _ := hs.issue("billing-bot", stripeScope(), 0)

	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			c := hs.client("billing-bot", tok)
			if h2 {
				c = hs.h2Client("billing-bot", tok)
			}
			resp, err := c.Get(hs.url(stripeHost, "/v1/charges/ch_1"))
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != 200 || body != "late but here" {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if h2 != (resp.ProtoMajor == 2) {
				t.Fatalf("agent spoke %s", resp.Proto)
			}
		})
	}
}

// The wait for response headers is bounded, and its end is reported as
// what it is.
func TestUpstreamTimeout(t *testing.T) {
	release := make(chan struct{})
	hs := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), func(o *Options) { o.ResponseHeaderTimeout = 300 * time.Millisecond })
	defer close(release)
	tok, _ := hs.issue("billing-bot", stripeScope(), 0)
	resp, err := hs.client("billing-bot", tok).Get(hs.url(stripeHost, "/v1/charges/ch_1"))
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(reason.Header) != reason.UpstreamTimeout {
		t.Fatalf("status %d, reason %q: %s", resp.StatusCode, resp.Header.Get(reason.Header), body)
	}
	hs.waitRecord(func(r audit.Record) bool { return r.Reason == reason.UpstreamTimeout })
}

func TestDefaultUpstreamTimeoutAllowsLongCalls(t *testing.T) {
	if DefaultResponseHeaderTimeout < 10*time.Minute {
		t.Fatalf("DefaultResponseHeaderTimeout = %v: a non-streaming LLM call can take minutes", DefaultResponseHeaderTimeout)
	}
	p, err := New(newHarness(t, echoAuth).options)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.transport.ResponseHeaderTimeout; got != DefaultResponseHeaderTimeout {
		t.Fatalf("transport waits %v for response headers, want %v", got, DefaultResponseHeaderTimeout)
	}
}

// An agent that goes away while its request waits upstream takes the
// upstream request with it, whichever way it came.
func TestAgentGoneCancelsUpstream(t *testing.T) {
	var (
		mu        sync.Mutex
		started   = make(chan struct{}, 4)
		cancelled = make(chan string, 4)
	)
	hs := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			mu.Lock()
			cancelled <- r.Proto
			mu.Unlock()
		case <-time.After(30 * time.Second):
		}
	}))
	tok, _ := hs.issue("billing-bot", stripeScope(), 0)
	for _, tc := range []struct {
		name  string
		proto string
	}{{"http1 tunnel", "http/1.1"}, {"http2 tunnel", "h2"}} {
		t.Run(tc.name, func(t *testing.T) {
			var agent net.Conn
			if tc.proto == "h2" {
				dialled := make(chan net.Conn, 1)
				c := hs.h2Client("billing-bot", tok, func(c net.Conn) { dialled <- c })
				go func() {
					if resp, err := c.Get(hs.url(stripeHost, "/v1/charges/ch_1")); err == nil {
						resp.Body.Close()
					}
				}()
				agent = <-dialled
			} else {
				c, br, _ := hs.rawConnect(stripeHost+":"+hs.up.port, proxyAuth("billing-bot", tok))
				agent = hs.mitmTLS(c, br, stripeHost, tc.proto)
				io.WriteString(agent, "GET /v1/charges/ch_1 HTTP/1.1\r\nHost: "+stripeHost+":"+hs.up.port+"\r\n\r\n")
			}
			select {
			case <-started:
			case <-time.After(20 * time.Second):
				t.Fatal("the request never reached the upstream")
			}
			time.Sleep(100 * time.Millisecond) // the request is waiting upstream
			agent.Close()
			select {
			case <-cancelled:
			case <-time.After(20 * time.Second):
				t.Fatal("the upstream request was not cancelled when the agent went away")
			}
			hs.waitRecord(func(r audit.Record) bool { return r.Reason == reason.ClientClosed })
		})
	}
}

// Refused CONNECTs and 407s say Connection: close, and the connection is
// closed: an agent retrying with credentials does so on a new one.
func TestRefusalsCloseTheConnection(t *testing.T) {
	hs := newHarness(t, echoAuth)
	tok, _ := hs.issue("billing-bot", stripeScope(), 0)
	t.Run("CONNECT 407", func(t *testing.T) {
		c, _, resp := hs.rawConnect(stripeHost+":443", "")
		if resp.StatusCode != http.StatusProxyAuthRequired || !resp.Close {
			t.Fatalf("status %d, Connection %q", resp.StatusCode, resp.Header.Get("Connection"))
		}
		waitClosed(t, c)
	})
	t.Run("CONNECT 403", func(t *testing.T) {
		c, _, resp := hs.rawConnect("forbidden.test:443", proxyAuth("billing-bot", tok))
		if resp.StatusCode != http.StatusForbidden || !resp.Close {
			t.Fatalf("status %d, Connection %q", resp.StatusCode, resp.Header.Get("Connection"))
		}
		waitClosed(t, c)
	})
	t.Run("plain HTTP 407", func(t *testing.T) {
		c, err := net.Dial("tcp", hs.server.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET http://"+otherHost+"/ HTTP/1.1\r\nHost: "+otherHost+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusProxyAuthRequired || !resp.Close {
			t.Fatalf("status %d, Connection %q", resp.StatusCode, resp.Header.Get("Connection"))
		}
		io.Copy(io.Discard, resp.Body)
		waitClosed(t, c)
	})
}

// Past proxy.max_requests in flight, or proxy.max_connections open, the
// proxy answers 503 overloaded at once.
func TestShedsLoad(t *testing.T) {
	release := make(chan struct{})
	var waiting atomic.Int32
	hs := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		waiting.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), func(o *Options) { o.MaxRequests, o.MaxConnections = 2, 3 })
	tok, _ := hs.issue("billing-bot", stripeScope(), 0)

	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := hs.client("billing-bot", tok).Get(hs.url(stripeHost, "/v1/charges/ch_1"))
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	for waiting.Load() < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := hs.client("billing-bot", tok).Get(hs.url(stripeHost, "/v1/charges/ch_1"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(reason.Header) != reason.Overloaded || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, reason %q, Retry-After %q", resp.StatusCode, resp.Header.Get(reason.Header), resp.Header.Get("Retry-After"))
	}

	// Two tunnels and the refused one's connection make three: the next
	// connection is over the cap.
	c, err := net.Dial("tcp", hs.server.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "CONNECT "+stripeHost+":443 HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(reason.Header) != reason.Overloaded {
		t.Fatalf("over the connection cap: status %d, reason %q", resp.StatusCode, resp.Header.Get(reason.Header))
	}
	close(release)
	wg.Wait()
}

// With an allow list that covers loopback, the sidecar's own listeners
// (the admin API and the proxy itself) stay out of the agent's reach.
func TestOwnListenersRefused(t *testing.T) {
	hs := newHarness(t, echoAuth)
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "stack_requests_total 1\n")
	}))
	defer admin.Close()
	hs.options.Guard.RefuseListeners(addrPortOf(t, hs.server.Listener.Addr()), addrPortOf(t, admin.Listener.Addr()))
	tok, _ := hs.issue("bot", passport.Scope{{Hosts: []string{"127.0.0.1"}}}, 0)
	c := hs.client("bot", tok)
	for _, u := range []string{
		admin.URL + "/metrics",
		hs.server.URL + "/",
	} {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get(reason.Header) != reason.EgressDenied {
			t.Errorf("GET %s through the proxy: %d %q %s", u, resp.StatusCode, resp.Header.Get(reason.Header), body)
		}
	}
}

func addrPortOf(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// A write deadline set from outside a hijacked connection still holds
// against the stall deadline each write sets: crypto/tls, closing, sets
// one in the past so that nothing follows its close_notify.
func TestHijackedConnKeepsOutsideWriteDeadline(t *testing.T) {
	p := &Proxy{opts: Options{IdleTimeout: time.Minute, HandshakeTimeout: time.Minute}, metrics: NewMetrics()}
	proxyEnd, agentEnd := net.Pipe()
	defer agentEnd.Close()
	go io.Copy(io.Discard, agentEnd)
	ac := &agentConn{Conn: proxyEnd, l: &agentListener{p: p}}
	ac.willHijack(modeHandshake)
	ac.hijacked()
	if _, err := ac.Write([]byte("before")); err != nil {
		t.Fatalf("write under the stall deadline: %v", err)
	}
	ac.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := ac.Write([]byte("after")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write after a deadline in the past: %v, want a deadline error", err)
	}
}
