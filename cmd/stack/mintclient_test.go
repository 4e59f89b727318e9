package main

import (
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
)

// connectProxy is an HTTPS proxy on loopback that tunnels every CONNECT
// to one upstream address, whatever host it names, and remembers the
// hosts it was asked for.
type connectProxy struct {
	addr, upstream string

	mu    sync.Mutex
	hosts []string
	conns []net.Conn
	wg    sync.WaitGroup
}

func startConnectProxy(t *testing.T, upstream string) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{addr: ln.Addr().String(), upstream: upstream}
	srv := &http.Server{Handler: http.HandlerFunc(p.serve)}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *connectProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	up, err := net.Dial("tcp", p.upstream)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		return
	}
	p.mu.Lock()
	p.hosts = append(p.hosts, r.Host)
	p.conns = append(p.conns, conn, up)
	p.mu.Unlock()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		conn.Close()
		up.Close()
		return
	}
	p.wg.Add(2)
	go func() { defer p.wg.Done(); _, _ = io.Copy(up, conn); up.Close() }()
	go func() { defer p.wg.Done(); _, _ = io.Copy(conn, up); conn.Close() }()
}

func (p *connectProxy) asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.hosts)
}

// The control plane reaches issuers through the proxy its environment
// names, as a server does; the sidecar never goes through one, since it is
// the agent's proxy.
func TestMintClientProxy(t *testing.T) {
	issuer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"access_token":"t"}`)
	}))
	defer issuer.Close()
	_, port, _ := net.SplitHostPort(issuer.Listener.Addr().String())
	proxy := startConnectProxy(t, issuer.Listener.Addr().String())
	for _, k := range []string{"HTTPS_PROXY", "https_proxy"} {
		t.Setenv(k, "http://"+proxy.addr)
	}
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"} {
		t.Setenv(k, "")
	}
	roots := x509.NewCertPool()
	roots.AddCert(issuer.Certificate())

	// A name, not a loopback address (which a proxy is never used for):
	// nothing resolves it here, so only the tunnel reaches the issuer.
	target := "https://example.com:" + port + "/token"
	client := controlMintClient(roots)
	defer client.CloseIdleConnections()
	// Without a proxy the request would ask DNS, off loopback: stop first.
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr, ok := client.Transport.(*http.Transport); !ok || tr.Proxy == nil {
		t.Fatal("the control plane's mint client ignores HTTPS_PROXY")
	} else if u, err := tr.Proxy(req); err != nil || u == nil || u.Host != proxy.addr {
		t.Fatalf("the control plane's mint client would go through %v (%v), want %s", u, err, proxy.addr)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("control plane's mint through HTTPS_PROXY: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != `{"access_token":"t"}` {
		t.Fatalf("issuer answered %d %q", resp.StatusCode, body)
	}
	if got := proxy.asked(); !slices.Equal(got, []string{"example.com:" + port}) {
		t.Fatalf("the proxy was asked for %q, want one tunnel to example.com:%s", got, port)
	}

	// The sidecar's client is given no proxy at all, whatever the
	// environment says: a direct request to a name would need DNS, which
	// a loopback-only test cannot use, so its transport says it.
	tr, ok := sidecarMintClient(roots).Transport.(*http.Transport)
	if !ok || tr.Proxy != nil {
		t.Fatalf("the sidecar's mint client has a proxy (transport %T)", sidecarMintClient(roots).Transport)
	}
}
