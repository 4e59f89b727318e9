package otlp_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stackctl/stack/audit/otlp"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
)

// A 503 with Retry-After is retried after the wait the receiver asked
// for, not the (much shorter) backoff, with the same bytes.
func TestRetryAfter503ThenSuccess(t *testing.T) {
	f := newFakeReceiver(t,
		protoAnswer(t, http.StatusServiceUnavailable, &spb.Status{Code: 14, Message: "queue full"}, map[string]string{"Retry-After": "1"}),
		answer{status: http.StatusOK},
	)
	e, logs := newExporter(t, otlp.Options{Endpoint: f.srv.URL})
	start := time.Now()
	if err := e.Export(testCtx(t), sampleEntries(3)); err != nil {
		t.Fatalf("Export: %v", err)
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("retried after %s; the receiver asked for 1s", took)
	}
	got := f.requests()
	if len(got) != 2 {
		t.Fatalf("receiver saw %d requests, want 2", len(got))
	}
	if !bytes.Equal(got[0].raw, got[1].raw) {
		t.Error("the retry sent other bytes than the first attempt")
	}
	retried := logs.FilterMessage("OTLP export failed; retrying").All()
	if len(retried) != 1 || !strings.Contains(retried[0].ContextMap()["error"].(string), "queue full") {
		t.Errorf("want one retry logged with the receiver's message, got %v", retried)
	}
}

// The other statuses the specification calls transient are retried too.
func TestRetryTransientStatuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
	}{
		{"too many requests", http.StatusTooManyRequests},
		{"bad gateway", http.StatusBadGateway},
		{"gateway timeout", http.StatusGatewayTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeReceiver(t, answer{status: tc.status}, answer{status: tc.status}, answer{status: http.StatusOK})
			e, _ := newExporter(t, otlp.Options{Endpoint: f.srv.URL})
			if err := e.Export(testCtx(t), sampleEntries(2)); err != nil {
				t.Fatalf("Export: %v", err)
			}
			if n := len(f.requests()); n != 3 {
				t.Errorf("receiver saw %d requests, want 3", n)
			}
		})
	}
}

// Any other failure is returned at once, with the receiver's message.
func TestPermanentStatus(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answer  answer
		status  int
		message string
	}{
		{"400 with google.rpc.Status", protoAnswer(t, 400, &spb.Status{Code: 3, Message: "log record has no timestamp"}, nil), 400, "log record has no timestamp"},
		{"401 in text", answer{status: 401, header: map[string]string{"Content-Type": "text/plain"}, body: []byte("invalid API key\n")}, 401, "invalid API key"},
		{"403 in JSON Status", answer{status: 403, header: map[string]string{"Content-Type": "application/json"}, body: []byte(`{"code":7,"message":"tenant disabled"}`)}, 403, "tenant disabled"},
		{"404 empty", answer{status: 404}, 404, ""},
		{"413", protoAnswer(t, 413, &spb.Status{Code: 8, Message: "request too large"}, nil), 413, "request too large"},
		{"500 is not transient in OTLP", protoAnswer(t, 500, &spb.Status{Code: 13, Message: "Permanent error: disk"}, nil), 500, "Permanent error: disk"},
		{"control characters dropped", answer{status: 400, header: map[string]string{"Content-Type": "text/plain"}, body: []byte("bad\x1b[31m\nrecord")}, 400, "bad[31m record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeReceiver(t, tc.answer)
			e, _ := newExporter(t, otlp.Options{Endpoint: f.srv.URL})
			err := e.Export(testCtx(t), sampleEntries(2))
			var he *otlp.HTTPError
			if !errors.As(err, &he) {
				t.Fatalf("Export error %v is not an *HTTPError", err)
			}
			if he.StatusCode != tc.status || he.Message != tc.message || he.Retryable {
				t.Errorf("got %+v, want status %d message %q, not retryable", he, tc.status, tc.message)
			}
			if !errors.Is(err, otlp.ErrPermanent) {
				t.Errorf("error %v does not wrap ErrPermanent", err)
			}
			if tc.message != "" && !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not say %q", err, tc.message)
			}
			if n := len(f.requests()); n != 1 {
				t.Errorf("receiver saw %d requests, want 1 (no retry)", n)
			}
		})
	}
}

