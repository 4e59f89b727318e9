package otlp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"
	"github.com/stackctl/stack/audit"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/proto"
)

// Defaults for the zero values of Options.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultMaxRecords = 1000
	DefaultMaxBytes   = 4 << 20
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 30 * time.Second
)

// userAgent names the exporter to receivers, as the OTLP specification
// asks exporters to.
const userAgent = "stack-audit-otlp (Go)"

// Options configures an Exporter. Only Endpoint is required.
type Options struct {
	// Endpoint is the receiver's base URL (http://host:4318 or
	// https://...), as OTEL_EXPORTER_OTLP_ENDPOINT reads; "/v1/logs" is
	// appended unless the URL already has a path ending in /v1/logs. It
	// may not carry user information or a query: put keys in Headers.
	Endpoint string
	// Headers are sent with every request, such as an API key header.
	// They are never logged. Content-Type, Content-Encoding and the
	// other headers that frame the request are the exporter's own.
	Headers map[string]string
	// RootCAs verifies an https receiver; nil means the system roots.
	// It applies to the client New builds, so it cannot go with
	// HTTPClient.
	RootCAs *x509.CertPool
	// Proxy picks the proxy for a request, as http.Transport.Proxy does
	// (golang.org/x/net/http/httpproxy reads the environment's). Nil
	// means no proxy, whatever HTTPS_PROXY says. It applies to the client
	// New builds, so it cannot go with HTTPClient.
	Proxy func(*http.Request) (*url.URL, error)
	// Timeout bounds each attempt; DefaultTimeout when zero.
	Timeout time.Duration
	// Resource attributes beside service.name="stack-control" (e.g.
	// service.instance.id). service.name and the stack.agent,
	// stack.sidecar and stack.log attributes are set by the exporter.
	Resource map[string]string
	// Gzip compresses request bodies (default on in config).
	Gzip bool
	// Log receives retries, partial successes and the like; nil logs
	// nothing.
	Log *zap.Logger
	// HTTPClient, when set, sends the requests instead of the client New
	// builds (which uses RootCAs and Proxy, and follows no redirects). It
	// is for tests and unusual proxies; Close leaves it alone.
	HTTPClient *http.Client

	// MaxRecords bounds the records in one request; DefaultMaxRecords
	// when zero.
	MaxRecords int
	// MaxBytes bounds a request's encoded size before compression (what
	// receivers limit after decompressing); DefaultMaxBytes when zero.
	// A record larger than this on its own is sent alone.
	MaxBytes int
	// MinBackoff and MaxBackoff bound the wait between attempts, which
	// doubles from MinBackoff, with jitter, up to MaxBackoff, unless the
	// receiver says how long in Retry-After. DefaultMinBackoff and
	// DefaultMaxBackoff when zero.
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock that stamps observed times and reads Retry-After
	// dates; nil means time.Now.
	Now func() time.Time
}

// Entry is one accepted record of the fleet log and who shipped it.
type Entry struct {
	Record              audit.Record // github.com/stackctl/stack/audit
	Agent, Sidecar, Log string       // which agent/sidecar/sidecar-log shipped it
	FleetIndex          uint64       // leaf index in the fleet log
	// FleetPosition is the record's place within its leaf, which holds a
	// run of records: with FleetIndex, where the record is in the fleet log.
	FleetPosition int
}

// Exporter sends entries to one OTLP/HTTP receiver. Its methods are safe
// for concurrent use.
type Exporter struct {
	url           string
	header        http.Header
	client        *http.Client
	own           *http.Transport // nil when the caller gave the client
	timeout       time.Duration
	gzip          bool
	log           *zap.Logger
	maxRecords    int
	maxBytes      int
	minBackoff    time.Duration
	maxBackoff    time.Duration
	now           func() time.Time
	resourceAttrs []*commonpb.KeyValue
	closed        atomic.Bool
}

// framing are the headers the exporter sets itself.
var framing = []string{"Content-Type", "Content-Encoding", "Content-Length", "Transfer-Encoding", "Host", "Connection"}

