package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// scriptResolver answers lookups from a function of the call number and
// counts the calls.
type scriptResolver struct {
	mu     sync.Mutex
	calls  int
	answer func(call int, host string) ([]netip.Addr, error)
}

func (r *scriptResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	r.calls++
	call := r.calls
	r.mu.Unlock()
	return r.answer(call, host)
}

func (r *scriptResolver) Calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// static resolves "evil.test" (and only it) to the given addresses.
func static(ss ...string) *scriptResolver {
	return &scriptResolver{answer: func(_ int, host string) ([]netip.Addr, error) {
		if host != "evil.test" {
			return nil, fmt.Errorf("no such host %q", host)
		}
		return addrs(ss...), nil
	}}
}

// loopback is a TCP listener on 127.0.0.1 that hands accepted connections
// to the test.
type loopback struct {
	ln       net.Listener
	port     string
	accepted chan net.Conn
}

func listen(t *testing.T) *loopback {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &loopback{ln: ln, accepted: make(chan net.Conn, 16)}
	_, l.port, _ = net.SplitHostPort(ln.Addr().String())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.accepted <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(l.accepted)
		for c := range l.accepted {
			c.Close()
		}
	})
	return l
}

// next returns the next connection the listener accepted.
func (l *loopback) next(t *testing.T) net.Conn {
	t.Helper()
	c, ok := <-l.accepted
	if !ok {
		t.Fatal("listener closed")
	}
	return c
}

// assertNothingAccepted proves no earlier connection reached the listener:
// the first connection it accepts after this point is the probe made here.
func (l *loopback) assertNothingAccepted(t *testing.T) {
	t.Helper()
	probe, err := net.Dial("tcp", l.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	got := l.next(t)
	defer got.Close()
	if got.RemoteAddr().String() != probe.LocalAddr().String() {
		t.Fatalf("listener accepted a connection from %v before the probe from %v", got.RemoteAddr(), probe.LocalAddr())
	}
}

// assertConnected checks that conn reached the listener and carries bytes.
func (l *loopback) assertConnected(t *testing.T, conn net.Conn) {
	t.Helper()
	defer conn.Close()
	server := l.next(t)
	defer server.Close()
	if server.RemoteAddr().String() != conn.LocalAddr().String() {
		t.Fatalf("listener accepted %v, client is %v", server.RemoteAddr(), conn.LocalAddr())
	}
	if _, err := io.WriteString(conn, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q, %v", buf, err)
	}
}

func TestDialRefusesNameResolvingToLoopback(t *testing.T) {
	l := listen(t)
	res := static("127.0.0.1")
	g := mustNew(t, Options{Resolver: res})
	conn, err := g.DialContext(t.Context(), "tcp", net.JoinHostPort("evil.test", l.port))
	if conn != nil {
		conn.Close()
	}
	var denied *DeniedError
	if !errors.As(err, &denied) || !errors.Is(err, ErrDenied) {
		t.Fatalf("err = %v, want *DeniedError", err)
	}
	if denied.Host != "evil.test" || denied.Addr != netip.MustParseAddr("127.0.0.1") || denied.Reason != "loopback" {
		t.Errorf("denied = %+v", denied)
	}
	if res.Calls() != 1 {
		t.Errorf("%d lookups, want 1", res.Calls())
	}
	l.assertNothingAccepted(t)
}

func TestDialAllowedLoopback(t *testing.T) {
	l := listen(t)
	res := static("127.0.0.1")
	g := mustNew(t, Options{Resolver: res, AllowCIDRs: prefixes("127.0.0.0/8")})
	conn, err := g.DialContext(t.Context(), "tcp", net.JoinHostPort("evil.test", l.port))
	if err != nil {
		t.Fatal(err)
	}
	l.assertConnected(t, conn)
	if res.Calls() != 1 {
		t.Errorf("%d lookups, want 1", res.Calls())
	}
}

// IP literals are judged as the address they spell and never reach the
// resolver.
func TestDialLiterals(t *testing.T) {
	l := listen(t)
	spellings := []string{"127.0.0.1", "0x7f.1", "0177.0.0.1", "2130706433", "127.1", "::ffff:127.0.0.1", "::ffff:7f00:1"}
	t.Run("refused", func(t *testing.T) {
		res := static()
		g := mustNew(t, Options{Resolver: res})
		for _, host := range spellings {
			_, err := g.DialContext(t.Context(), "tcp", net.JoinHostPort(host, l.port))
			if !errors.Is(err, ErrDenied) {
				t.Errorf("%s: err = %v, want ErrDenied", host, err)
			}
		}
		if res.Calls() != 0 {
			t.Errorf("%d lookups for IP literals", res.Calls())
		}
		l.assertNothingAccepted(t)
	})
	t.Run("allowed", func(t *testing.T) {
		res := static()
		g := mustNew(t, Options{Resolver: res, AllowCIDRs: prefixes("127.0.0.0/8")})
		for _, host := range spellings {
			conn, err := g.DialContext(t.Context(), "tcp", net.JoinHostPort(host, l.port))
			if err != nil {
				t.Fatalf("%s: %v", host, err)
			}
			l.assertConnected(t, conn)
		}
		if res.Calls() != 0 {
			t.Errorf("%d lookups for IP literals", res.Calls())
		}
	})
}

// A resolver whose answer changes between calls cannot get a refused
// address dialled: the name is resolved once per dial and the checked
// addresses are the ones dialled.
func TestDialRebindingResolver(t *testing.T) {
	l := listen(t)
	allow := prefixes("127.0.0.1/32")
	t.Run("allowed first, refused later", func(t *testing.T) {
		res := &scriptResolver{answer: func(call int, _ string) ([]netip.Addr, error) {
			if call == 1 {
				return addrs("127.0.0.1"), nil
			}
			return addrs("127.0.0.2"), nil
		}}
		g := mustNew(t, Options{Resolver: res, AllowCIDRs: allow})
		conn, err := g.DialContext(t.Context(), "tcp", net.JoinHostPort("evil.test", l.port))
		if err != nil {
			t.Fatal(err)
		}
		if got := conn.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.1" {
			t.Errorf("dialled %s, want the checked 127.0.0.1", got)
		}
		l.assertConnected(t, conn)
		if res.Calls() != 1 {
			t.Errorf("%d lookups, want exactly 1", res.Calls())
		}
	})
	t.Run("refused first, allowed later", func(t *testing.T) {
		res := &scriptResolver{answer: func(call int, _ string) ([]netip.Addr, error) {
			if call == 1 {
				return addrs("10.0.0.1"), nil
			}
			return addrs("127.0.0.1"), nil
		}}
		g := mustNew(t, Options{Resolver: res, AllowCIDRs: allow})
		_, err := g.DialContext(t.Context(), "tcp", net.JoinHostPort("evil.test", l.port))
		if !errors.Is(err, ErrDenied) {
			t.Fatalf("err = %v, want ErrDenied", err)
		}
		if res.Calls() != 1 {
			t.Errorf("%d lookups, want exactly 1", res.Calls())
		}
		l.assertNothingAccepted(t)
	})
}

// One refused address refuses the name, whatever its position.
func TestDialMixedAnswersRefused(t *testing.T) {
	l := listen(t)
	for _, answer := range [][]string{
		{"127.0.0.1", "169.254.169.254"},
		{"169.254.169.254", "127.0.0.1"},
		{"127.0.0.1", "::ffff:10.0.0.1"},
	} {
		res := static(answer...)
		g := mustNew(t, Options{Resolver: res, AllowCIDRs: prefixes("127.0.0.1/32")})
		_, err := g.DialContext(t.Context(), "tcp", net.JoinHostPort("evil.test", l.port))
		var denied *DeniedError
		if !errors.As(err, &denied) || denied.Addr == netip.MustParseAddr("127.0.0.1") {
			t.Errorf("%v: err = %v, want the refused address named", answer, err)
		}
	}
	l.assertNothingAccepted(t)
}

func TestDialFallsBackToNextAddress(t *testing.T) {
	l := listen(t)
	// Nothing listens on 127.0.0.3 at this port: the connect is refused
	// and the next checked address is tried.
	res := static("127.0.0.3", "127.0.0.1")
	g := mustNew(t, Options{Resolver: res, AllowCIDRs: prefixes("127.0.0.0/8")})
	conn, err := g.DialContext(t.Context(), "tcp", net.JoinHostPort("evil.test", l.port))
	if err != nil {
		t.Fatal(err)
	}
	l.assertConnected(t, conn)
	if res.Calls() != 1 {
		t.Errorf("%d lookups, want 1", res.Calls())
	}
}

func TestDialErrors(t *testing.T) {
	allowAll := prefixes("127.0.0.0/8", "::1/128")
	failing := &scriptResolver{answer: func(int, string) ([]netip.Addr, error) { return nil, errors.New("SERVFAIL") }}
	empty := &scriptResolver{answer: func(int, string) ([]netip.Addr, error) { return nil, nil }}
	tests := []struct {
		name     string
		resolver Resolver
		network  string
		address  string
		want     error
	}{
		{"udp", nil, "udp", "127.0.0.1:53", ErrNetwork},
		{"unix", nil, "unix", "/tmp/sock", ErrNetwork},
		{"no port", nil, "tcp", "127.0.0.1", ErrAddress},
		{"port zero", nil, "tcp", "127.0.0.1:0", ErrAddress},
		{"named port", nil, "tcp", "127.0.0.1:https", ErrAddress},
		{"port out of range", nil, "tcp", "127.0.0.1:65536", ErrAddress},
		{"empty host", nil, "tcp", ":443", ErrAddress},
		{"resolver empty answer", empty, "tcp", "evil.test:443", ErrNoAddress},
		{"ipv4 literal on tcp6", nil, "tcp6", "127.0.0.1:443", ErrNoAddress},
		{"ipv6 literal on tcp4", nil, "tcp4", "[::1]:443", ErrNoAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := mustNew(t, Options{Resolver: tt.resolver, AllowCIDRs: allowAll})
			conn, err := g.DialContext(t.Context(), tt.network, tt.address)
			if conn != nil {
				conn.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("resolver failure", func(t *testing.T) {
		g := mustNew(t, Options{Resolver: failing})
		_, err := g.DialContext(t.Context(), "tcp", "evil.test:443")
		if err == nil || errors.Is(err, ErrDenied) || !containsAll(err.Error(), "evil.test", "SERVFAIL") {
			t.Errorf("err = %v", err)
		}
	})
}

// tcp4 dials only the IPv4 answers of a name.
func TestDialFamilyFilter(t *testing.T) {
	l := listen(t)
	res := static("::1", "127.0.0.1")
	g := mustNew(t, Options{Resolver: res, AllowCIDRs: prefixes("127.0.0.0/8", "::1/128")})
	conn, err := g.DialContext(t.Context(), "tcp4", net.JoinHostPort("evil.test", l.port))
	if err != nil {
		t.Fatal(err)
	}
	l.assertConnected(t, conn)
}

// The last line of defence refuses a connect to an unchecked address.
func TestControlRechecks(t *testing.T) {
	g := mustNew(t, Options{})
	if err := g.control(t.Context(), "tcp4", "127.0.0.1:80", nil); !errors.Is(err, ErrDenied) {
		t.Errorf("control(127.0.0.1) = %v, want ErrDenied", err)
	}
	if err := g.control(t.Context(), "tcp6", "[fe80::1%eth0]:80", nil); !errors.Is(err, ErrDenied) {
		t.Errorf("control(fe80::1%%eth0) = %v, want ErrDenied", err)
	}
	if err := g.control(t.Context(), "tcp4", "93.184.216.34:443", nil); err != nil {
		t.Errorf("control(public) = %v", err)
	}
	if err := g.control(t.Context(), "tcp4", "nonsense", nil); err == nil {
		t.Error("control accepted a malformed address")
	}
}

// As http.Transport's dialer: a name resolving to loopback is refused, and
// served once loopback is allowed.
func TestHTTPTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello")
	}))
	t.Cleanup(srv.Close)
	port := strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	url := "http://evil.test:" + port + "/"

	get := func(g *Guard) (string, error) {
		tr := &http.Transport{DialContext: g.DialContext, Proxy: nil}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			return "", err
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}

	if _, err := get(mustNew(t, Options{Resolver: static("127.0.0.1")})); !errors.Is(err, ErrDenied) {
		t.Errorf("refused guard: err = %v, want ErrDenied", err)
	}
	body, err := get(mustNew(t, Options{Resolver: static("127.0.0.1"), AllowCIDRs: prefixes("127.0.0.1/32")}))
	if err != nil || body != "hello" {
		t.Errorf("allowed guard: %q, %v", body, err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func ExampleGuard_Check() {
	g, err := New(Options{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}})
	if err != nil {
		panic(err)
	}
	for _, host := range []string{"0xA9FEA9FE", "10.1.2.3", "10.2.0.1", "64:ff9b::7f00:1"} {
		addr, _ := ParseHost(host)
		fmt.Printf("%s: %v\n", host, g.Check(addr))
	}
	// Output:
	// 0xA9FEA9FE: egress: 169.254.169.254 refused: link-local (cloud metadata)
	// 10.1.2.3: <nil>
	// 10.2.0.1: egress: 10.2.0.1 refused: private
	// 64:ff9b::7f00:1: egress: 64:ff9b::7f00:1 refused: NAT64 form of loopback
}

// The proxy's own listeners are refused even where an allow prefix covers
// them, in every spelling that reaches them; other ports are not.
func TestDialRefusesOwnListeners(t *testing.T) {
	admin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	wild, err := net.Listen("tcp", ":0") // all addresses, as 0.0.0.0:PORT or [::]:PORT
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Close()
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	g, err := New(Options{
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		Resolver:   static("127.0.0.1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	g.RefuseListeners(admin.Addr().(*net.TCPAddr).AddrPort(), wild.Addr().(*net.TCPAddr).AddrPort())
	port := func(l net.Listener) string { return strconv.Itoa(l.Addr().(*net.TCPAddr).Port) }
	for _, target := range []string{
		"127.0.0.1:" + port(admin),
		"[::ffff:127.0.0.1]:" + port(admin),
		"2130706433:" + port(admin), // 127.0.0.1 as one number
		"evil.test:" + port(admin),  // a name resolving to it
		"127.0.0.1:" + port(wild),
		"127.0.0.2:" + port(wild),
		"[::1]:" + port(wild),
	} {
		_, err := g.DialContext(context.Background(), "tcp", target)
		var de *DeniedError
		if !errors.As(err, &de) || de.Reason != "the sidecar's own listener" {
			t.Errorf("dial %s: %v, want refused as the sidecar's own listener", target, err)
		}
	}
	c, err := g.DialContext(context.Background(), "tcp", "127.0.0.1:"+port(other))
	if err != nil {
		t.Fatalf("another allowed port: %v", err)
	}
	c.Close()
}
