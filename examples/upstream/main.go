// Command upstream is a stand-in for the Stripe and OpenAI APIs, for trying
// STACK without real accounts (examples/docker-compose.yml runs it). It
// serves HTTPS for api.stripe.com and api.openai.com with certificates from
// a CA it generates at start and writes to -ca-out, so that the sidecar can
// trust it with --upstream-ca.
//
// It answers GET /v1/balance, GET and POST /v1/charges, GET /v1/models and
// POST /v1/chat/completions with minimal JSON, and only when the request
// carries the real key for its host (UPSTREAM_STRIPE_KEY,
// UPSTREAM_OPENAI_KEY): a placeholder or any other key gets a 401. So a 200
// proves the sidecar injected the secret. It logs one line per request,
// never the key.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

const (
	stripeHost = "api.stripe.com"
	openaiHost = "api.openai.com"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8443", "address to serve HTTPS on")
	caOut := flag.String("ca-out", "upstream-ca.pem", "where to write the CA certificate the sidecar must trust")
	flag.Parse()
	keys := map[string]string{stripeHost: os.Getenv("UPSTREAM_STRIPE_KEY"), openaiHost: os.Getenv("UPSTREAM_OPENAI_KEY")}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *caOut, keys, nil); err != nil {
		log.Fatal("upstream: ", err)
	}
}

// run serves until ctx ends. ready, when not nil, receives the listening
// address once the CA is written.
func run(ctx context.Context, listen, caOut string, keys map[string]string, ready chan<- string) error {
	tlsCfg, caPEM, err := newTLS([]string{stripeHost, openaiHost})
	if err != nil {
		return err
	}
	if err := os.WriteFile(caOut, caPEM, 0o644); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: &api{keys: keys}, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("upstream: serving %s and %s on %s; CA in %s", stripeHost, openaiHost, ln.Addr(), caOut)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// newTLS makes a CA and one leaf certificate for hosts.
func newTLS(hosts []string) (*tls.Config, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "example upstream CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}},
	}
	return cfg, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

// api plays the two APIs.
type api struct{ keys map[string]string }

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	want := a.keys[host]
	got := r.Header.Get("Authorization")
	if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+want)) != 1 {
		log.Printf("upstream: %s %s %s: 401, not the real key", host, r.Method, r.URL.Path)
		reply(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"type": "invalid_request_error", "message": "Invalid API key provided."}})
		return
	}
	log.Printf("upstream: %s %s %s: the real key arrived", host, r.Method, r.URL.Path)
	switch {
	case host == stripeHost && r.Method == http.MethodGet && r.URL.Path == "/v1/balance":
		reply(w, http.StatusOK, map[string]any{
			"object": "balance", "livemode": false,
			"available": []any{map[string]any{"amount": 1250, "currency": "usd"}}, "pending": []any{},
		})
	case host == stripeHost && r.Method == http.MethodPost && r.URL.Path == "/v1/charges":
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		amount, _ := strconv.ParseInt(r.PostForm.Get("amount"), 10, 64)
		reply(w, http.StatusOK, map[string]any{
			"id": "ch_example_1", "object": "charge", "amount": amount, "currency": r.PostForm.Get("currency"),
			"status": "succeeded", "paid": true, "livemode": false, "description": r.PostForm.Get("description"),
		})
	case host == stripeHost && r.Method == http.MethodGet && r.URL.Path == "/v1/charges":
		reply(w, http.StatusOK, map[string]any{
			"object": "list", "url": "/v1/charges", "has_more": false,
			"data": []any{map[string]any{"id": "ch_example_1", "object": "charge", "amount": 2000, "currency": "usd"}},
		})
	case host == openaiHost && r.Method == http.MethodGet && r.URL.Path == "/v1/models":
		reply(w, http.StatusOK, map[string]any{"object": "list", "data": []any{
			map[string]any{"id": "gpt-example", "object": "model", "created": 1764072000, "owned_by": "example"},
		}})
	case host == openaiHost && r.Method == http.MethodPost && r.URL.Path == "/v1/chat/completions":
		reply(w, http.StatusOK, map[string]any{
			"id": "chatcmpl-example", "object": "chat.completion", "created": 1764072000, "model": "gpt-example",
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": "hello from the example upstream"}}},
			"usage": map[string]any{"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
		})
	default:
		reply(w, http.StatusNotFound, map[string]any{"error": map[string]any{
			"type": "invalid_request_error", "message": fmt.Sprintf("Unrecognized request URL (%s %s).", r.Method, r.URL.Path)}})
	}
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
