package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/stackctl/stack/inject"
	"github.com/stackctl/stack/proxy/coding"
	"github.com/stackctl/stack/reason"
)

// upstreamBody is the body roundTrip hands goproxy for an upstream
// response. goproxy answers an intercepted request with chunked encoding
// whenever a response handler replaced resp.Body, even when the length is
// known, and chunked encoding costs three TLS records and three writes per
// chunk plus two more at the end. So handleResponse builds its readers
// (redaction, detectors, counting) on the upstream body it takes from
// here and installs the result inside this same value: a response whose
// length is known keeps its Content-Length, and the body goes out as one
// record.
type upstreamBody struct {
	src io.ReadCloser // the upstream's body
	r   io.ReadCloser // what Read and Close use: src until install
}

// wrapUpstreamBody wraps resp's body, unless there is none or the response
// is a protocol upgrade, whose body goproxy needs as it is.
func wrapUpstreamBody(resp *http.Response) {
	if resp.Body == nil || resp.Body == http.NoBody || resp.StatusCode == http.StatusSwitchingProtocols {
		return
	}
	resp.Body = &upstreamBody{src: resp.Body, r: resp.Body}
}

func (b *upstreamBody) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *upstreamBody) Close() error { return b.r.Close() }

// install makes r the body's reader and returns the body; on a nil
// upstreamBody it returns r.
func (b *upstreamBody) install(r io.ReadCloser) io.ReadCloser {
	if b == nil {
		return r
	}
	b.r = r
	return b
}

// wholeBody reports whether a response body of length n and content type
// ct is read whole before the agent gets any of it (by decoding,
// redaction and the detectors): a known length within the scan window,
// and not a stream.
func (p *Proxy) wholeBody(n int64, ct string) bool {
	return n >= 0 && n <= int64(p.scanWindow()) && !streamingType(ct)
}

// redactBody replaces injected secrets in resp's body with their
// placeholders. A small body of known length (at most the scan window, and
// not a stream) is read and redacted in memory, so the answer keeps an
// exact Content-Length; any other body streams through the redactor, its
// length unknown.
func (p *Proxy) redactBody(resp *http.Response, injected []inject.Injected) {
	if n := resp.ContentLength; p.wholeBody(n, resp.Header.Get("Content-Type")) {
		body, err := readSmall(resp.Body, n)
		if err == nil {
			out := inject.RedactBytes(body, injected)
			resp.Body = newMemBody(out)
			resp.ContentLength = int64(len(out))
			resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
			return
		}
		// Pass on what arrived, redacted, then the error.
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(inject.RedactBytes(body, injected)), errReader{err}))
	} else {
		resp.Body = inject.NewRedactor(resp.Body, injected)
	}
	// The redacted body's length may differ from the upstream's.
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
}

// memBody is a body already read into memory. The response steps (redact,
// scan) each need the whole of a small body: the second one takes the
// bytes from here instead of reading and copying them again.
type memBody struct {
	*bytes.Reader
	b []byte
}

func newMemBody(b []byte) *memBody { return &memBody{Reader: bytes.NewReader(b), b: b} }

func (*memBody) Close() error { return nil }

// readSmall reads body, whose declared length is n, into memory: at most
// n+1 bytes, so a body longer than it said shows as such. A memBody not yet
// read from gives its bytes without a copy. On error the bytes that
// arrived are returned with it.
func readSmall(body io.ReadCloser, n int64) ([]byte, error) {
	if mb, ok := body.(*memBody); ok && mb.Len() == len(mb.b) {
		return mb.b, nil
	}
	defer body.Close()
	buf := make([]byte, 0, n+1)
	for len(buf) < cap(buf) {
		m, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			break
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// decodeBody undoes resp's content codings, so the steps after it see the
// body as the agent will, and the agent gets it decoded. A small body of
// known length (see redactBody) is decoded into memory, up to the scan
// window, so that a block can still refuse it whole. A coding the proxy
// cannot read is a refusal: the body could be neither scrubbed nor
// scanned.
func (p *Proxy) decodeBody(resp *http.Response) *denial {
	if resp.Body == nil || resp.Body == http.NoBody || len(resp.Header["Content-Encoding"]) == 0 {
		return nil
	}
	ce := strings.Join(resp.Header.Values("Content-Encoding"), ",")
	codings, err := coding.Parse(ce)
	if err != nil {
		resp.Body.Close()
		return &denial{Status: http.StatusBadGateway, Reason: reason.ResponseEncodingUnsupported,
			Detail: fmt.Sprintf("the upstream answered with Content-Encoding %q, which the sidecar cannot decode to scrub and scan", ce)}
	}
	resp.Header.Del("Content-Encoding")
	if len(codings) == 0 {
		return nil
	}
	compressed := resp.ContentLength
	body := coding.Decode(resp.Body, codings)
	resp.Uncompressed = true
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	if !p.wholeBody(compressed, resp.Header.Get("Content-Type")) {
		resp.Body = body
		return nil
	}
	window := p.scanWindow()
	buf, err := io.ReadAll(io.LimitReader(body, int64(window)+1))
	switch {
	case err != nil:
		body.Close()
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(buf), errReader{err}))
	case len(buf) > window:
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), body), body}
	default:
		body.Close()
		resp.Body = newMemBody(buf)
		resp.ContentLength = int64(len(buf))
		resp.Header.Set("Content-Length", strconv.Itoa(len(buf)))
	}
	return nil
}
