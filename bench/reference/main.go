// Command reference is the minimal goproxy MITM proxy that stack-bench
// measures the STACK sidecar against: goproxy with ConnectMitm, its own
// ECDSA CA from proxy/ca with a bounded leaf cache, and a transport that
// trusts the upstream CA. It has no passport check, no injection, no
// detectors and no audit log, so the difference between it and `stack
// proxy` is the cost of the pipeline, not of goproxy.
//
// Usage:
//
//	reference --listen 127.0.0.1:0 --ready-file FILE --ca-out CA.pem \
//	  --upstream-ca UP.pem [--resolve HOST=IP]... [--tunnel]
//
// It writes the CA certificate to --ca-out, then the listening address to
// --ready-file, and serves until SIGINT or SIGTERM. With --tunnel it passes
// CONNECT tunnels through without interception.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/stackctl/stack/proxy/ca"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "reference:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("reference", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "proxy address")
	readyFile := fs.String("ready-file", "", "write the listening address here once serving")
	caOut := fs.String("ca-out", "", "write the interception CA certificate (PEM) here")
	upstreamCA := fs.String("upstream-ca", "", "PEM roots trusted for upstream TLS (besides the system roots)")
	tunnel := fs.Bool("tunnel", false, "pass CONNECT tunnels through without interception")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run here")
	var resolve stringList
	fs.Var(&resolve, "resolve", "pin HOST=IP (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	pinned := map[string]string{}
	for _, r := range resolve {
		h, ip, ok := strings.Cut(r, "=")
		if !ok || net.ParseIP(ip) == nil {
			return fmt.Errorf("--resolve %q: want HOST=IP", r)
		}
		pinned[strings.ToLower(h)] = ip
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if *upstreamCA != "" {
		pem, err := os.ReadFile(*upstreamCA)
		if err != nil {
			return err
		}
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s holds no certificate", *upstreamCA)
		}
	}
	authority, err := ca.Generate(time.Now(), "reference MITM CA")
	if err != nil {
		return err
	}
	if *caOut != "" {
		if err := os.WriteFile(*caOut, authority.CertPEM(), 0o600); err != nil {
			return err
		}
	}

	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if ip, ok := pinned[strings.ToLower(host)]; ok {
			addr = net.JoinHostPort(ip, port)
		}
		return dialer.DialContext(ctx, network, addr)
	}
	// The same transport settings as the STACK proxy's, so the comparison
	// is of the pipelines, not of connection pooling.
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		ExpectContinueTimeout: time.Second,
	}
	leaves := ca.NewLeafCache(ca.CacheOptions{})
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = tr
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = func(req *http.Request, network, addr string) (net.Conn, error) {
		return dial(req.Context(), network, addr)
	}
	gp.CertStore = leaves
	gp.Verbose = false
	gp.Logger = log.New(os.Stderr, "", 0)
	gp.KeepAcceptEncoding = true
	gp.OnRequest().HandleConnectFunc(func(host string, _ *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		if *tunnel {
			return goproxy.OkConnect, host
		}
		return &goproxy.ConnectAction{
			Action: goproxy.ConnectMitm,
			TLSConfig: func(h string, _ *goproxy.ProxyCtx) (*tls.Config, error) {
				return authority.ServerConfig(leaves, h), nil
			},
		}, host
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           gp,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          log.New(os.Stderr, "http: ", 0),
	}
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, []byte(ln.Addr().String()), 0o600); err != nil {
			ln.Close()
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	tr.CloseIdleConnections()
	return nil
}
