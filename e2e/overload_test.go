package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// 2,000 agents at once, each with a request its upstream does not answer:
// the sidecar keeps proxy.max_requests of them, answers the rest 503
// overloaded at once, opens at most max_upstream_conns_per_host
// connections upstream, and when the agents give up, their upstream
// requests are cancelled and the sidecar is back where it started, still
// answering.
func TestTwoThousandSlowClients(t *testing.T) {
	const (
		clients     = 2000
		maxRequests = 1000
		perHost     = 64
	)
	// 2,000 TLS handshakes at once on a shared 2-core machine can take
	// longer than the default handshake_timeout: this test is about
	// requests that wait, not handshakes.
	e := newEnv(t, "STACK_PROXY_MAX_REQUESTS="+strconv.Itoa(maxRequests),
		"STACK_PROXY_MAX_UPSTREAM_CONNS_PER_HOST="+strconv.Itoa(perHost),
		"STACK_PROXY_HANDSHAKE_TIMEOUT=2m")

	var (
		active, cancelled atomic.Int64
		mu                sync.Mutex
		upstreamConns     = map[string]bool{}
	)
	release := make(chan struct{})
	defer close(release)
	e.up.route("/slow/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamConns[r.RemoteAddr] = true
		mu.Unlock()
		active.Add(1)
		defer active.Add(-1)
		select {
		case <-release:
			io.WriteString(w, "late")
		case <-r.Context().Done():
			cancelled.Add(1)
		}
	}))
	token := e.issue(agentID, "", stripeGrant, "host="+stripeHost+",methods=GET,paths=/slow/**")
	sc := e.startProxy()
	baseGoroutines := e.metric("go_goroutines")

	pem, err := os.ReadFile(e.caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := newPoolFromPEM(t, pem)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(agentID+":"+token))
	target := net.JoinHostPort(stripeHost, e.up.Port)

	type outcome struct {
		conn   net.Conn
		status int
		reason string
		err    error
	}
	outcomes := make(chan outcome, clients)
	var (
		agentsMu   sync.Mutex
		agentConns []net.Conn
	)
	// At most this many agents connect and shake hands at a time, as a
	// fleet ramping up would; all of them then wait together.
	connecting := make(chan struct{}, 256)
	var waiting sync.WaitGroup
	for i := range clients {
		waiting.Add(1)
		go func() {
			defer waiting.Done()
			// One goroutine per agent, raw sockets: the test's own
			// goroutines stay few.
			o := outcome{}
			defer func() { outcomes <- o }()
			connecting <- struct{}{}
			connected := false
			defer func() {
				if !connected {
					<-connecting
				}
			}()
			c, err := net.DialTimeout("tcp", sc.Listen, 60*time.Second)
			if err != nil {
				o.err = err
				return
			}
			o.conn = c
			agentsMu.Lock()
			agentConns = append(agentConns, c)
			agentsMu.Unlock()
			c.SetDeadline(time.Now().Add(3 * time.Minute))
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, auth)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil {
				o.err = fmt.Errorf("CONNECT: %w", err)
				return
			}
			if resp.StatusCode != 200 {
				o.status, o.reason = resp.StatusCode, resp.Header.Get("X-Stack-Reason")
				return
			}
			tc := tls.Client(&readerConn{Conn: c, r: br}, &tls.Config{RootCAs: roots, ServerName: stripeHost, NextProtos: []string{"http/1.1"}})
			o.conn = tc
			if err := tc.Handshake(); err != nil {
				o.err = fmt.Errorf("TLS handshake: %w", err)
				return
			}
			connected = true
			<-connecting
			fmt.Fprintf(tc, "GET /slow/%d HTTP/1.1\r\nHost: %s\r\n\r\n", i, target)
			resp, err = http.ReadResponse(bufio.NewReader(tc), nil)
			if err != nil {
				o.err = fmt.Errorf("response: %w", err)
				return
			}
			o.status, o.reason = resp.StatusCode, resp.Header.Get("X-Stack-Reason")
		}()
	}

	// Everything over max_requests is refused at once; the rest wait.
	shed := 0
	deadline := time.After(2 * time.Minute)
	for shed < clients-maxRequests {
		select {
		case o := <-outcomes:
			if o.err != nil || o.status != http.StatusServiceUnavailable || o.reason != "overloaded" {
				t.Fatalf("an agent got status %d reason %q err %v; want 503 overloaded or a wait", o.status, o.reason, o.err)
			}
			o.conn.Close()
			shed++
		case <-deadline:
			t.Fatalf("after 2 minutes %d agents were refused, want %d; %d requests upstream", shed, clients-maxRequests, active.Load())
		}
	}
	mu.Lock()
	conns := len(upstreamConns)
	mu.Unlock()
	if conns > perHost {
		t.Errorf("%d upstream connections, want at most %d", conns, perHost)
	}
	atUpstream := active.Load()
	t.Logf("%d refused, %d waiting, %d at the upstream over %d connections; sidecar: %s",
		shed, clients-shed, atUpstream, conns, sidecarMemory(sc.PID))

	// The agents give up.
	agentsMu.Lock()
	for _, c := range agentConns {
		c.Close()
	}
	agentsMu.Unlock()
	waiting.Wait()
	close(outcomes)
	for o := range outcomes {
		if o.err == nil {
			t.Errorf("a waiting agent got status %d reason %q although the upstream never answered", o.status, o.reason)
		}
	}

	// Their upstream requests are cancelled, and the sidecar is back where
	// it started, and answers.
	waitFor(t, "the upstream requests to end", func() bool { return active.Load() == 0 })
	if got := cancelled.Load(); got < atUpstream {
		t.Errorf("%d upstream requests cancelled, want the %d that were waiting there", got, atUpstream)
	}
	waitFor(t, "the agent connections to close", func() bool { return e.metric("stack_active_connections") == 0 })
	waitFor(t, "the goroutines to end", func() bool { return e.metric("go_goroutines") <= baseGoroutines+50 })
	if got := e.metric(`stack_requests_total{outcome="denied",reason="overloaded"}`); got != clients-maxRequests {
		t.Errorf("%v requests counted as overloaded, want %d", got, clients-maxRequests)
	}
	if got := e.metric(`stack_requests_total{outcome="denied",reason="client_closed"}`); got != maxRequests {
		t.Errorf("%v requests counted as client_closed, want %d", got, maxRequests)
	}
	res := e.curl(agentID, token, "-H", "Authorization: Bearer "+placeholder, e.url(stripeHost, "/v1/balance"))
	if res.Status != http.StatusOK {
		t.Fatalf("after the storm: status %d\n%s", res.Status, res.Raw)
	}
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric reads one series from the sidecar's /metrics, e.g. go_goroutines
// or stack_requests_total{outcome="denied",reason="overloaded"}; a series
// not (yet) exported reads 0.
func (e *env) metric(series string) float64 {
	e.t.Helper()
	status, body := e.admin("GET", "/metrics", nil, false)
	if status != http.StatusOK {
		e.t.Fatalf("/metrics: status %d", status)
	}
	for _, line := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if ok && name == series {
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				e.t.Fatalf("/metrics: %q", line)
			}
			return v
		}
	}
	return 0
}

// sidecarMemory reports a process's resident and anonymous memory and its
// threads, from /proc.
func sidecarMemory(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "memory unknown"
	}
	var parts []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, k := range []string{"VmRSS:", "RssAnon:", "Threads:"} {
			if strings.HasPrefix(line, k) {
				parts = append(parts, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	return strings.Join(parts, ", ")
}

func newPoolFromPEM(t *testing.T, pem []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in the exported CA")
	}
	return p
}

// readerConn reads from r, which has buffered part of Conn.
type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }
