package injection

import (
	"bytes"
	"sort"
	"unicode/utf16"
	"unicode/utf8"
)

// A body that is JSON (a chat completion, a tool result) carries its text
// in JSON strings, escaped: newlines as \n, quotes as \", markup as \u003c.
// The model reads the strings decoded, so the scanner does too: it scans
// the decoded body instead of the raw one, which would be a second copy of
// the same words with the escapes in the way ("\nIgnore" reads as one
// word). The decoded text maps back to the body byte by byte.

// jsonBody is a JSON body with its string escapes decoded.
type jsonBody struct {
	text []byte
	// esc lists the escapes decoded, in order. Between them the text is
	// the body's own bytes, so they are all it takes to map the text back
	// to the body.
	//
	// A match across an escape reads differently in the raw JSON: a
	// nested JSON document (\"name\": ...), words spelled with \u
	// escapes, a sentence broken by \n. Scanned raw, as text, such a
	// match would only have been found in a decoded view, which counts as
	// hidden; the scanner keeps that weighting.
	esc []jsonEscape
}

// jsonEscape is an escape at body[raw:raw+rawN] decoded to
// text[at:at+n], or, when run is set, a run of two-byte escapes (\n, \",
// ...) decoded to one byte each.
type jsonEscape struct {
	at, n, raw, rawN int32
	run              bool
}

// jsonSimple maps the letter after a backslash to what a two-byte
// escape stands for (0: not one).
var jsonSimple = [256]byte{'n': '\n', 't': '\t', 'r': '\r', 'b': '\b', 'f': '\f', '"': '"', '\\': '\\', '/': '/'}

// jsonShaped reports whether body is a JSON object or array with string
// escapes to decode.
func jsonShaped(body []byte) bool {
	i := 0
	for i < len(body) && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t') {
		i++
	}
	return i < len(body) && (body[i] == '{' || body[i] == '[') && bytes.IndexByte(body[i:], '\\') >= 0
}

// decode sets j to body with its JSON escapes decoded, reusing j's
// buffers.
func (j *jsonBody) decode(body []byte) {
	// The text is never longer than the body (an escape decodes to fewer
	// bytes than it takes): one allocation, no growth on the way.
	if cap(j.text) < len(body) {
		j.text = make([]byte, 0, len(body))
	}
	j.esc = j.esc[:0]
	j.text = unescapeJSON(j.text[:0], body, func(e jsonEscape) { j.esc = append(j.esc, e) })
}

// unescapeJSON appends body to text with JSON's string escapes decoded as
// encoding/json decodes them. A backslash that starts no JSON escape (a
// \x41 in a string that was not valid JSON) is kept as it is, for the
// decoders that read it. note, when not nil, is told where each escape
// (or run of two-byte escapes) was and what it became, relative to the
// start of body and of what was appended.
func unescapeJSON(text, body []byte, note func(jsonEscape)) []byte {
	base := len(text)
	for i := 0; i < len(body); {
		k := bytes.IndexByte(body[i:], '\\')
		if k < 0 {
			return append(text, body[i:]...)
		}
		k += i
		text = append(text, body[i:k]...)
		i = k
		// A run of two-byte escapes ("\n\t\t" before a line of code)
		// is one entry.
		at, from := len(text), i
		for i+1 < len(body) && body[i] == '\\' {
			c := jsonSimple[body[i+1]]
			if c == 0 {
				break
			}
			text = append(text, c)
			i += 2
		}
		if i > from {
			if note != nil {
				note(jsonEscape{at: int32(at - base), n: int32(len(text) - at), raw: int32(from), rawN: int32(i - from), run: true})
			}
			continue
		}
		if i+1 < len(body) && body[i+1] == 'u' {
			if r, n := jsonRune(body[i:]); n > 0 {
				text = utf8.AppendRune(text, r)
				if note != nil {
					note(jsonEscape{at: int32(at - base), n: int32(len(text) - at), raw: int32(i), rawN: int32(n)})
				}
				i += n
				continue
			}
		}
		// Not an escape JSON knows: the backslash stays.
		text = append(text, '\\')
		i++
	}
	return text
}

// origin maps text[i] (or the end of the text) to the body: the byte it
// was, or the start of the escape it came from.
func (j *jsonBody) origin(i int) int {
	k := sort.Search(len(j.esc), func(k int) bool { return int(j.esc[k].at) > i }) - 1
	if k < 0 {
		return i
	}
	e := j.esc[k]
	switch end := int(e.at + e.n); {
	case i >= end:
		return int(e.raw+e.rawN) + i - end
	case e.run:
		return int(e.raw) + 2*(i-int(e.at))
	default:
		return int(e.raw)
	}
}

// escaped reports whether text[s:e] overlaps text decoded from an
// escape.
func (j *jsonBody) escaped(s, e int) bool {
	k := sort.Search(len(j.esc), func(k int) bool { return int(j.esc[k].at+j.esc[k].n) > s })
	return k < len(j.esc) && int(j.esc[k].at) < e
}

// jsonRune decodes the \uXXXX escape (and its low surrogate, when it is
// a high one) at the start of b, returning the rune and the bytes it
// took, or 0 bytes when b does not start with a valid escape.
func jsonRune(b []byte) (rune, int) {
	hex4 := func(b []byte) (rune, bool) {
		if len(b) < 4 {
			return 0, false
		}
		var r rune
		for _, h := range b[:4] {
			v, ok := unhex(h)
			if !ok {
				return 0, false
			}
			r = r<<4 | rune(v)
		}
		return r, true
	}
	r, ok := hex4(b[2:])
	if !ok {
		return 0, 0
	}
	if utf16.IsSurrogate(r) && len(b) >= 12 && b[6] == '\\' && b[7] == 'u' {
		if lo, ok := hex4(b[8:]); ok {
			if d := utf16.DecodeRune(r, lo); d != utf8.RuneError {
				return d, 12
			}
		}
	}
	return r, 6
}
