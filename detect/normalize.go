package detect

import (
	"bytes"
	"encoding/base64"
	"html"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Normalization defaults.
const (
	// DefaultScanWindow is the most content a scan looks at; the proxy
	// passes at most this much of a body.
	DefaultScanWindow = 64 << 10
	// DefaultMaxDepth bounds nested decoding (base64 inside percent
	// encoding, entities inside base64, ...).
	DefaultMaxDepth = 2
	// DefaultMaxViews bounds how many views one text produces.
	DefaultMaxViews = 24
)

// NormalizeOptions bound the work of Normalize. The zero value means the
// defaults above.
type NormalizeOptions struct {
	// Window is the most bytes of input looked at (default
	// DefaultScanWindow); the rest is ignored.
	Window int
	// MaxDepth bounds nested decoding (default DefaultMaxDepth).
	MaxDepth int
	// MaxViews bounds the number of views (default DefaultMaxViews).
	MaxViews int
}

func (o NormalizeOptions) withDefaults() NormalizeOptions {
	if o.Window <= 0 {
		o.Window = DefaultScanWindow
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	if o.MaxViews <= 0 {
		o.MaxViews = DefaultMaxViews
	}
	return o
}

// View is one rendering of scanned content to match patterns on: the
// text folded to lower case, or a decoded, extracted or transformed
// variant of it. Every view can map a byte range of its Text back to the
// original content, exactly when the transformation kept positions and
// to the whole encoded run otherwise.
type View struct {
	// Name says how the view was made: "text", "tags", "html",
	// "hidden-html", "base64", "percent", "hex", "leet", "rot13",
	// "reversed" or "separators"; nested views join names with "/".
	Name string
	// Text is the content to match on, ASCII lower-cased.
	Text []byte
	// Obfuscated is set when the view exists only because something was
	// encoded, hidden or disguised: content that matches only here was
	// hidden from a human reader, which is suspicious in itself.
	Obfuscated bool
	// Depth is the number of decodings applied (0 for the text itself).
	Depth int

	origLen int
	// Mapping back to the original, one of: off (exact, len(Text)+1
	// entries), segs (coarse), or identity when both are nil.
	off  []int32
	segs []segment
	rev  bool // Text is reversed relative to the mapping
}

// segment maps Text[at:] (up to the next segment) to original[start:end].
type segment struct{ at, start, end int }

// Origin maps Text[i:j] of the view to a byte range of the original
// content. Views made by decoding map to the whole encoded run.
func (v *View) Origin(i, j int) (start, end int) {
	n := len(v.Text)
	i, j = clamp(i, 0, n), clamp(j, 0, n)
	if v.rev {
		i, j = n-j, n-i
	}
	switch {
	case v.off != nil:
		start, end = int(v.off[i]), int(v.off[j])
		if j > i && end <= start {
			end = start + 1
		}
	case v.segs != nil:
		k := 0
		for k+1 < len(v.segs) && v.segs[k+1].at <= i {
			k++
		}
		start, end = v.segs[k].start, v.segs[k].end
		for m := k + 1; m < len(v.segs) && v.segs[m].at < j; m++ {
			end = v.segs[m].end
		}
	default:
		start, end = i, j
	}
	return clamp(start, 0, v.origLen), clamp(end, 0, v.origLen)
}

func clamp(x, lo, hi int) int {
	if x < lo {
		return lo
	}
	if x > hi {
		return hi
	}
	return x
}

// Normalize renders text as the views patterns are matched on: the text
// itself (lower-cased, NFKC, homoglyphs folded, invisible controls
// removed) and every decoded, extracted or transformed variant that the
// content calls for. Work is bounded by opts.
//
// Transformations that keep length (leetspeak, ROT13) and reversal are
// made for the text view and for decoded views; they are cheap, and a
// pattern catalogue cannot be expected to list their spellings. Views
// that would equal an existing one are not repeated.
func Normalize(text []byte, opts NormalizeOptions) []View {
	return normalize(text, opts, true)
}

// normalize makes the views; with eager false it leaves out the leetspeak,
// ROT13 and reversed renderings, which the scanner finds through its
// trigger automaton and builds only where a trigger was seen.
func normalize(text []byte, opts NormalizeOptions, eager bool) []View {
	opts = opts.withDefaults()
	if len(text) > opts.Window {
		text = text[:opts.Window]
	}
	n := &normalizer{opts: opts, origLen: len(text), eager: eager}
	n.source(text, "", 0, nil, false)
	return n.views
}

type normalizer struct {
	opts    NormalizeOptions
	origLen int
	views   []View
	eager   bool
}

func (n *normalizer) full() bool { return len(n.views) >= n.opts.MaxViews }

// add appends a view unless the budget is spent or it repeats the
// text of an existing one.
func (n *normalizer) add(v View) {
	if n.full() || len(v.Text) == 0 {
		return
	}
	for i := range n.views {
		if bytes.Equal(n.views[i].Text, v.Text) {
			return
		}
	}
	v.origLen = n.origLen
	n.views = append(n.views, v)
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "/" + name
}

// source adds the views of one piece of content. coarse, when not nil,
// is the range of the original the content came from (decoded content);
// otherwise raw is the original itself and mapping is exact.
func (n *normalizer) source(raw []byte, prefix string, depth int, coarse *segment, obf bool) {
	if n.full() {
		return
	}
	f := fold(raw, coarse == nil)
	base := View{Name: join(prefix, "text"), Text: f.text, Obfuscated: obf || f.disguised, Depth: depth, off: f.off}
	if coarse != nil {
		base.off = nil
		base.segs = []segment{*coarse}
	}
	if prefix != "" {
		base.Name = prefix
	}
	baseIdx := len(n.views)
	n.add(base)
	n.transforms(base)

	if len(f.tags) > 0 {
		seg := segment{start: f.tagStart, end: f.tagEnd}
		if coarse != nil {
			seg = *coarse
		}
		n.source(f.tags, join(prefix, "tags"), depth, &seg, true)
	}
	if bytes.IndexByte(raw, '<') >= 0 || bytes.IndexByte(raw, '&') >= 0 {
		if n.html(raw, prefix, depth, coarse, obf) && baseIdx < len(n.views) && n.views[baseIdx].Name == base.Name {
			// The markup carries hidden text: the raw text shows it as
			// if visible, so matches there count as hidden; the visible
			// rendering is the "html" view.
			n.views[baseIdx].Obfuscated = true
		}
	}
	if depth >= n.opts.MaxDepth {
		return
	}
	n.decodeBase64(raw, prefix, depth, coarse)
	n.decodePercent(raw, prefix, depth, coarse)
	n.decodeHex(raw, prefix, depth, coarse)
	n.decodeJSON(raw, prefix, depth, coarse)
	n.separators(base, prefix)
}

// decodeJSON undoes JSON string escapes (\" \\ \/ \n \uXXXX) when the
// content has several: tool output is often JSON whose strings carry
// escaped markup (Go escapes < and > as \u003c and \u003e) or text.
func (n *normalizer) decodeJSON(raw []byte, prefix string, depth int, coarse *segment) {
	if bytes.Count(raw, []byte(`\"`)) < 2 && bytes.Count(raw, []byte(`\u`)) < 2 {
		return
	}
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 >= len(raw) {
			out = append(out, c)
			continue
		}
		i++
		switch raw[i] {
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'u':
			if i+4 < len(raw) {
				var r rune
				ok := true
				for _, h := range raw[i+1 : i+5] {
					v, good := unhex(h)
					ok = ok && good
					r = r<<4 | rune(v)
				}
				if ok {
					if r >= 0xD800 && r < 0xDC00 && i+10 < len(raw) && raw[i+5] == '\\' && raw[i+6] == 'u' {
						var lo rune
						for _, h := range raw[i+7 : i+11] {
							v, _ := unhex(h)
							lo = lo<<4 | rune(v)
						}
						r = utf16.DecodeRune(r, lo)
						i += 6
					}
					out = utf8.AppendRune(out, r)
					i += 4
					continue
				}
			}
			out = append(out, '\\', 'u')
		default: // \" \\ \/ and anything else: the character itself
			out = append(out, raw[i])
		}
	}
	var d decoded
	d.add(out, 0, len(raw), coarse)
	n.emitDecoded(&d, join(prefix, "json"), depth)
}

// transforms adds the leetspeak, ROT13 and reversed renderings of v.
func (n *normalizer) transforms(v View) {
	if !n.eager {
		return
	}
	if l, ok := leet(v.Text); ok {
		w := v
		w.Name, w.Text, w.Obfuscated = v.Name+"/leet", l, true
		n.add(w)
	}
	w := v
	w.Name, w.Text, w.Obfuscated = v.Name+"/rot13", rot13(v.Text), true
	n.add(w)
	w = v
	w.Name, w.Text, w.Obfuscated, w.rev = v.Name+"/reversed", reverse(v.Text), true, !v.rev
	n.add(w)
}

// folded is the text view of some content.
type folded struct {
	text      []byte
	off       []int32 // nil when text maps 1:1 onto the input
	disguised bool    // homoglyphs, invisible controls or full-width forms were removed
	tags      []byte  // ASCII decoded from Unicode tag characters
	tagStart  int
	tagEnd    int
}

// fold lower-cases ASCII, and for other content applies NFKC, folds
// homoglyphs, drops zero-width and bidi controls and collects Unicode tag
// characters. Pure ASCII keeps its positions, so no offset table is
// needed.
func fold(raw []byte, exact bool) folded {
	ascii := true
	for _, c := range raw {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return folded{text: lowerASCII(raw)}
	}
	f := folded{text: make([]byte, 0, len(raw)), tagStart: -1}
	if exact {
		f.off = make([]int32, 0, len(raw)+1)
	}
	var buf [32]byte
	for i := 0; i < len(raw); {
		r, size := utf8.DecodeRune(raw[i:])
		emit := func(b []byte) {
			f.text = append(f.text, b...)
			if exact {
				for range b {
					f.off = append(f.off, int32(i))
				}
			}
		}
		switch {
		case r < utf8.RuneSelf:
			c := byte(r)
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			emit([]byte{c})
		case isInvisible(r):
			f.disguised = true
		case r >= 0xE0000 && r <= 0xE007F:
			if c := r - 0xE0000; c >= 0x20 && c < 0x7F {
				f.tags = append(f.tags, byte(c))
			}
			if f.tagStart < 0 {
				f.tagStart = i
			}
			f.tagEnd = i + size
			f.disguised = true
		default:
			lr := unicode.ToLower(r)
			if h, ok := homoglyphs[lr]; ok {
				emit([]byte{h})
				f.disguised = true
				break
			}
			if r >= 0xFF01 && r <= 0xFF5E { // full-width ASCII
				c := byte(r - 0xFF01 + 0x21)
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				emit([]byte{c})
				f.disguised = true
				break
			}
			out := norm.NFKC.Append(buf[:0], raw[i:i+size]...)
			out = bytes.ToLower(out)
			emit(out)
		}
		i += size
	}
	if exact {
		f.off = append(f.off, int32(len(raw)))
	}
	if f.tagStart < 0 {
		f.tagStart = 0
	}
	return f
}

// isInvisible reports zero-width and bidirectional controls: U+200B-U+200F,
// U+202A-U+202E, U+2060-U+2064, U+2066-U+2069, U+FEFF, and the soft hyphen
// and combining grapheme joiner that serve the same trick.
func isInvisible(r rune) bool {
	switch {
	case r >= 0x200B && r <= 0x200F, r >= 0x202A && r <= 0x202E,
		r >= 0x2060 && r <= 0x2064, r >= 0x2066 && r <= 0x2069,
		r == 0xFEFF, r == 0x00AD, r == 0x034F, r == 0x180E:
		return true
	}
	return false
}

// homoglyphs folds common Cyrillic, Greek and other look-alikes (lower
// case, as unicode.ToLower leaves them) to the Latin letter they imitate.
var homoglyphs = map[rune]byte{
	// Cyrillic
	'а': 'a', 'в': 'b', 'е': 'e', 'ё': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'с': 'c',
	'т': 't', 'у': 'y', 'х': 'x', 'ѕ': 's', 'і': 'i', 'ї': 'i', 'ј': 'j', 'һ': 'h', 'ԁ': 'd', 'ԛ': 'q',
	'ԝ': 'w', 'ɡ': 'g', 'ӏ': 'l', 'ո': 'n', 'ս': 'u', 'օ': 'o', 'ց': 'g',
	// Greek
	'α': 'a', 'β': 'b', 'ε': 'e', 'η': 'n', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'τ': 't',
	'υ': 'u', 'χ': 'x', 'γ': 'y', 'ω': 'w', 'μ': 'u', 'ζ': 'z',
	// Latin look-alikes outside ASCII
	'ı': 'i', 'ȷ': 'j', 'ℓ': 'l',
}

func lowerASCII(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// leet folds leetspeak inside words that mix letters with the digits and
// symbols it uses (0->o, 1->i, 3->e, 4->a, 5->s, 7->t, @->a, $->s), and,
// once such a word was seen, in words made of those digits alone ("70"
// for "to"). Text without mixed words has no leet view at all. It reports false
// when nothing changed. "1" becomes "i" ("1gn0re"); the patterns accept
// "i" where a leet "l" may stand.
func leet(t []byte) ([]byte, bool) {
	var out []byte
	for i := 0; i < len(t); {
		// A word: letters, digits, @ and $.
		j := i
		letters, leets := 0, 0
		for j < len(t) && isWordish(t[j]) {
			if t[j] >= 'a' && t[j] <= 'z' {
				letters++
			} else if leetMap[t[j]] != 0 {
				leets++
			}
			j++
		}
		if j == i {
			i++
			continue
		}
		if leets > 0 && (letters > 0 || out != nil) && !hexID(t[i:j]) {
			if out == nil {
				out = append([]byte(nil), t...)
			}
			for k := i; k < j; k++ {
				if m := leetMap[t[k]]; m != 0 {
					out[k] = m
				}
			}
		}
		i = j
	}
	return out, out != nil
}

// hexID reports a long run of hex digits: a hash or an id, not leetspeak.
func hexID(w []byte) bool {
	if len(w) < 8 {
		return false
	}
	for _, c := range w {
		if _, ok := unhex(c); !ok {
			return false
		}
	}
	return true
}

var leetMap = [256]byte{'0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', '$': 's'}

func isWordish(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '@' || c == '$'
}

func rot13(t []byte) []byte {
	out := make([]byte, len(t))
	for i, c := range t {
		if c >= 'a' && c <= 'z' {
			c = 'a' + (c-'a'+13)%26
		}
		out[i] = c
	}
	return out
}

// reverse reverses bytes. Non-ASCII sequences come out garbled, which is
// harmless: patterns are ASCII.
func reverse(t []byte) []byte {
	out := make([]byte, len(t))
	for i, c := range t {
		out[len(t)-1-i] = c
	}
	return out
}

// separators collapses letters padded with one repeated separator
// ("i.g.n.o.r.e", "i g n o r e", "i-g-n-o-r-e") into words. It makes a
// view only when a padded run of four letters or more exists; then
// shorter runs with the same separator ("a.l.l", "n.o") collapse too.
func (n *normalizer) separators(v View, prefix string) {
	t := v.Text
	// paddedRun returns the end (index of the last letter) of a run of
	// single letters separated by sep starting at i, and its letter count.
	// A padded "letter" is any visible byte other than the separator:
	// padded URLs and identifiers ("r-u-n-_-c-m-d") collapse as well.
	isCh := func(c, sep byte) bool { return c > ' ' && c != sep && c < 0x7F }
	paddedRun := func(i int, sep byte) (int, int) {
		j := i
		for j+2 < len(t) && t[j+1] == sep && isCh(t[j+2], sep) && (j+3 >= len(t) || !isCh(t[j+3], sep)) {
			j += 2
		}
		return j, (j-i)/2 + 1
	}
	startsRun := func(i int) bool {
		if i+2 >= len(t) || !isAlnum(t[i]) && t[i] != '{' && t[i] != '!' && t[i] != '"' {
			return false
		}
		sep := t[i+1]
		return (sep == ' ' || sep > ' ' && sep < 0x7F && !isAlnum(sep)) && (i == 0 || !isCh(t[i-1], sep))
	}
	var seps [256]bool
	any := false
	for i := 0; i+6 < len(t); i++ {
		if !startsRun(i) {
			continue
		}
		j, letters := paddedRun(i, t[i+1])
		if letters >= 4 {
			seps[t[i+1]] = true
			any = true
		}
		i = j
	}
	if !any {
		return
	}
	out := make([]byte, 0, len(t))
	off := make([]int32, 0, len(t)+1)
	last := 0
	for i := 0; i+2 < len(t); i++ {
		if !startsRun(i) || !seps[t[i+1]] {
			continue
		}
		j, letters := paddedRun(i, t[i+1])
		if letters < 2 {
			continue
		}
		for k := last; k < i; k++ {
			out = append(out, t[k])
			off = append(off, int32(k))
		}
		for k := i; k <= j; k += 2 {
			out = append(out, t[k])
			off = append(off, int32(k))
		}
		last = j + 1
		i = j
	}
	for k := last; k < len(t); k++ {
		out = append(out, t[k])
		off = append(off, int32(k))
	}
	off = append(off, int32(len(t)))
	// Runs padded with spaces lose their word gaps ("a l l  p r e v"
	// becomes "all  prev"), and gaps of several spaces stand for one.
	out, off = squeezeSpaces(out, off)
	w := View{Name: join(prefix, "separators"), Text: out, Obfuscated: true, Depth: v.Depth}
	// Compose with v's mapping: off indexes v.Text.
	switch {
	case v.off != nil:
		m := make([]int32, len(off))
		for k, o := range off {
			m[k] = v.off[o]
		}
		w.off = m
	case v.segs != nil:
		w.segs = v.segs
	default:
		w.off = off
	}
	n.add(w)
	n.transforms(w)
}

func squeezeSpaces(t []byte, off []int32) ([]byte, []int32) {
	w := 0
	for i := 0; i < len(t); i++ {
		if t[i] == ' ' && w > 0 && t[w-1] == ' ' {
			continue
		}
		t[w], off[w] = t[i], off[i]
		w++
	}
	off[w] = off[len(t)]
	return t[:w], off[:w+1]
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// html renders markup as its visible text (tags stripped, entities
// decoded) and, separately, the text a reader would not see: comments and
// elements hidden with display:none, visibility:hidden, font-size:0,
// white text, off-screen positioning, aria-hidden or the hidden attribute.
func (n *normalizer) html(raw []byte, prefix string, depth int, coarse *segment, obf bool) (hidden bool) {
	var vis, hid []byte
	var visOff, hidOff []int32
	entities := false
	hiddenDepth := 0 // >0 while inside a hidden element
	var stack []bool // per open element: whether it hides its content
	emit := func(b []byte, at int) {
		if hiddenDepth > 0 {
			hid = append(hid, b...)
			for range b {
				hidOff = append(hidOff, int32(at))
			}
			return
		}
		vis = append(vis, b...)
		for range b {
			visOff = append(visOff, int32(at))
		}
	}
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '<' && bytes.HasPrefix(raw[i:], []byte("<!--")):
			end := bytes.Index(raw[i+4:], []byte("-->"))
			stop := len(raw)
			if end >= 0 {
				stop = i + 4 + end
			}
			body := raw[i+4 : stop]
			hid = append(hid, ' ')
			hidOff = append(hidOff, int32(i))
			for k, b := range body {
				hid = append(hid, lowerByte(b))
				hidOff = append(hidOff, int32(i+4+k))
			}
			hid = append(hid, ' ')
			hidOff = append(hidOff, int32(stop))
			i = stop + 3
		case c == '<' && i+1 < len(raw) && (isASCIILetter(raw[i+1]) || raw[i+1] == '/'):
			end := bytes.IndexByte(raw[i:], '>')
			if end < 0 {
				emit([]byte{lowerByte(c)}, i)
				i++
				continue
			}
			tag := lowerASCII(raw[i+1 : i+end])
			emit([]byte{' '}, i)
			i += end + 1
			if tag[0] == '/' {
				if len(stack) > 0 {
					if stack[len(stack)-1] {
						hiddenDepth--
					}
					stack = stack[:len(stack)-1]
				}
				continue
			}
			if bytes.HasSuffix(tag, []byte("/")) || isVoid(tag) {
				continue
			}
			h := hidesContent(tag)
			stack = append(stack, h)
			if h {
				hiddenDepth++
			}
		case c == '&':
			end := bytes.IndexByte(raw[i:min(len(raw), i+12)], ';')
			if end > 1 {
				dec := html.UnescapeString(string(raw[i : i+end+1]))
				if dec != string(raw[i:i+end+1]) {
					if raw[i+1] == '#' {
						entities = true
					}
					emit(lowerASCII([]byte(dec)), i)
					i += end + 1
					continue
				}
			}
			emit([]byte{'&'}, i)
			i++
		default:
			emit([]byte{lowerByte(c)}, i)
			i++
		}
	}
	visOff = append(visOff, int32(len(raw)))
	hidOff = append(hidOff, int32(len(raw)))
	mk := func(name string, t []byte, off []int32, o bool) bool {
		if len(bytes.TrimSpace(t)) == 0 {
			return false
		}
		// The extracted text gets the same folding as any text; positions
		// stay exact through off when the input was the original.
		f := fold(t, coarse == nil)
		v := View{Name: join(prefix, name), Text: f.text, Obfuscated: o || f.disguised, Depth: depth}
		if coarse != nil {
			v.segs = []segment{*coarse}
		} else if f.off != nil {
			m := make([]int32, len(f.off))
			for k, x := range f.off {
				m[k] = off[x]
			}
			v.off = m
		} else {
			v.off = off
		}
		n.add(v)
		n.transforms(v)
		if depth < n.opts.MaxDepth && o {
			// Hidden or entity-encoded text may hide a further encoding.
			seg := segment{start: int(off[0]), end: int(off[len(off)-1])}
			if coarse != nil {
				seg = *coarse
			}
			n.decodeBase64(t, v.Name, depth, &seg)
			n.decodePercent(t, v.Name, depth, &seg)
			n.decodeHex(t, v.Name, depth, &seg)
		}
		return true
	}
	mk("html", vis, visOff, obf || entities)
	return mk("hidden-html", hid, hidOff, true)
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isASCIILetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isVoid(tag []byte) bool {
	name := tag
	if k := bytes.IndexAny(tag, " \t\n/"); k >= 0 {
		name = tag[:k]
	}
	switch string(name) {
	case "br", "img", "meta", "input", "hr", "link", "area", "base", "col", "embed", "source", "track", "wbr", "!doctype":
		return true
	}
	return false
}

// hidesContent reports whether an opening tag (lower-cased, without the
// angle brackets) hides its content from a reader.
func hidesContent(tag []byte) bool {
	if bytes.Contains(tag, []byte(`aria-hidden="true"`)) || bytes.Contains(tag, []byte(" hidden")) && !bytes.Contains(tag, []byte("overflow")) && !bytes.Contains(tag, []byte("type=")) {
		return true
	}
	i := bytes.Index(tag, []byte("style="))
	if i < 0 {
		return false
	}
	s := bytes.ReplaceAll(tag[i:], []byte(" "), nil)
	for _, h := range hiddenCSS {
		if bytes.Contains(s, h) {
			return true
		}
	}
	return false
}

var hiddenCSS = [][]byte{
	[]byte("display:none"), []byte("visibility:hidden"), []byte("font-size:0;"), []byte("font-size:0\""),
	[]byte("font-size:0px"), []byte("font-size:0pt"), []byte("font-size:0em"), []byte("opacity:0;"), []byte("opacity:0\""),
	[]byte(";color:#fff"), []byte("\"color:#fff"), []byte("'color:#fff"), []byte(";color:white"), []byte("\"color:white"),
	[]byte("'color:white"), []byte("left:-9999"), []byte("text-indent:-9999"), []byte("height:0;overflow:hidden"),
	[]byte("clip:rect(0"), []byte("max-height:0"),
}

// printable reports whether decoded bytes are mostly text: at least 85%
// printable ASCII or whitespace, or valid UTF-8 with few controls.
func printable(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	good := 0
	for _, c := range b {
		if c >= 0x20 && c < 0x7F || c == '\n' || c == '\r' || c == '\t' {
			good++
		}
	}
	if good*100 >= len(b)*85 {
		return true
	}
	if !utf8.Valid(b) {
		return false
	}
	bad := 0
	for _, r := range string(b) {
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' || r == utf8.RuneError {
			bad++
		}
	}
	return bad*20 < utf8.RuneCount(b)
}

// decoded collects the decoded runs of one kind into one view.
type decoded struct {
	text []byte
	segs []segment
}

func (d *decoded) add(b []byte, start, end int, coarse *segment) {
	if len(d.text) > 0 {
		d.text = append(d.text, '\n')
	}
	seg := segment{at: len(d.text), start: start, end: end}
	if coarse != nil {
		seg.start, seg.end = coarse.start, coarse.end
	}
	d.segs = append(d.segs, seg)
	d.text = append(d.text, b...)
}

func (n *normalizer) emitDecoded(d *decoded, name string, depth int) {
	if len(d.text) == 0 || n.full() {
		return
	}
	// Decoded content is a source of its own: fold it, transform it and
	// decode it once more, up to MaxDepth. The whole view maps coarsely.
	seg := segment{start: d.segs[0].start, end: d.segs[len(d.segs)-1].end}
	n.source(d.text, name, depth+1, &seg, true)
	// source mapped the whole view to one range; keep the finer segments
	// for the view itself.
	for i := range n.views {
		if n.views[i].Name == name {
			n.views[i].segs = d.segs
		}
	}
}

// minBase64 is the shortest run decoded as base64: shorter runs are
// mostly identifiers and hashes, and too short to carry an instruction.
const minBase64 = 20

func isB64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_'
}