// A partial success that rejects records is a *PartialError saying how
// many and why; one with only a message is a warning in the log.
func TestPartialSuccess(t *testing.T) {
	t.Run("rejected", func(t *testing.T) {
		f := newFakeReceiver(t, protoAnswer(t, 200, &collogspb.ExportLogsServiceResponse{
			PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 2, ErrorMessage: "timestamps too old"},
		}, nil))
		e, logs := newExporter(t, otlp.Options{Endpoint: f.srv.URL})
		err := e.Export(testCtx(t), sampleEntries(3))
		var pe *otlp.PartialError
		if !errors.As(err, &pe) {
			t.Fatalf("Export error %v is not a *PartialError", err)
		}
		if pe.Rejected != 2 || pe.Total != 3 || len(pe.Messages) != 1 || pe.Messages[0] != "timestamps too old" {
			t.Errorf("got %+v", pe)
		}
		if want := "rejected 2 of 3 log records: timestamps too old"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
		if errors.Is(err, otlp.ErrPermanent) {
			t.Error("a partial success is not a permanent failure")
		}
		if n := len(f.requests()); n != 1 {
			t.Errorf("receiver saw %d requests, want 1 (a partial success is not retried)", n)
		}
		if n := logs.FilterMessage("the OTLP receiver rejected some audit records").Len(); n != 1 {
			t.Errorf("%d rejections logged, want 1", n)
		}
	})
	t.Run("warning only", func(t *testing.T) {
		f := newFakeReceiver(t, protoAnswer(t, 200, &collogspb.ExportLogsServiceResponse{
			PartialSuccess: &collogspb.ExportLogsPartialSuccess{ErrorMessage: "attribute stack.detail truncated"},
		}, nil))
		e, logs := newExporter(t, otlp.Options{Endpoint: f.srv.URL})
		if err := e.Export(testCtx(t), sampleEntries(3)); err != nil {
			t.Fatalf("Export: %v", err)
		}
		w := logs.FilterMessage("the OTLP receiver accepted the audit records with a warning").All()
		if len(w) != 1 || w[0].ContextMap()["message"] != "attribute stack.detail truncated" {
			t.Errorf("warning not logged: %v", w)
		}
	})
	t.Run("across requests", func(t *testing.T) {
		partial := protoAnswer(t, 200, &collogspb.ExportLogsServiceResponse{
			PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 1, ErrorMessage: "one bad"},
		}, nil)
		f := newFakeReceiver(t, partial, answer{status: 200}, partial)
		e, _ := newExporter(t, otlp.Options{Endpoint: f.srv.URL, MaxRecords: 2})
		err := e.Export(testCtx(t), sampleEntries(5))
		var pe *otlp.PartialError
		if !errors.As(err, &pe) || pe.Rejected != 2 || pe.Total != 5 || len(pe.Messages) != 2 {
			t.Fatalf("got %v (%+v), want 2 of 5 rejected with two messages", err, pe)
		}
		if n := len(f.requests()); n != 3 {
			t.Errorf("receiver saw %d requests, want 3: a partial success does not stop the rest", n)
		}
	})
	t.Run("then a failure", func(t *testing.T) {
		// The caller must not move its cursor past records that never
		// arrived, so the failure wins over the partial success.
		f := newFakeReceiver(t, protoAnswer(t, 200, &collogspb.ExportLogsServiceResponse{
			PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 1},
		}, nil), answer{status: 401})
		e, _ := newExporter(t, otlp.Options{Endpoint: f.srv.URL, MaxRecords: 2})
		err := e.Export(testCtx(t), sampleEntries(4))
		var pe *otlp.PartialError
		if err == nil || errors.As(err, &pe) {
			t.Fatalf("got %v, want the 401 and no *PartialError", err)
		}
		if !strings.Contains(err.Error(), "records 2 to 3 of 4") {
			t.Errorf("error %q does not say which records failed", err)
		}
	})
}

