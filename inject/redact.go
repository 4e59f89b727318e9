package inject

import (
	"bytes"
	"io"
	"net/http"
	"strings"
)

// pair is a secret and the placeholder that replaces it.
type pair struct {
	secret, placeholder []byte
}

func pairsOf(injected []Injected) []pair {
	ps := make([]pair, 0, len(injected))
	for _, in := range injected {
		if len(in.Secret) > 0 {
			ps = append(ps, pair{secret: in.Secret, placeholder: []byte(Placeholder(in.Name))})
		}
	}
	return ps
}

// RedactHeader replaces every injected secret in h's values with its
// placeholder.
func RedactHeader(h http.Header, injected []Injected) {
	// Each secret is converted to a string once, and a placeholder built
	// only where a secret is found: this runs on every response.
	for _, in := range injected {
		if len(in.Secret) == 0 {
			continue
		}
		secret := string(in.Secret)
		for _, vs := range h {
			for i, v := range vs {
				if strings.Contains(v, secret) {
					vs[i] = strings.ReplaceAll(v, secret, Placeholder(in.Name))
				}
			}
		}
	}
}

// NewRedactor returns body with every injected secret replaced by its
// placeholder. It streams: each Read returns what the last upstream read
// brought, less only a tail that could be the start of a secret, so
// server-sent events and chunked responses flow as they arrive.
func NewRedactor(body io.ReadCloser, injected []Injected) io.ReadCloser {
	ps := pairsOf(injected)
	if len(ps) == 0 {
		return body
	}
	return newRedactor(body, ps)
}

func newRedactor(body io.ReadCloser, ps []pair) *redactor {
	r := &redactor{src: body, pairs: ps}
	for _, p := range ps {
		r.first[p.secret[0]] = true
		if len(p.secret) > r.maxLen {
			r.maxLen = len(p.secret)
		}
	}
	return r
}

// RedactBytes returns b with every injected secret replaced by its
// placeholder, as NewRedactor would stream it, for a body already in
// memory. b itself is returned when it holds no secret.
func RedactBytes(b []byte, injected []Injected) []byte {
	found := false
	for _, in := range injected {
		if len(in.Secret) > 0 && bytes.Contains(b, in.Secret) {
			found = true
			break
		}
	}
	if !found {
		return b
	}
	r := newRedactor(nil, pairsOf(injected))
	r.pending = b
	r.process(true)
	return r.out
}

type redactor struct {
	src     io.ReadCloser
	pairs   []pair
	first   [256]bool
	maxLen  int
	pending []byte // raw bytes not yet processed
	out     []byte // processed bytes not yet returned
	buf     []byte
	err     error // from src, returned once out and pending are drained
}

func (r *redactor) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			if len(r.pending) > 0 {
				r.process(true)
				continue
			}
			return 0, r.err
		}
		if r.buf == nil {
			r.buf = make([]byte, 32*1024)
		}
		n, err := r.src.Read(r.buf)
		r.pending = append(r.pending, r.buf[:n]...)
		if err != nil {
			r.err = err
		}
		r.process(err != nil)
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	if len(r.out) == 0 {
		r.out = nil
	}
	return n, nil
}

// process moves pending into out, replacing complete secrets; unless
// final, it keeps back a tail that is a proper prefix of a secret.
func (r *redactor) process(final bool) {
	data := r.pending
	last, i := 0, 0
scan:
	for i < len(data) {
		if r.first[data[i]] {
			rest := data[i:]
			for _, p := range r.pairs {
				if bytes.HasPrefix(rest, p.secret) {
					r.out = append(r.out, data[last:i]...)
					r.out = append(r.out, p.placeholder...)
					i += len(p.secret)
					last = i
					continue scan
				}
			}
			if !final && len(rest) < r.maxLen && r.prefixOfSecret(rest) {
				break
			}
		}
		i++
	}
	r.out = append(r.out, data[last:i]...)
	r.pending = append(r.pending[:0:0], data[i:]...)
}

func (r *redactor) prefixOfSecret(b []byte) bool {
	for _, p := range r.pairs {
		if len(b) < len(p.secret) && bytes.HasPrefix(p.secret, b) {
			return true
		}
	}
	return false
}

func (r *redactor) Close() error { return r.src.Close() }

// A StreamRedactor replaces injected secrets in a stream that arrives in
// pieces the caller frames itself (WebSocket messages): Feed returns what
// can be passed on of what has arrived so far, keeping back only a tail
// that could be the start of a secret, and a final Feed returns the rest.
type StreamRedactor struct{ r *redactor }

// NewStreamRedactor returns a StreamRedactor for the injected secrets, or
// nil when there is nothing to redact.
func NewStreamRedactor(injected []Injected) *StreamRedactor {
	ps := pairsOf(injected)
	if len(ps) == 0 {
		return nil
	}
	return &StreamRedactor{r: newRedactor(nil, ps)}
}

// Feed adds b to the stream and appends to dst what is ready, redacted.
// With final set, the stream ends here: everything kept back is flushed,
// and the StreamRedactor starts afresh.
func (s *StreamRedactor) Feed(dst, b []byte, final bool) []byte {
	r := s.r
	r.pending = append(r.pending, b...)
	r.process(final)
	dst = append(dst, r.out...)
	r.out = r.out[:0]
	return dst
}
