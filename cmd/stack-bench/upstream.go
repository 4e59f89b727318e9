package main

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/stackctl/stack/internal/benchkit"
	"github.com/stackctl/stack/proxy/ca"
)

// upstream is the TLS origin every target forwards to: HTTP/1.1 and h2,
// one fixed JSON answer of about the configured size, with a certificate
// for benchHost from its own test CA.
type upstream struct {
	srv   *http.Server
	ln    net.Listener
	ca    *ca.CA
	body  []byte
	ctype string
	// secret is the credential the STACK target injects; requests that
	// carry it are counted, so a run shows injection really happened.
	secret string

	requests atomic.Int64
	injected atomic.Int64
}

// startUpstream serves on 127.0.0.1:0 until close.
func startUpstream(host string, respSize int, text bool, secret string) (*upstream, error) {
	authority, err := ca.Generate(time.Now(), "stack-bench upstream CA")
	if err != nil {
		return nil, err
	}
	leaf, err := authority.Leaf(host)
	if err != nil {
		return nil, err
	}
	u := &upstream{ca: authority, body: benchkit.BalanceJSON(respSize), ctype: "application/json", secret: secret}
	if text {
		u.body, u.ctype = benchkit.Prose(respSize), "text/plain; charset=utf-8"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u.ln = ln
	u.srv = &http.Server{
		Handler: http.HandlerFunc(u.serve),
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*leaf},
			NextProtos:   []string{"h2", "http/1.1"},
		},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go u.srv.ServeTLS(ln, "", "") //nolint:errcheck // ends with close
	return u, nil
}

// port is the upstream's TCP port.
func (u *upstream) port() string {
	_, p, _ := net.SplitHostPort(u.ln.Addr().String())
	return p
}

func (u *upstream) close() { u.srv.Close() }

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.requests.Add(1)
	if u.secret != "" && r.Header.Get("Authorization") == "Bearer "+u.secret {
		u.injected.Add(1)
	}
	// Drain any request body so the connection stays reusable.
	io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	h := w.Header()
	h.Set("Content-Type", u.ctype)
	h.Set("Content-Length", strconv.Itoa(len(u.body)))
	w.Write(u.body)
}
