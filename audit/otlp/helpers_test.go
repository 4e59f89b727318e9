package otlp_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/audit/otlp"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"
)

// newExporter makes an exporter that the test closes when it ends, with
// a short backoff so that fault cases run quickly, and a log the test
// can read.
func newExporter(t testing.TB, opts otlp.Options) (*otlp.Exporter, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	if opts.Log == nil {
		opts.Log = zap.New(core)
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 10 * time.Millisecond
	}
	e, err := otlp.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, logs
}

// testCtx bounds a test's exports so that a broken retry loop fails the
// test instead of hanging it.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sampleEntries returns n entries like the fleet log holds, alternating
// between two sidecars' logs.
func sampleEntries(n int) []otlp.Entry {
	out := make([]otlp.Entry, n)
	for i := range out {
		side := "sc-a"
		if i%2 == 1 {
			side = "sc-b"
		}
		out[i] = otlp.Entry{
			Record: audit.Record{
				Seq: uint64(i + 1), EventID: "ev-" + strconv.Itoa(i), TimestampMS: 1_767_225_600_000 + int64(i),
				AgentID: "billing-agent", PassportJTI: "jti-1", Action: audit.ActionCredentialAccess,
				CredentialID: "stripe", CredentialFingerprint: "fp:12ab", Host: "api.stripe.com",
				Method: "POST", Path: "/v1/charges", Status: 200, BytesIn: 120, BytesOut: 2048, DurationMS: 35,
				PrevHash: audit.GenesisHash, Hash: audit.Hash{byte(i), 1, 2, 3},
			},
			Agent: "billing-agent", Sidecar: side, Log: "log-" + side, FleetIndex: uint64(100 + i),
		}
	}
	return out
}

// received is one request as a fake receiver saw it.
type received struct {
	header http.Header
	raw    []byte // as on the wire
	req    *collogspb.ExportLogsServiceRequest
}

// answer is what a fake receiver replies to one request.
type answer struct {
	status int
	header map[string]string
	body   []byte
	// hold, when set, delays the answer until it is closed or the
	// request is cancelled.
	hold chan struct{}
}

// fakeReceiver is a loopback OTLP/HTTP endpoint for the fault cases the
// Collector's receiver cannot be made to produce on cue. It decodes every
// request with the official protobuf types and replies with its scripted
// answers in turn, repeating the last.
type fakeReceiver struct {
	t   testing.TB
	srv *httptest.Server

	mu      sync.Mutex
	answers []answer
	got     []received
}

func newFakeReceiver(t testing.TB, answers ...answer) *fakeReceiver {
	f := &fakeReceiver{t: t, answers: answers}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeReceiver) serve(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	body := raw
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			f.t.Errorf("gzip body does not decompress: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	req := &collogspb.ExportLogsServiceRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		f.t.Errorf("body does not decode as ExportLogsServiceRequest: %v", err)
	}
	f.mu.Lock()
	f.got = append(f.got, received{header: r.Header.Clone(), raw: raw, req: req})
	a := answer{status: http.StatusOK}
	if len(f.answers) > 0 {
		a = f.answers[0]
		if len(f.answers) > 1 {
			f.answers = f.answers[1:]
		}
	}
	f.mu.Unlock()
	if a.hold != nil {
		select {
		case <-a.hold:
		case <-r.Context().Done():
			return
		}
	}
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	if a.status == 0 {
		a.status = http.StatusOK
	}
	w.WriteHeader(a.status)
	w.Write(a.body)
}

// requests returns what the receiver has seen so far.
func (f *fakeReceiver) requests() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]received(nil), f.got...)
}

// protoAnswer is a reply whose body is m in protobuf.
func protoAnswer(t testing.TB, status int, m proto.Message, header map[string]string) answer {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{"Content-Type": "application/x-protobuf"}
	for k, v := range header {
		h[k] = v
	}
	return answer{status: status, header: h, body: b}
}

// countRecords counts the log records of a request.
func countRecords(req *collogspb.ExportLogsServiceRequest) int {
	n := 0
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			n += len(sl.GetLogRecords())
		}
	}
	return n
}
