package inject

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
)

// What comes back.
//
// An upstream may echo an injected secret in another spelling than the
// one the sidecar sent: a query credential comes back in a redirect's
// Location or an echoed URL percent-encoded (as the query renderer wrote
// it, or re-encoded with %20 for a space, lower-case hex or more bytes
// escaped), inside a JSON string with '/' written as \/ or a character as
// \u00XX, in an HTML page with &amp; or &#43;; a Basic credential comes
// back as the base64 the sidecar sent. So each secret is looked for as a
// few texts (patterns): the secret itself; its base64, as the Basic
// renderer writes it, less the '=' padding; and for a secret of the form
// user:password, the password (or the user, when there is no password)
// when it is at least minPartLen bytes long. Each byte of a pattern
// matches itself or any escape that stands for it (percent, JSON or HTML,
// and '+' for a space), so every mix of escapings is found, and the
// placeholder replaces the whole spelling. What an upstream does beyond
// escaping (hashing, encrypting, re-encoding the secret in another
// alphabet, escaping it twice, changing its case, cutting it up) is not
// undone: docs/operations.md lists it.

// minPartLen is the shortest half of a user:password secret looked for
// on its own: shorter ones would match ordinary text.
const minPartLen = 8

// maxEscape is the longest escape of one byte matched (&#x00002B;).
const maxEscape = 10

// pattern is one text a secret may come back as: src itself, or the
// base64 of src without its padding.
type pattern struct {
	src []byte
	b64 bool
	n   int // the length of the text
	// b0 and b1 are the text's first two bytes (b1 0 when it has one).
	b0, b1 byte
	// anchor is the text's rarest byte (see rarity), at anchorAt.
	anchor   byte
	anchorAt int
	name     string // the credential: its placeholder replaces the text
}

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// at returns byte k of the pattern's text; the base64 is computed as it
// is read, so that building a matcher allocates nothing.
func (p *pattern) at(k int) byte {
	if !p.b64 {
		return p.src[k]
	}
	g := k / 4 * 3
	v := uint32(p.src[g]) << 16
	if g+1 < len(p.src) {
		v |= uint32(p.src[g+1]) << 8
	}
	if g+2 < len(p.src) {
		v |= uint32(p.src[g+2])
	}
	return b64Alphabet[v>>(18-6*(k%4))&0x3f]
}

// matcher finds the patterns of injected secrets. It holds no pointer
// into itself, so one built on the stack stays there.
type matcher struct {
	fixed [4]pattern
	extra []pattern // patterns past len(fixed)
	n     int
	first [256]bool // bytes a spelling of some pattern can begin with
	holds [256]bool // bytes some pattern holds
	// tail is the longest a spelling can be: a stream holds back at
	// most that much; shortest, the shortest.
	tail, shortest int
}

func (m *matcher) pat(k int) *pattern {
	if k < len(m.fixed) {
		return &m.fixed[k]
	}
	return &m.extra[k-len(m.fixed)]
}

// init builds m for injected and reports whether there is anything to
// look for.
func (m *matcher) init(injected []Injected) bool {
	for _, in := range injected {
		s := in.Secret
		if len(s) == 0 {
			continue
		}
		m.add(pattern{src: s, n: len(s), name: in.Name})
		m.add(pattern{src: s, b64: true, n: (len(s)*8 + 5) / 6, name: in.Name})
		if user, pass, ok := bytes.Cut(s, []byte{':'}); ok {
			if len(pass) >= minPartLen {
				m.add(pattern{src: pass, n: len(pass), name: in.Name})
			} else if len(pass) == 0 && len(user) >= minPartLen {
				m.add(pattern{src: user, n: len(user), name: in.Name})
			}
		}
	}
	if m.n == 0 {
		return false
	}
	// Longest first, so that of two patterns that start at the same byte
	// the longer wins (insertion sort: a response names few secrets).
	for i := 1; i < m.n; i++ {
		for j := i; j > 0 && m.pat(j).n > m.pat(j-1).n; j-- {
			*m.pat(j), *m.pat(j - 1) = *m.pat(j - 1), *m.pat(j)
		}
	}
	m.first['%'], m.first['\\'], m.first['&'] = true, true, true
	return true
}

