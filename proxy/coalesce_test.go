package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the writes that reach the real connection.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tcpPair is a real loopback TCP connection: the proxy's end wrapped in a
// coalescingConn over a write counter, and the agent's end.
func tcpPair(t *testing.T) (*coalescingConn, *countingConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	agent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw := <-accepted
	if raw == nil {
		t.Fatal("accept failed")
	}
	counted := &countingConn{Conn: raw}
	cc := newCoalescingConn(counted)
	t.Cleanup(func() { cc.Close(); agent.Close() })
	return cc, counted, agent
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return b
}

// wantSent checks that want reached the agent in writes socket writes.
func wantSent(t *testing.T, counted *countingConn, agent net.Conn, writes int32, want string) {
	t.Helper()
	if n := counted.writes.Load(); n != writes {
		t.Fatalf("%d writes reached the socket, want %d", n, writes)
	}
	if b := readN(t, agent, len(want)); string(b) != want {
		t.Fatalf("agent got %q, want %q", b, want)
	}
}

// readToEnd reads what the agent receives until the proxy's end closes.
func readToEnd(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("agent read: %v", err)
	}
	return string(b)
}

func TestCoalescingConn(t *testing.T) {
	t.Run("a response's writes leave together when the connection is read", func(t *testing.T) {
		cc, counted, agent := tcpPair(t)
		for _, part := range []string{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "ok"} {
			if _, err := cc.Write([]byte(part)); err != nil {
				t.Fatal(err)
			}
		}
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, 1)
			cc.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, _ := cc.Read(b) // the next request
			got <- b[:n]
		}()
		if b := readN(t, agent, 40); !bytes.HasSuffix(b, []byte("\r\n\r\nok")) {
			t.Fatalf("agent got %q", b)
		}
		if n := counted.writes.Load(); n != 1 {
			t.Fatalf("%d writes reached the socket, want 1", n)
		}
		agent.Write([]byte("G"))
		if b := <-got; string(b) != "G" {
			t.Fatalf("proxy read %q", b)
		}
	})
	t.Run("held bytes leave on their own when no read comes", func(t *testing.T) {
		cc, _, agent := tcpPair(t)
		cc.Write([]byte("data: 1\n\n"))
		if b := readN(t, agent, 9); string(b) != "data: 1\n\n" {
			t.Fatalf("agent got %q", b)
		}
	})
	t.Run("writes pass straight through while another goroutine reads", func(t *testing.T) {
		cc, counted, agent := tcpPair(t)
		reading := make(chan struct{})
		go func() {
			for cc.reading.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			close(reading)
		}()
		go func() {
			b := make([]byte, 1)
			cc.Read(b) // blocks: the agent sends nothing
		}()
		<-reading
		cc.Write([]byte("frame-1"))
		cc.Write([]byte("frame-2"))
		wantSent(t, counted, agent, 2, "frame-1frame-2") // each at once, during the read
	})
	t.Run("a large write goes out at once, after what was held, in order", func(t *testing.T) {
		cc, _, agent := tcpPair(t)
		big := bytes.Repeat([]byte("x"), holdMax)
		cc.Write([]byte("head"))
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b := readN(t, agent, 4+len(big)); string(b[:5]) != "headx" || len(b) != 4+len(big) {
				t.Errorf("agent got %q...", b[:8])
			}
		}()
		if _, err := cc.Write(big); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	})
	t.Run("Close sends what is held", func(t *testing.T) {
		cc, _, agent := tcpPair(t)
		cc.Write([]byte("bye"))
		cc.Close()
		if got := readToEnd(t, agent); got != "bye" {
			t.Fatalf("agent got %q", got)
		}
		if _, err := cc.Write([]byte("more")); err == nil {
			t.Fatal("write after Close succeeded")
		}
	})
	t.Run("held bytes leave before a deadline set in the past", func(t *testing.T) {
		// crypto/tls closing: close_notify, a write deadline of now, Close.
		cc, _, agent := tcpPair(t)
		cc.Write([]byte("response"))
		cc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		cc.Write([]byte("+alert"))
		cc.SetWriteDeadline(time.Now())
		cc.Close()
		if got := readToEnd(t, agent); got != "response+alert" {
			t.Fatalf("agent got %q", got)
		}
	})
	t.Run("SetDeadline sends what is held", func(t *testing.T) {
		cc, counted, agent := tcpPair(t)
		cc.Write([]byte("held"))
		cc.SetDeadline(time.Now().Add(time.Minute))
		wantSent(t, counted, agent, 1, "held")
	})
	t.Run("a failed send fails the next read and write", func(t *testing.T) {
		cc, counted, agent := tcpPair(t)
		agent.Close()
		counted.Conn.Close() // the socket is gone under the held bytes
		cc.Write([]byte("lost"))
		if _, err := cc.Read(make([]byte, 1)); err == nil {
			t.Fatal("read after a failed send succeeded")
		}
		if _, err := cc.Write([]byte("x")); err == nil {
			t.Fatal("write after a failed send succeeded")
		}
	})
}

// A client that closes its connection after each request (Connection:
// close) gets every answer: the response is held until the connection is
// read, and goproxy closes it instead, through crypto/tls's Close.
func TestAnswersReachClientsThatCloseEachConnection(t *testing.T) {
	hs := newHarness(t, echoAuth)
	tok, _ := hs.issue("bot", stripeScope(), 0)
	c := hs.client("bot", tok)
	c.Transport.(*headerRT).tr.DisableKeepAlives = true
	for i := range 5 {
		req, _ := http.NewRequest("GET", hs.url(stripeHost, "/v1/charges/ch_1"), nil)
		req.Header.Set("Authorization", "Bearer stk_ph_stripe")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 || body != "auth=Bearer stk_ph_stripe path=/v1/charges/ch_1" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
}

// A client that asks for 100 Continue gets it before it sends its body:
// the interim answer is held only until the proxy reads the body.
func TestExpectContinueThroughCoalescing(t *testing.T) {
	received := make(chan int, 1)
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		received <- int(n)
		io.WriteString(w, "stored")
	})
	hs := newHarness(t, up)
	tok, _ := hs.issue("bot", stripeScope(), 0)
	c := hs.client("bot", tok)
	c.Transport.(*headerRT).tr.ExpectContinueTimeout = time.Minute // a lost 100 would stall the test
	body := bytes.Repeat([]byte("a"), 1<<20)
	req, _ := http.NewRequest("POST", hs.url(stripeHost, "/v1/charges"), bytes.NewReader(body))
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("Authorization", "Bearer stk_ph_stripe")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); resp.StatusCode != 200 || got != "stored" {
		t.Fatalf("%d %q", resp.StatusCode, got)
	}
	if n := <-received; n != len(body) {
		t.Fatalf("upstream received %d bytes, want %d", n, len(body))
	}
}
