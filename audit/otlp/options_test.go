package otlp_test

import (
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/audit/otlp"
)

// New says what is wrong with Options, all of it at once, and never
// repeats a secret from the endpoint or the headers.
func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  otlp.Options
		want  []string // each must appear in the error
		never string   // must not appear in the error
	}{
		{name: "empty endpoint", opts: otlp.Options{}, want: []string{"endpoint is empty", "http://collector:4318"}},
		{name: "no scheme", opts: otlp.Options{Endpoint: "collector:4318"}, want: []string{"not an http:// or https:// URL"}},
		{name: "host and port only", opts: otlp.Options{Endpoint: "//collector:4318"}, want: []string{"not an http:// or https:// URL"}},
		{name: "grpc scheme", opts: otlp.Options{Endpoint: "grpc://collector:4317"}, want: []string{"not an http:// or https:// URL"}},
		{name: "no host", opts: otlp.Options{Endpoint: "http:///v1/logs"}, want: []string{"with a host"}},
		{name: "spaces", opts: otlp.Options{Endpoint: " http://collector:4318"}, want: []string{"spaces"}},
		{name: "bad port", opts: otlp.Options{Endpoint: "http://collector:43x8"}, want: []string{"does not parse"}},
		{name: "password in URL", opts: otlp.Options{Endpoint: "https://user:hunter2@siem.example.com"}, want: []string{"user information", "Headers"}, never: "hunter2"},
		{name: "key in query", opts: otlp.Options{Endpoint: "https://siem.example.com/otlp?api_key=hunter2"}, want: []string{"has a query", "Headers"}, never: "hunter2"},
		{name: "fragment", opts: otlp.Options{Endpoint: "https://siem.example.com/#x"}, want: []string{"fragment"}},
		{name: "bad header name", opts: otlp.Options{Endpoint: "http://c:4318", Headers: map[string]string{"x key": "v"}}, want: []string{`header name "x key"`}},
		{name: "bad header value", opts: otlp.Options{Endpoint: "http://c:4318", Headers: map[string]string{"X-Key": "hunter2\r\nX: y"}}, want: []string{"header X-Key has a value"}, never: "hunter2"},
		{name: "framing header", opts: otlp.Options{Endpoint: "http://c:4318", Headers: map[string]string{"content-type": "application/json"}}, want: []string{"header Content-Type is set by the exporter"}},
		{name: "reserved resource", opts: otlp.Options{Endpoint: "http://c:4318", Resource: map[string]string{"service.name": "x", "stack.log": "y"}}, want: []string{"service.name is set by the exporter", "stack.log is set by the exporter"}},
		{name: "empty resource key", opts: otlp.Options{Endpoint: "http://c:4318", Resource: map[string]string{"": "x"}}, want: []string{"empty name"}},
		{name: "negative numbers", opts: otlp.Options{Endpoint: "http://c:4318", Timeout: -1, MaxRecords: -1, MaxBytes: -1}, want: []string{"Timeout is negative", "MaxRecords is negative", "MaxBytes is negative"}},
		{name: "backoff upside down", opts: otlp.Options{Endpoint: "http://c:4318", MinBackoff: time.Minute, MaxBackoff: time.Second}, want: []string{"MinBackoff 1m0s is more than MaxBackoff 1s"}},
		{name: "client and roots", opts: otlp.Options{Endpoint: "http://c:4318", HTTPClient: &http.Client{}, RootCAs: x509.NewCertPool()}, want: []string{"RootCAs applies to the client New builds"}},
		{name: "every problem at once", opts: otlp.Options{Headers: map[string]string{"Host": "x"}, Timeout: -time.Second}, want: []string{"endpoint is empty", "header Host", "Timeout is negative"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := otlp.New(tc.opts)
			if err == nil {
				e.Close()
				t.Fatal("New accepted the options")
			}
			if !errors.Is(err, otlp.ErrInvalidOptions) {
				t.Errorf("error %v does not wrap ErrInvalidOptions", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.never != "" && strings.Contains(err.Error(), tc.never) {
				t.Errorf("error %q repeats %q", err, tc.never)
			}
		})
	}
}

// The endpoint is a base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is, unless
// it already names the logs path.
func TestEndpointPath(t *testing.T) {
	for _, tc := range []struct{ name, path, want string }{
		{"base", "", "/v1/logs"},
		{"base with slash", "/", "/v1/logs"},
		{"prefix", "/otlp", "/otlp/v1/logs"},
		{"prefix with slash", "/otlp/", "/otlp/v1/logs"},
		{"full", "/v1/logs", "/v1/logs"},
		{"full under a prefix", "/tenant/v1/logs", "/tenant/v1/logs"},
		{"escaped", "/a%2Fb", "/a%2Fb/v1/logs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			paths := make(chan string, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { paths <- r.URL.EscapedPath() }))
			t.Cleanup(srv.Close)
			e, _ := newExporter(t, otlp.Options{Endpoint: srv.URL + tc.path})
			if err := e.Export(testCtx(t), sampleEntries(1)); err != nil {
				t.Fatal(err)
			}
			if got := <-paths; got != tc.want {
				t.Errorf("request went to %q, want %q", got, tc.want)
			}
		})
	}
}