func (m *matcher) add(p pattern) {
	text := p.src
	if p.b64 {
		var buf [192]byte
		if n := base64.StdEncoding.EncodedLen(len(p.src)); n <= len(buf) {
			text = buf[:n]
		} else {
			text = make([]byte, n)
		}
		base64.StdEncoding.Encode(text, p.src)
		text = text[:p.n]
	}
	p.b0, p.anchor = text[0], text[0]
	if p.n > 1 {
		p.b1 = text[1]
	}
	for k, c := range text {
		m.holds[c] = true
		if rarity[c] > rarity[p.anchor] {
			p.anchor, p.anchorAt = c, k
		}
	}
	m.tail = max(m.tail, p.n*maxEscape)
	if m.shortest == 0 || p.n < m.shortest {
		m.shortest = p.n
	}
	if m.n < len(m.fixed) {
		m.fixed[m.n] = p
	} else {
		m.extra = append(m.extra, p)
	}
	m.n++
	m.first[p.b0] = true
	if p.b0 == ' ' {
		m.first['+'] = true
	}
}

// byFrequency lists bytes from the most to the least frequent in the
// text, JSON, HTML and URLs responses carry; bytes it does not list are
// rarer still.
const byFrequency = " etaoinsrhldcu\"mfpgwyb,.:/01v2k-_=TSACIMx3<>PBDR{}549678()HFLNEGWOU[]jq;zKVY&?JXQZ%#@!*+\\'|^~`$\n\r\t"

// rarity ranks bytes by how seldom they occur in responses: a pattern's
// rarest byte is what mayHold searches for.
var rarity = func() (r [256]int) {
	for c := range r {
		r[c] = len(byFrequency)
	}
	for i := range len(byFrequency) {
		r[byFrequency[i]] = i
	}
	return r
}()

// mayHold reports whether s may hold a complete spelling of a pattern;
// when it says no, there is none. It runs on every response, so it uses
// the fast searches of package bytes or strings (indexByte) and leaves
// the byte-by-byte work of find to the few places that need it. A
// spelling either is a pattern's text as it stands, found by the text's
// rarest byte, or holds an escape (or '+' for a space) standing for a
// byte of a pattern followed by what may be the byte that comes next in
// that pattern.
func mayHold[S ~string | ~[]byte](m *matcher, s S, indexByte func(S, byte) int) bool {
	if len(s) < m.shortest {
		return false // most header values
	}
	for k := 0; k < m.n; k++ {
		p := m.pat(k)
		for i := 0; len(s) >= p.n; {
			j := indexByte(s[i:], p.anchor)
			if j < 0 {
				break
			}
			i += j
			if start := i - p.anchorAt; start >= 0 && start+p.n <= len(s) && standsAt(p, s, start) {
				return true
			}
			i++
		}
	}
	for _, c := range [...]byte{'%', '\\', '&', '+'} {
		if c == '+' && !m.holds[' '] {
			continue
		}
		for i := 0; ; {
			j := indexByte(s[i:], c)
			if j < 0 {
				break
			}
			i += j
			d, w := byte(' '), 1
			if c != '+' {
				d, w = unescape(s, i)
			}
			if w > 0 && m.holds[d] && continues(m, s, i+w, d) {
				return true
			}
			i++
		}
	}
	return false
}

// standsAt reports whether s holds p's text as it stands at start.
func standsAt[S ~string | ~[]byte](p *pattern, s S, start int) bool {
	for k := 0; k < p.n; k++ {
		if s[start+k] != p.at(k) {
			return false
		}
	}
	return true
}

// continues reports whether an escape standing for d, followed by s[e:],
// may be part of a spelling: some pattern holds d last, or followed by a
// byte s[e:] may begin with (or s ends at e).
func continues[S ~string | ~[]byte](m *matcher, s S, e int, d byte) bool {
	for k := 0; k < m.n; k++ {
		p := m.pat(k)
		for i := 0; i < p.n; i++ {
			if p.at(i) != d {
				continue
			}
			if i == p.n-1 || e == len(s) {
				return true
			}
			b, c := p.at(i+1), s[e]
			if c == b || c == '+' && b == ' ' {
				return true
			}
			if c == '%' || c == '\\' || c == '&' {
				if dd, w := unescape(s, e); w < 0 || w > 0 && dd == b {
					return true
				}
			}
		}
	}
	return false
}

