package ca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

var epoch = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func mustGenerate(t testing.TB, now time.Time) *CA {
	t.Helper()
	c, err := Generate(now, "STACK test CA")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pool(c *CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Certificate())
	return p
}

// serveTLS runs a loopback TLS server that completes one handshake per
// connection and writes "ok". The server is closed and its goroutines
// waited for when the test ends.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				tc := tls.Server(conn, cfg)
				if err := tc.Handshake(); err != nil {
					return
				}
				_, _ = io.WriteString(tc, "ok")
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dialTLS connects to addr as a client that trusts roots and expects the
// server to be serverName, reads the greeting and returns the state.
func dialTLS(addr, serverName string, roots *x509.CertPool) (tls.ConnectionState, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{
		RootCAs:    roots,
		ServerName: serverName,
		NextProtos: []string{"h2", "http/1.1"},
	})
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	buf := make([]byte, 2)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return tls.ConnectionState{}, err
	}
	if string(buf) != "ok" {
		return tls.ConnectionState{}, errors.New("unexpected greeting " + string(buf))
	}
	return conn.ConnectionState(), nil
}