// New checks opts and returns an Exporter. Its error lists every problem
// with opts and wraps ErrInvalidOptions.
func New(opts Options) (*Exporter, error) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	u, err := logsURL(opts.Endpoint)
	if err != nil {
		bad("%v", err)
	}
	header := http.Header{}
	for _, k := range sortedKeys(opts.Headers) {
		v := opts.Headers[k]
		switch {
		case !httpguts.ValidHeaderFieldName(k):
			bad("header name %q is not a valid HTTP header name", k)
		case slices.Contains(framing, http.CanonicalHeaderKey(k)):
			bad("header %s is set by the exporter", http.CanonicalHeaderKey(k))
		case !httpguts.ValidHeaderFieldValue(v):
			// The value may be a key: say where, not what.
			bad("header %s has a value with characters HTTP does not allow", http.CanonicalHeaderKey(k))
		default:
			header.Set(k, v)
		}
	}
	header.Set("Content-Type", "application/x-protobuf")
	if header.Get("User-Agent") == "" {
		header.Set("User-Agent", userAgent)
	}
	if opts.Gzip {
		header.Set("Content-Encoding", "gzip")
	}

	resourceAttrs := []*commonpb.KeyValue{{Key: attrServiceName, Value: stringValue(ServiceName)}}
	for _, k := range sortedKeys(opts.Resource) {
		v := opts.Resource[k]
		switch {
		case k == "":
			bad("resource attribute with an empty name")
		case slices.Contains(reservedResource, k):
			bad("resource attribute %s is set by the exporter", k)
		case !utf8.ValidString(k) || !utf8.ValidString(v):
			bad("resource attribute %q is not UTF-8", validUTF8(k))
		default:
			resourceAttrs = append(resourceAttrs, &commonpb.KeyValue{Key: k, Value: stringValue(v)})
		}
	}

	nonNegative := func(name string, v int64) {
		if v < 0 {
			bad("%s is negative", name)
		}
	}
	nonNegative("Timeout", int64(opts.Timeout))
	nonNegative("MaxRecords", int64(opts.MaxRecords))
	nonNegative("MaxBytes", int64(opts.MaxBytes))
	nonNegative("MinBackoff", int64(opts.MinBackoff))
	nonNegative("MaxBackoff", int64(opts.MaxBackoff))
	minB, maxB := orDefault(opts.MinBackoff, DefaultMinBackoff), orDefault(opts.MaxBackoff, DefaultMaxBackoff)
	if minB > maxB && opts.MinBackoff >= 0 && opts.MaxBackoff >= 0 {
		bad("MinBackoff %s is more than MaxBackoff %s", minB, maxB)
	}
	if opts.HTTPClient != nil && opts.RootCAs != nil {
		bad("RootCAs applies to the client New builds; with HTTPClient, set the roots in its transport")
	}
	if opts.HTTPClient != nil && opts.Proxy != nil {
		bad("Proxy applies to the client New builds; with HTTPClient, set the proxy in its transport")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalidOptions, strings.Join(problems, "; "))
	}

	e := &Exporter{
		url:           u,
		header:        header,
		client:        opts.HTTPClient,
		timeout:       orDefault(opts.Timeout, DefaultTimeout),
		gzip:          opts.Gzip,
		log:           opts.Log,
		maxRecords:    orDefault(opts.MaxRecords, DefaultMaxRecords),
		maxBytes:      orDefault(opts.MaxBytes, DefaultMaxBytes),
		minBackoff:    minB,
		maxBackoff:    maxB,
		now:           opts.Now,
		resourceAttrs: resourceAttrs,
	}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.client == nil {
		e.own = newTransport(opts.RootCAs, opts.Proxy)
		e.client = &http.Client{
			Transport: e.own,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	if pu, err := url.Parse(u); err == nil && pu.Port() == "4317" {
		e.log.Warn("the OTLP endpoint's port is 4317, where OTLP/gRPC listens; OTLP/HTTP usually listens on 4318",
			zap.String("url", u))
	}
	return e, nil
}

// newTransport sets every knob on the security path rather than take
// net/http's defaults: its own roots, TLS 1.2 at least, and a proxy only
// when one is given (DefaultTransport would read HTTPS_PROXY).
func newTransport(roots *x509.CertPool, proxy func(*http.Request) (*url.URL, error)) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:               proxy,
		DialContext:         d.DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}
}

// Close closes the idle connections of the client New built, whose
// goroutines would otherwise outlive the exporter. Export fails with
// ErrClosed after it. Close is idempotent.
func (e *Exporter) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	if e.own != nil {
		e.own.CloseIdleConnections()
	}
	return nil
}

// Export sends entries and returns once the receiver has taken them all,
// or on the first request that failed for good, or when ctx is done.
//
// A nil error means every record was accepted. A *PartialError means
// every request was answered with success but the receiver rejected some
// records; sending them again would not help. Any other error means
// some records may not have been accepted: send them all again later
// (those already accepted arrive twice; stack.event_id tells them
// apart). Errors that wrap ErrPermanent will fail the same way until
// the configuration or the receiver changes.
func (e *Exporter) Export(ctx context.Context, entries []Entry) error {
	if e.closed.Load() {
		return ErrClosed
	}
	if len(entries) == 0 {
		return nil
	}
	observed := uint64(max(e.now().UnixNano(), 0))
	records := make([]*logspb.LogRecord, len(entries))
	sizes := make([]int, len(entries))
	for i := range entries {
		records[i] = logRecord(&entries[i], observed)
		sizes[i] = proto.Size(records[i])
	}
	partial := &PartialError{Total: len(entries)}
	for start := 0; start < len(entries); {
		n := e.splitSize(entries[start:], sizes[start:], e.maxRecords, e.maxBytes)
		body, err := proto.Marshal(e.request(entries[start:start+n], records[start:start+n]))
		if err != nil {
			return fmt.Errorf("otlp: export: encoding records %d to %d: %w", start, start+n-1, err)
		}
		out, err := e.send(ctx, body, n)
		if err != nil {
			return fmt.Errorf("otlp: export: records %d to %d of %d: %w", start, start+n-1, len(entries), err)
		}
		switch {
		case out.rejected > 0:
			partial.Rejected += out.rejected
			if out.message != "" {
				partial.Messages = append(partial.Messages, out.message)
			}
			e.log.Warn("the OTLP receiver rejected some audit records", zap.Int64("rejected", out.rejected),
				zap.Int("records", n), zap.String("message", out.message))
		case out.message != "":
			e.log.Warn("the OTLP receiver accepted the audit records with a warning",
				zap.Int("records", n), zap.String("message", out.message))
		}
		if out.undecodable != nil {
			e.log.Warn("the OTLP receiver's success answer does not decode; taking it as success",
				zap.Int("records", n), zap.Error(out.undecodable))
		}
		start += n
	}
	if partial.Rejected > 0 {
		return partial
	}
	return nil
}