// find returns the first spelling of a pattern in s at or after i: where
// it starts, how long it is and the pattern. With more set, s ends within
// what may still become one, starting at start; final says nothing
// follows s, so a spelling must be complete to count. Found nothing:
// start is len(s) and p nil.
func find[S ~string | ~[]byte](m *matcher, s S, i int, final bool) (start, n int, p *pattern, more bool) {
	first := &m.first
	for ; i < len(s); i++ {
		// Skip, four bytes at a time, what begins no spelling.
		for i+4 <= len(s) && !first[s[i]] && !first[s[i+1]] && !first[s[i+2]] && !first[s[i+3]] {
			i += 4
		}
		for i < len(s) && !first[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		c := s[i]
		// What s[i] stands for: itself, or what the escape it begins
		// decodes to.
		d, w := c, 0
		if c == '%' || c == '\\' || c == '&' {
			if d, w = unescape(s, i); w < 0 {
				if !final {
					return i, 0, nil, true
				}
				w = 0
			}
		}
		for k := 0; k < m.n; k++ {
			p := m.pat(k)
			switch {
			case w > 0 && d == p.b0, c == '+' && p.b0 == ' ':
			case c == p.b0:
				// Most letters that begin a pattern begin no
				// spelling of it: look at the next byte first.
				if p.n > 1 && i+1 < len(s) {
					if e := s[i+1]; e != p.b1 && e != '%' && e != '\\' && e != '&' && (e != '+' || p.b1 != ' ') {
						continue
					}
				}
			default:
				continue
			}
			n, more := matchAt(p, s, i, final)
			if more {
				return i, 0, nil, true
			}
			if n > 0 {
				return i, n, p, false
			}
		}
	}
	return len(s), 0, nil, false
}

// matchAt reports the length of the longest spelling of p at s[i:], 0
// when there is none; more when s ends before that can be told.
func matchAt[S ~string | ~[]byte](p *pattern, s S, i int, final bool) (n int, more bool) {
	budget := maxBranches
	end, more := spellFrom(p, s, i, 0, final, &budget)
	if end < 0 || more {
		return 0, more
	}
	return end - i, false
}

// maxBranches bounds the ways matchAt tries to read one stretch of a
// response as a spelling of a pattern. Only a pattern byte that is an
// escape character itself, met where the response holds an escape of that
// character, can be read two ways ('%' as "%" or as "%25"): a secret
// needs more than six such bytes to reach the bound.
const maxBranches = 64

// spellFrom returns where the longest spelling of p's text from byte k
// on, starting at s[j], ends (-1: there is none); more when one may go on
// past the end of s.
func spellFrom[S ~string | ~[]byte](p *pattern, s S, j, k int, final bool, budget *int) (end int, more bool) {
	for ; k < p.n; k++ {
		if j == len(s) {
			return -1, !final
		}
		b, c := p.at(k), s[j]
		w := 0 // the width of an escape standing for b at s[j]
		if c == '%' || c == '\\' || c == '&' {
			d, ew := unescape(s, j)
			if ew < 0 && !final {
				return -1, true
			}
			if ew > 0 && d == b {
				w = ew
			}
		}
		asIs := c == b || c == '+' && b == ' '
		switch {
		case w > 0 && asIs:
			// b is an escape character met as its own escape: read it
			// both ways.
			if *budget--; *budget < 0 {
				return -1, false
			}
			e1, m1 := spellFrom(p, s, j+w, k+1, final, budget)
			e2, m2 := spellFrom(p, s, j+1, k+1, final, budget)
			return max(e1, e2), m1 || m2
		case w > 0:
			j += w
		case asIs:
			j++
		default:
			return -1, false
		}
	}
	return j, false
}

// unescape decodes the escape at s[i], one of '%', '\\' and '&': the byte
// it stands for and its width. Width 0: no escape there; -1: s ends
// before that can be told. Only escapes of single bytes are decoded
// (JSON and HTML escapes of ASCII characters).
func unescape[S ~string | ~[]byte](s S, i int) (byte, int) {
	switch s[i] {
	case '%': // %XX, hex of either case
		var v byte
		for k := 1; k < 3; k++ {
			if i+k == len(s) {
				return 0, -1
			}
			h, ok := unhex(s[i+k])
			if !ok {
				return 0, 0
			}
			v = v<<4 | h
		}
		return v, 3
	case '\\': // JSON: \/ \\ \" \b \f \n \r \t \u00XX
		if i+1 == len(s) {
			return 0, -1
		}
		switch c := s[i+1]; c {
		case '/', '\\', '"':
			return c, 2
		case 'b':
			return '\b', 2
		case 'f':
			return '\f', 2
		case 'n':
			return '\n', 2
		case 'r':
			return '\r', 2
		case 't':
			return '\t', 2
		case 'u':
			var v int
			for k := 2; k < 6; k++ {
				if i+k == len(s) {
					return 0, -1
				}
				h, ok := unhex(s[i+k])
				if !ok {
					return 0, 0
				}
				v = v<<4 | int(h)
			}
			if v >= 0x80 {
				return 0, 0
			}
			return byte(v), 6
		}
		return 0, 0
	case '&':
		return unescapeHTML(s, i)
	}
	return 0, 0
}

// htmlNamed are the named character references html.EscapeString and
// html/template write.
var htmlNamed = [...]struct {
	name string
	c    byte
}{{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}}

// unescapeHTML decodes an HTML character reference at s[i] ('&'): a named
// one of htmlNamed, or &#DDD; or &#xHH; of an ASCII character with at
// most six digits.
func unescapeHTML[S ~string | ~[]byte](s S, i int) (byte, int) {
	j := i + 1
	if j == len(s) {
		return 0, -1
	}
	if s[j] != '#' {
		partial := false
		for _, e := range htmlNamed {
			k := 0
			for k < len(e.name) && j+k < len(s) && s[j+k] == e.name[k] {
				k++
			}
			if k == len(e.name) {
				return e.c, 1 + k
			}
			if j+k == len(s) {
				partial = true
			}
		}
		if partial {
			return 0, -1
		}
		return 0, 0
	}
	j++
	if j == len(s) {
		return 0, -1
	}
	base := 10
	if s[j] == 'x' || s[j] == 'X' {
		base = 16
		j++
	}
	v, digits := 0, 0
	for ; ; j++ {
		if j == len(s) {
			return 0, -1
		}
		c := s[j]
		if c == ';' {
			break
		}
		d, ok := unhex(c)
		if !ok || base == 10 && d > 9 || digits == 6 {
			return 0, 0
		}
		v = v*base + int(d)
		digits++
	}
	if digits == 0 || v >= 0x80 {
		return 0, 0
	}
	return byte(v), j + 1 - i
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// RedactHeader replaces every injected secret in h's values, in any of
// the spellings the package comment lists, with its placeholder. It
// serves trailers as well.
func RedactHeader(h http.Header, injected []Injected) {
	var m matcher
	if !m.init(injected) {
		return
	}
	for _, vs := range h {
		for i, v := range vs {
			if !mayHold(&m, v, strings.IndexByte) {
				continue
			}
			start, n, p, _ := find(&m, v, 0, true)
			if p == nil {
				continue
			}
			var b strings.Builder
			last := 0
			for p != nil {
				b.WriteString(v[last:start])
				b.WriteString(Prefix)
				b.WriteString(p.name)
				last = start + n
				start, n, p, _ = find(&m, v, last, true)
			}
			b.WriteString(v[last:])
			vs[i] = b.String()
		}
	}
}

// NewRedactor returns body with every injected secret, in any of the
// spellings the package comment lists, replaced by its placeholder. It
// streams: each Read returns what the last upstream read brought, less
// only a tail that could be the start of a secret, so server-sent events
// and chunked responses flow as they arrive.
func NewRedactor(body io.ReadCloser, injected []Injected) io.ReadCloser {
	r := newRedactor(body, injected)
	if r == nil {
		return body
	}
	return r
}

// newRedactor returns a redactor reading src, nil when injected holds no
// secret.
func newRedactor(src io.ReadCloser, injected []Injected) *redactor {
	r := &redactor{src: src}
	if !r.m.init(injected) {
		return nil
	}
	return r
}

// RedactBytes returns b with every injected secret replaced by its
// placeholder, as NewRedactor would stream it, for a body already in
// memory. b itself is returned when it holds no secret.
func RedactBytes(b []byte, injected []Injected) []byte {
	var m matcher
	if !m.init(injected) || !mayHold(&m, b, bytes.IndexByte) {
		return b
	}
	start, n, p, _ := find(&m, b, 0, true)
	if p == nil {
		return b
	}
	out := make([]byte, 0, len(b))
	last := 0
	for p != nil {
		out = append(out, b[last:start]...)
		out = append(out, Prefix...)
		out = append(out, p.name...)
		last = start + n
		start, n, p, _ = find(&m, b, last, true)
	}
	return append(out, b[last:]...)
}

type redactor struct {
	src     io.ReadCloser
	m       matcher
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

// process moves pending into out, replacing complete spellings of
// secrets; unless final, it keeps back a tail that may still become one.
func (r *redactor) process(final bool) {
	data := r.pending
	last := 0
	if !mayHold(&r.m, data, bytes.IndexByte) {
		// No spelling is complete: only the tail may hold the start of
		// one.
		if final {
			last = len(data)
		} else {
			last = max(0, len(data)-r.m.tail)
		}
		r.out = append(r.out, data[:last]...)
	}
	for last < len(data) {
		start, n, p, _ := find(&r.m, data, last, final)
		r.out = append(r.out, data[last:start]...)
		last = start
		if p == nil {
			// Nothing more, or from start on something that may
			// still become a spelling: kept back.
			break
		}
		r.out = append(r.out, Prefix...)
		r.out = append(r.out, p.name...)
		last += n
	}
	r.pending = append(r.pending[:0:0], data[last:]...)
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
	r := newRedactor(nil, injected)
	if r == nil {
		return nil
	}
	return &StreamRedactor{r: r}
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
