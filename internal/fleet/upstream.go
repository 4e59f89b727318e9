package fleet

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/stackctl/stack/proxy/ca"
)

// upstream is the API every agent calls: TLS on loopback with
// certificates from its own CA, answering 200 only to requests that
// carry the real credential, which only a sidecar holding the lease can
// have injected.
type upstream struct {
	srv    *http.Server
	ln     net.Listener
	port   string
	caFile string
	secret string
	served atomic.Int64
	denied atomic.Int64 // requests without the credential
}

func startUpstream(caFile, secret string) (*upstream, error) {
	authority, err := ca.Generate(time.Now(), "fleet upstream CA")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(caFile, authority.CertPEM(), 0o600); err != nil {
		return nil, err
	}
	leaves := ca.NewLeafCache(ca.CacheOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{ln: ln, caFile: caFile, secret: secret}
	_, u.port, _ = net.SplitHostPort(ln.Addr().String())
	u.srv = &http.Server{
		Handler:           http.HandlerFunc(u.serve),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2", "http/1.1"},
			GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if hello.ServerName != apiHost {
					return nil, errors.New("unknown host")
				}
				return leaves.Fetch(apiHost, func() (*tls.Certificate, error) { return authority.Leaf(apiHost) })
			},
		},
	}
	go u.srv.ServeTLS(ln, "", "")
	return u, nil
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+u.secret {
		u.denied.Add(1)
		http.Error(w, "no credential", http.StatusUnauthorized)
		return
	}
	u.served.Add(1)
	io.WriteString(w, "ok\n")
}

func (u *upstream) url(path string) string {
	return "https://" + net.JoinHostPort(apiHost, u.port) + path
}

func (u *upstream) close() error { return u.srv.Close() }
