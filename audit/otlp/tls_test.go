package otlp_test

import (
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stackctl/stack/audit/otlp"
)

// An https receiver is trusted through RootCAs, and only through them: a
// certificate that does not verify is a permanent failure, not retried.
func TestTLSRootCAs(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if r.URL.Path != "/v1/logs" || r.TLS == nil {
			t.Errorf("request to %s, TLS %v", r.URL.Path, r.TLS != nil)
		}
	}))
	// The failed handshakes below are the point, not news.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())

	t.Run("trusted", func(t *testing.T) {
		e, _ := newExporter(t, otlp.Options{Endpoint: srv.URL, RootCAs: roots, Gzip: true})
		if err := e.Export(testCtx(t), sampleEntries(2)); err != nil {
			t.Fatalf("Export: %v", err)
		}
		if n.Load() != 1 {
			t.Errorf("server saw %d requests, want 1", n.Load())
		}
	})
	t.Run("system roots", func(t *testing.T) {
		n.Store(0)
		e, logs := newExporter(t, otlp.Options{Endpoint: srv.URL})
		err := e.Export(testCtx(t), sampleEntries(2))
		if !errors.Is(err, otlp.ErrPermanent) || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("got %v, want a permanent certificate error", err)
		}
		if logs.FilterMessage("OTLP export failed; retrying").Len() != 0 || n.Load() != 0 {
			t.Error("an untrusted certificate was retried or reached the handler")
		}
	})
	t.Run("plain http to a TLS port", func(t *testing.T) {
		e, _ := newExporter(t, otlp.Options{Endpoint: "http://" + srv.Listener.Addr().String()})
		err := e.Export(testCtx(t), sampleEntries(1))
		// The server answers plain HTTP with a 400 of its own.
		if !errors.Is(err, otlp.ErrPermanent) {
			t.Fatalf("got %v, want a permanent failure", err)
		}
	})
}
