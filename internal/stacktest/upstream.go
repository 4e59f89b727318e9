package stacktest

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stackctl/stack/proxy/ca"
)

// TLSUpstream is a real TLS server on loopback, speaking HTTP/1.1 and
// HTTP/2, whose certificates are minted per SNI name by its own CA: the
// API a test sends requests to through the proxy.
type TLSUpstream struct {
	Server *httptest.Server
	CA     *ca.CA
	// CAFile holds CA's certificate in PEM, for the proxy's
	// --upstream-ca.
	CAFile string
	Port   string // the port every host name is served on
}

// StartTLSUpstream serves h with a new CA named caName. certHost maps the
// TLS client's server name to the host a certificate is minted for; an
// error refuses the handshake. The server is closed at the end of the test.
func StartTLSUpstream(t testing.TB, caName string, h http.Handler, certHost func(serverName string) (string, error)) *TLSUpstream {
	t.Helper()
	authority, err := ca.Generate(time.Now(), caName)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(caFile, authority.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	leaves := ca.NewLeafCache(ca.CacheOptions{})
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			host, err := certHost(hello.ServerName)
			if err != nil {
				return nil, err
			}
			return leaves.Fetch(host, func() (*tls.Certificate, error) { return authority.Leaf(host) })
		},
	}
	srv.EnableHTTP2 = true
	// Refused handshakes are expected (an untrusted CA, an unknown name);
	// keep them out of the test output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return &TLSUpstream{Server: srv, CA: authority, CAFile: caFile, Port: port}
}

// URL is an https URL for path on host at the upstream's port.
func (u *TLSUpstream) URL(host, path string) string {
	return "https://" + net.JoinHostPort(host, u.Port) + path
}