// send posts one request body until it is answered, retrying what the
// specification calls transient.
func (e *Exporter) send(ctx context.Context, body []byte, records int) (outcome, error) {
	encoded := len(body)
	if e.gzip {
		var err error
		if body, err = compress(body); err != nil {
			return outcome{}, fmt.Errorf("compressing the request: %w", err)
		}
	}
	backoff := e.minBackoff
	var prev error
	for attempt := 1; ; attempt++ {
		out, err := e.post(ctx, body)
		if err == nil {
			e.log.Debug("exported audit records over OTLP", zap.Int("records", records),
				zap.Int("bytes", encoded), zap.Int("sent_bytes", len(body)), zap.Int("attempt", attempt))
			return out, nil
		}
		if ctx.Err() != nil {
			// An attempt cut short by ctx says nothing about the
			// receiver; the one before it does.
			if prev != nil && errors.Is(err, ctx.Err()) {
				err = prev
			}
			return outcome{}, giveUp(ctx.Err(), attempt, err)
		}
		prev = err
		wait, retry := e.retryWait(err, backoff)
		if !retry {
			return outcome{}, err
		}
		backoff = min(2*backoff, e.maxBackoff)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			why := fmt.Errorf("the next attempt, in %s, would come after the deadline: %w", wait.Round(time.Millisecond), context.DeadlineExceeded)
			return outcome{}, giveUp(why, attempt, err)
		}
		e.log.Warn("OTLP export failed; retrying", zap.Int("records", records), zap.Int("attempt", attempt),
			zap.Duration("wait", wait), zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return outcome{}, giveUp(ctx.Err(), attempt, err)
		case <-t.C:
		}
	}
}

// giveUp says why the retries stopped and how the receiver last failed,
// so both errors.Is(err, context.DeadlineExceeded) and errors.As(err,
// *HTTPError) work.
func giveUp(why error, attempts int, last error) error {
	n := fmt.Sprintf("%d attempts", attempts)
	if attempts == 1 {
		n = "1 attempt"
	}
	if errors.Is(last, why) {
		return fmt.Errorf("giving up after %s: %w", n, last)
	}
	return fmt.Errorf("giving up after %s: %w; last failure: %w", n, why, last)
}

// retryWait reports whether err is worth another attempt and after how
// long: what the receiver asked for, else backoff with jitter.
func (e *Exporter) retryWait(err error, backoff time.Duration) (time.Duration, bool) {
	if errors.Is(err, ErrPermanent) {
		return 0, false
	}
	var he *HTTPError
	if errors.As(err, &he) && he.RetryAfter > 0 {
		return he.RetryAfter, true
	}
	// Half fixed, half random: exporters that failed together spread out.
	return backoff/2 + rand.N(backoff/2+1), true
}

// post makes one attempt.
func (e *Exporter) post(ctx context.Context, body []byte) (outcome, error) {
	actx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return outcome{}, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	req.Header = e.header.Clone()
	resp, err := e.client.Do(req)
	if err != nil {
		if permanentTransport(err) {
			return outcome{}, fmt.Errorf("%w: %w", ErrPermanent, err)
		}
		if ctx.Err() == nil && actx.Err() != nil {
			return outcome{}, fmt.Errorf("attempt timed out after %s: %w", e.timeout, err)
		}
		return outcome{}, err
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	out, err := readResponse(resp.StatusCode, resp.Header, b, e.now())
	if err == nil && rerr != nil && out.undecodable == nil {
		out.undecodable = rerr
	}
	return out, err
}

// permanentTransport reports errors that another attempt would meet
// again: a certificate that does not verify, or TLS spoken to a server
// that does not speak it.
func permanentTransport(err error) bool {
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &rh) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci)
}

var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

// compress gzips b once per request, so retries resend the same bytes.
func compress(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(b)/4 + 64)
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&buf)
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