// With Gzip the body is compressed on the wire and says so.
func TestGzipOnWire(t *testing.T) {
	f := newFakeReceiver(t)
	e, _ := newExporter(t, otlp.Options{Endpoint: f.srv.URL, Gzip: true})
	entries := sampleEntries(50)
	if err := e.Export(testCtx(t), entries); err != nil {
		t.Fatalf("Export: %v", err)
	}
	got := f.requests()
	if len(got) != 1 {
		t.Fatalf("receiver saw %d requests, want 1", len(got))
	}
	if ce := got[0].header.Get("Content-Encoding"); ce != "gzip" {
		t.Errorf("Content-Encoding %q, want gzip", ce)
	}
	if !bytes.HasPrefix(got[0].raw, []byte{0x1f, 0x8b}) {
		t.Error("body on the wire is not gzip")
	}
	if n := countRecords(got[0].req); n != len(entries) {
		t.Errorf("decompressed request holds %d records, want %d", n, len(entries))
	}
	if plain := proto.Size(got[0].req); len(got[0].raw) >= plain {
		t.Errorf("compressed body is %d bytes, plain %d", len(got[0].raw), plain)
	}

	f2 := newFakeReceiver(t)
	e2, _ := newExporter(t, otlp.Options{Endpoint: f2.srv.URL})
	if err := e2.Export(testCtx(t), entries); err != nil {
		t.Fatalf("Export: %v", err)
	}
	if ce := f2.requests()[0].header.Get("Content-Encoding"); ce != "" {
		t.Errorf("without Gzip, Content-Encoding is %q", ce)
	}
}

// Configured headers go with every attempt; none of them is logged.
func TestHeadersSent(t *testing.T) {
	const key = "k3y-that-must-not-be-logged"
	f := newFakeReceiver(t, answer{status: 503}, answer{status: 200})
	e, logs := newExporter(t, otlp.Options{
		Endpoint: f.srv.URL,
		Headers:  map[string]string{"x-api-key": key, "X-Scope-OrgID": "tenant-1"},
	})
	if err := e.Export(testCtx(t), sampleEntries(1)); err != nil {
		t.Fatalf("Export: %v", err)
	}
	got := f.requests()
	if len(got) != 2 {
		t.Fatalf("receiver saw %d requests, want 2", len(got))
	}
	for i, r := range got {
		for k, want := range map[string]string{
			"X-Api-Key": key, "X-Scope-Orgid": "tenant-1",
			"Content-Type": "application/x-protobuf", "User-Agent": "stack-audit-otlp (Go)",
		} {
			if v := r.header.Get(k); v != want {
				t.Errorf("attempt %d: %s = %q, want %q", i+1, k, v, want)
			}
		}
	}
	for _, entry := range logs.All() {
		if strings.Contains(entry.Message, key) || strings.Contains(fieldsString(entry.ContextMap()), key) {
			t.Errorf("log entry %q carries the API key", entry.Message)
		}
	}
}

func fieldsString(m map[string]any) string {
	var b strings.Builder
	for k, v := range m {
		b.WriteString(k)
		b.WriteString("=")
		if s, ok := v.(string); ok {
			b.WriteString(s)
		}
		b.WriteString(" ")
	}
	return b.String()
}