// decodeBase64 decodes runs of the base64 or base64url alphabet that
// decode to mostly printable text.
func (n *normalizer) decodeBase64(raw []byte, prefix string, depth int, coarse *segment) {
	var d decoded
	for i := 0; i < len(raw); {
		if !isB64(raw[i]) {
			i++
			continue
		}
		j := i
		for j < len(raw) && isB64(raw[j]) {
			j++
		}
		end := j
		for end < len(raw) && raw[end] == '=' && end-j < 2 {
			end++
		}
		if j-i >= minBase64 {
			if b := decodeB64Run(raw[i:j]); b != nil && printable(b) {
				d.add(b, i, end, coarse)
			}
		}
		i = end
		if i == j && j < len(raw) {
			i++
		}
	}
	n.emitDecoded(&d, join(prefix, "base64"), depth)
}

func decodeB64Run(run []byte) []byte {
	enc := base64.RawStdEncoding
	if bytes.ContainsAny(run, "-_") {
		if bytes.ContainsAny(run, "+/") {
			return nil
		}
		enc = base64.RawURLEncoding
	}
	// A trailing partial quantum (bad padding) is dropped rather than
	// failing the whole run.
	if len(run)%4 == 1 {
		run = run[:len(run)-1]
	}
	out := make([]byte, enc.DecodedLen(len(run)))
	k, err := enc.Decode(out, run)
	if err != nil {
		return nil
	}
	return out[:k]
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// escapeRuns decodes runs of escapes like %41 or \x41 (with plain bytes
// allowed between them) that contain at least four escapes.
func escapeRuns(raw []byte, prefix string, coarse *segment, d *decoded) {
	for i := 0; i < len(raw); i++ {
		if !bytes.HasPrefix(raw[i:], []byte(prefix)) {
			continue
		}
		var out []byte
		j, count, plain := i, 0, 0
		for j < len(raw) {
			if bytes.HasPrefix(raw[j:], []byte(prefix)) && j+len(prefix)+1 < len(raw) {
				h, ok1 := unhex(raw[j+len(prefix)])
				l, ok2 := unhex(raw[j+len(prefix)+1])
				if ok1 && ok2 {
					out = append(out, h<<4|l)
					j += len(prefix) + 2
					count++
					plain = 0
					continue
				}
			}
			// Plain bytes may sit between escapes (a partly encoded
			// string) but a long plain stretch ends the run.
			c := raw[j]
			if plain >= 40 || c < 0x20 || c == '"' || c == '<' {
				break
			}
			out = append(out, c)
			plain++
			j++
		}
		if count >= 4 && printable(out) {
			d.add(out, i, j, coarse)
		}
		i = j - 1
	}
}

// decodePercent decodes percent-encoded runs (%41%42...).
func (n *normalizer) decodePercent(raw []byte, prefix string, depth int, coarse *segment) {
	if bytes.Count(raw, []byte("%")) < 4 {
		return
	}
	var d decoded
	escapeRuns(raw, "%", coarse, &d)
	n.emitDecoded(&d, join(prefix, "percent"), depth)
}

// decodeHex decodes \x41 escapes and plain runs of hex digits (at least
// 16, an even number) that decode to printable text; hashes and ids
// decode to binary and are dropped.
func (n *normalizer) decodeHex(raw []byte, prefix string, depth int, coarse *segment) {
	var d decoded
	if bytes.Count(raw, []byte(`\x`)) >= 4 {
		escapeRuns(raw, `\x`, coarse, &d)
	}
	for i := 0; i < len(raw); {
		if _, ok := unhex(raw[i]); !ok || (i > 0 && isB64(raw[i-1])) {
			i++
			continue
		}
		j := i
		for j < len(raw) {
			if _, ok := unhex(raw[j]); !ok {
				break
			}
			j++
		}
		if j-i >= 16 && (j == len(raw) || !isB64(raw[j])) {
			run := raw[i : j-(j-i)%2]
			out := make([]byte, len(run)/2)
			for k := range out {
				h, _ := unhex(run[2*k])
				l, _ := unhex(run[2*k+1])
				out[k] = h<<4 | l
			}
			if printable(out) {
				d.add(out, i, j, coarse)
			}
		}
		i = j
	}
	n.emitDecoded(&d, join(prefix, "hex"), depth)
}