// Retries stop when ctx is done, and the error says why and what the
// last attempt met.
func TestContextStopsRetries(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		f := newFakeReceiver(t, answer{status: 503})
		e, _ := newExporter(t, otlp.Options{Endpoint: f.srv.URL, MinBackoff: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := e.Export(ctx, sampleEntries(1))
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Export returned %s after the deadline", took-300*time.Millisecond)
		}
		var he *otlp.HTTPError
		if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &he) || he.StatusCode != 503 {
			t.Fatalf("got %v, want the deadline and the last 503", err)
		}
		if n := len(f.requests()); n < 2 {
			t.Errorf("receiver saw %d requests before the deadline, want several", n)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		f := newFakeReceiver(t, answer{status: 503})
		e, _ := newExporter(t, otlp.Options{Endpoint: f.srv.URL, MinBackoff: time.Hour, MaxBackoff: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Export(ctx, sampleEntries(1)) }()
		waitFor(t, func() bool { return len(f.requests()) == 1 })
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Export kept waiting after its context was cancelled")
		}
	})
	t.Run("retry-after past the deadline", func(t *testing.T) {
		// Waiting for a deadline that comes before the receiver is ready
		// gains nothing: give up at once.
		f := newFakeReceiver(t, answer{status: 429, header: map[string]string{"Retry-After": "60"}})
		e, _ := newExporter(t, otlp.Options{Endpoint: f.srv.URL})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		err := e.Export(ctx, sampleEntries(1))
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Export waited %s", took)
		}
		var he *otlp.HTTPError
		if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &he) || he.RetryAfter != time.Minute {
			t.Fatalf("got %v, want DeadlineExceeded and the 429 asking for 1m", err)
		}
	})
	t.Run("attempt timeout", func(t *testing.T) {
		// An attempt that takes longer than Timeout is abandoned and
		// tried again.
		hold := make(chan struct{})
		defer close(hold)
		f := newFakeReceiver(t, answer{hold: hold}, answer{status: 200})
		e, _ := newExporter(t, otlp.Options{Endpoint: f.srv.URL, Timeout: 100 * time.Millisecond})
		if err := e.Export(testCtx(t), sampleEntries(1)); err != nil {
			t.Fatalf("Export: %v", err)
		}
		// More than two only if the machine is so slow that a plain
		// answer took longer than Timeout too.
		if n := len(f.requests()); n < 2 {
			t.Errorf("receiver saw %d requests, want the held one and a retry", n)
		}
	})
}

// Connection errors are transient: a refused connection and one closed
// without an answer are both retried.
func TestConnectionErrorsRetried(t *testing.T) {
	t.Run("closed without answer", func(t *testing.T) {
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 1 {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
				return
			}
			w.WriteHeader(http.StatusOK)
		}))
		t.Cleanup(srv.Close)
		e, logs := newExporter(t, otlp.Options{Endpoint: srv.URL})
		if err := e.Export(testCtx(t), sampleEntries(1)); err != nil {
			t.Fatalf("Export: %v", err)
		}
		if n.Load() != 2 || logs.FilterMessage("OTLP export failed; retrying").Len() != 1 {
			t.Errorf("server saw %d requests, want 2 with one retry logged", n.Load())
		}
	})
	t.Run("refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		e, logs := newExporter(t, otlp.Options{Endpoint: "http://" + addr})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		err = e.Export(ctx, sampleEntries(1))
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("got %v, want the deadline after refused connections", err)
		}
		if logs.FilterMessage("OTLP export failed; retrying").Len() < 2 {
			t.Error("a refused connection was not retried")
		}
	})
}

// A redirect is not followed, so headers never reach another host.
func TestRedirectNotFollowed(t *testing.T) {
	other := newFakeReceiver(t)
	f := newFakeReceiver(t, answer{status: http.StatusTemporaryRedirect, header: map[string]string{"Location": other.srv.URL + "/v1/logs"}})
	e, _ := newExporter(t, otlp.Options{Endpoint: f.srv.URL, Headers: map[string]string{"Authorization": "Bearer x"}})
	err := e.Export(testCtx(t), sampleEntries(1))
	if !errors.Is(err, otlp.ErrPermanent) || !strings.Contains(err.Error(), "redirected to "+other.srv.URL) {
		t.Fatalf("got %v, want a permanent error naming the redirect", err)
	}
	if n := len(other.requests()); n != 0 {
		t.Errorf("the redirect target saw %d requests", n)
	}
}

// Export after Close fails; Close twice is fine.
func TestClose(t *testing.T) {
	f := newFakeReceiver(t)
	e, _ := newExporter(t, otlp.Options{Endpoint: f.srv.URL})
	if err := e.Export(testCtx(t), sampleEntries(1)); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Export(testCtx(t), sampleEntries(1)); !errors.Is(err, otlp.ErrClosed) {
		t.Fatalf("Export after Close: %v, want ErrClosed", err)
	}
}

// Nothing to export sends nothing.
func TestExportNothing(t *testing.T) {
	f := newFakeReceiver(t)
	e, _ := newExporter(t, otlp.Options{Endpoint: f.srv.URL})
	if err := e.Export(testCtx(t), nil); err != nil {
		t.Fatal(err)
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("receiver saw %d requests", n)
	}
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
