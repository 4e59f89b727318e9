package injection

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"html"
	"math/bits"
	"slices"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Normalization defaults.
const (
	// DefaultWindow is the most content a scan looks at; the proxy
	// passes at most this much of a body.
	DefaultWindow = 64 << 10
	// DefaultMaxDepth bounds nested decoding (base64 inside percent
	// encoding, entities inside base64, ...).
	DefaultMaxDepth = 2
	// DefaultMaxViews bounds how many views one text produces.
	DefaultMaxViews = 24
)

// normalizeOptions bound the work of a normalizer. The zero value means
// the defaults above.
type normalizeOptions struct {
	// Window is the most bytes of input looked at (default
	// DefaultWindow); the rest is ignored.
	Window int
	// MaxDepth bounds nested decoding (default DefaultMaxDepth).
	MaxDepth int
	// MaxViews bounds the number of views (default DefaultMaxViews).
	MaxViews int
}

func (o normalizeOptions) withDefaults() normalizeOptions {
	if o.Window <= 0 {
		o.Window = DefaultWindow
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
	// "reversed", "separators", "unwrapped", "emphasis" or "json-array";
	// nested views join names with "/".
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
	lin  []linSeg
	segs []segment
	// mixed is set on the scanner's own text view, which is the content
	// itself rather than a lower-cased copy: Text may hold upper-case
	// ASCII, and the scanner folds case where it looks.
	mixed bool
}

// linSeg maps Text[at:] (up to the next segment) to the original from
// src on: byte for byte when run is set, all to src otherwise (the bytes
// a rune folded to).
type linSeg struct {
	at, src int32
	run     bool
}

// at maps Text[i] (or its end, i = len(Text)) to the original, for a
// view mapped exactly (off or lin).
func (v *View) at(i int) int {
	if v.off != nil {
		return int(v.off[i])
	}
	// The last segment starting at or before i.
	lo, hi := 0, len(v.lin)
	for lo < hi {
		if m := int(uint(lo+hi) >> 1); int(v.lin[m].at) > i {
			hi = m
		} else {
			lo = m + 1
		}
	}
	sg := v.lin[lo-1]
	if sg.run {
		return int(sg.src) + i - int(sg.at)
	}
	return int(sg.src)
}

// segment maps Text[at:] (up to the next segment) to original[start:end].
type segment struct{ at, start, end int }

// Origin maps Text[i:j] of the view to a byte range of the original
// content. Views made by decoding map to the whole encoded run.
func (v *View) Origin(i, j int) (start, end int) {
	n := len(v.Text)
	i, j = clamp(i, 0, n), clamp(j, 0, n)
	switch {
	case v.off != nil || v.lin != nil:
		start, end = v.at(i), v.at(j)
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

// normalizer makes views, only what the scanner cannot do better itself: the text view is the content
// as it is when that is ASCII (the trigger automaton folds case), the
// leetspeak, ROT13 and reversed renderings are left to the scanner, which
// renders them only in windows around triggers, and the HTML, JSON and
// separator views cover only the regions where they differ from the text.
// It works in two steps: source makes the text and markup views, finish
// the rest (all of them obfuscated), which a scan that already reached
// its verdict never asks for. Its buffers are reused from scan to scan.
type normalizer struct {
	opts    normalizeOptions
	origLen int
	views   []View
	// hidden lists the ranges of the original that markup hides
	// (comments, hidden elements): the text view shows them
	// as if visible, so a match there counts as hidden.
	hidden [][2]int
	// rest and later are what source left for finish.
	rest *restOf
	// restBuf holds what rest points to, so that a scan allocates none.
	restBuf restOf
	later   []markupRest

	// Reused buffers: the top level's, and arenas for
	// nested content, whose views live until the scan ends.
	mfold   [2]markupFold
	folds   arena[folded]
	markups arena[markup]
	mfolds  arena[markupFold]
	decs    [DefaultMaxDepth + 2]decoded
	runs    [DefaultMaxDepth + 1][][2]int
	runes   *runeCache
	text    folded
	vis     markup
	regions [][2]int
	sep     []byte
	sepOff  []int32
	// layout holds the top level's layout views (see layout.go); lines
	// is their scratch list of ranges.
	layout [3]struct {
		out []byte
		off []int32
	}
	lines [][2]int
	// sourced holds the decoded content already read as a source, and
	// the depth it was read at (see emitDecoded), in one reused buffer.
	sourced    []sourcedText
	sourcedBuf []byte
}

// sourcedText is decoded content read as a source: sourcedBuf[start:end]
// read at depth.
type sourcedText struct{ start, end, depth int }

// reset prepares a pooled normalizer for content of length origLen.
func (n *normalizer) reset(opts normalizeOptions, origLen int) {
	n.opts, n.origLen = opts, origLen
	clear(n.views)
	n.views, n.hidden, n.rest, n.later = n.views[:0], n.hidden[:0], nil, n.later[:0]
	n.sourced, n.sourcedBuf = n.sourced[:0], n.sourcedBuf[:0]
	n.folds.reset()
	n.markups.reset()
	n.mfolds.reset()
}

// arena hands out values of T from scan to scan: the buffers they hold
// are reused once the scan that used them ended (reset).
type arena[T any] struct {
	items []*T
	n     int
}

func (a *arena[T]) get() *T {
	if a.n == len(a.items) {
		a.items = append(a.items, new(T))
	}
	a.n++
	return a.items[a.n-1]
}

func (a *arena[T]) reset() { a.n = 0 }

// b64Runs is b64Runs with a buffer per depth: the decoders of content
// at depth are done with its runs before any other content at that
// depth is looked at.
func (n *normalizer) b64Runs(raw []byte, depth int) [][2]int {
	if depth >= len(n.runs) {
		return b64Runs(raw)
	}
	n.runs[depth] = appendB64Runs(n.runs[depth][:0], raw)
	return n.runs[depth]
}

// decoded returns the collector for views decoded from content at depth
// (so at depth+1). Its text is dead once emitDecoded returned (views fold
// a copy of it), so decoders at one depth take turns with one buffer;
// its segments live on in the view and are fresh.
func (n *normalizer) decoded(depth int) *decoded {
	if depth+1 >= len(n.decs) {
		return new(decoded)
	}
	d := &n.decs[depth+1]
	d.text, d.segs = d.text[:0], nil
	return d
}

// runeCache returns the normalizer's cache of rune foldings, made on
// first use.
func (n *normalizer) runeCache() *runeCache {
	if n.runes == nil {
		n.runes = new(runeCache)
	}
	return n.runes
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
	top := coarse == nil
	var f *folded
	switch {
	case top && isASCII(raw):
		// The content itself: the scanner folds case as it reads.
		f = &n.text
		*f = folded{text: raw, tags: f.tags[:0], buf: f.buf, offBuf: f.offBuf, linBuf: f.linBuf, cache: f.cache}
	case top:
		f = &n.text
		f.cache = n.runeCache()
		f.foldLin(raw)
	default:
		f = n.folds.get()
		f.cache = n.runeCache()
		f.fold(raw, coarse == nil)
	}
	base := View{Name: join(prefix, "text"), Text: f.text, Obfuscated: obf || f.disguised, Depth: depth, off: f.off, lin: f.lin, mixed: top && f.off == nil && f.lin == nil}
	if coarse != nil {
		base.off = nil
		base.segs = []segment{*coarse}
	}
	if prefix != "" {
		base.Name = prefix
	}
	baseIdx := len(n.views)
	n.add(base)

	if !top {
		n.tags(f, prefix, depth, coarse)
	}
	if bytes.IndexByte(raw, '<') >= 0 || bytes.IndexByte(raw, '&') >= 0 {
		hidden := n.html(raw, prefix, depth, coarse, obf)
		if hidden && !top && baseIdx < len(n.views) && n.views[baseIdx].Name == base.Name {
			// The markup carries hidden text: the raw text shows it as
			// if visible, so matches there count as hidden; the visible
			// rendering is the "html" view.
			n.views[baseIdx].Obfuscated = true
		}
	}
	if top {
		// The scanner matches the text and markup views first, and asks
		// for the rest (finish) only when they did not settle the
		// verdict: every other view is obfuscated, and scanned after.
		n.restBuf = restOf{raw: raw, f: f, base: base, prefix: prefix, depth: depth}
		n.rest = &n.restBuf
		return
	}
	n.decodes(raw, base, prefix, depth, coarse)
}

// restOf is what source left for finish to do.
type restOf struct {
	raw    []byte
	f      *folded
	base   View
	prefix string
	depth  int
}

// finish adds the views source left for later, if any, and reports
// whether it added any.
func (n *normalizer) finish() bool {
	r := n.rest
	if r == nil {
		return false
	}
	n.rest = nil
	k := len(n.views)
	n.tags(r.f, r.prefix, r.depth, nil)
	for i := range n.later {
		m := &n.later[i]
		n.decodeMarkup(m.t, m.name, m.depth, &m.seg)
	}
	n.later = n.later[:0]
	n.decodes(r.raw, r.base, r.prefix, r.depth, nil)
	return len(n.views) > k
}

// tags adds the view of the text spelled in Unicode tag characters.
func (n *normalizer) tags(f *folded, prefix string, depth int, coarse *segment) {
	if len(f.tags) > 0 {
		seg := segment{start: f.tagStart, end: f.tagEnd}
		if coarse != nil {
			seg = *coarse
		}
		n.source(f.tags, join(prefix, "tags"), depth, &seg, true)
	}
}

// decodes adds the decoded views of raw, and its separators view.
func (n *normalizer) decodes(raw []byte, base View, prefix string, depth int, coarse *segment) {
	if depth >= n.opts.MaxDepth {
		return
	}
	runs := n.b64Runs(raw, depth)
	n.decodeBase64(raw, runs, prefix, depth, coarse)
	n.decodePercent(raw, prefix, depth, coarse)
	n.decodeHex(raw, runs, prefix, depth, coarse)
	n.decodeJSON(raw, prefix, depth, coarse)
	n.separators(base, prefix)
	n.layoutViews(base, prefix)
}

// isASCII reports whether b is all ASCII. It runs over every body
// scanned, and reads eight bytes at a time: byte by byte it cost about
// as much as the base64 search, a tenth of a 512-byte scan.
func isASCII(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// decodeJSON undoes JSON string escapes (\" \\ \/ \n \uXXXX) when the
// content has several: tool output is often JSON whose strings carry
// escaped markup (Go escapes < and > as \u003c and \u003e) or text, and
// JSON inside a JSON string is escaped twice.
func (n *normalizer) decodeJSON(raw []byte, prefix string, depth int, coarse *segment) {
	if bytes.Count(raw, []byte(`\"`)) < 2 && bytes.Count(raw, []byte(`\u`)) < 2 {
		return
	}
	// Decoding changes the text only around escapes: the view covers the
	// regions around them (all of the text when escapes are dense), each
	// mapped to where it came from.
	regions := n.regions[:0]
	for i := 0; ; {
		k := bytes.IndexByte(raw[i:], '\\')
		if k < 0 {
			break
		}
		i += k
		regions = addRegion(regions, max(0, i-jsonContext), min(len(raw), i+jsonContext))
		i += 2
		if i >= len(raw) {
			break
		}
	}
	n.regions = regions
	d := n.decoded(depth)
	for _, r := range regions {
		d.scratch = unescapeJSON(d.scratch[:0], raw[r[0]:r[1]], nil)
		d.add(d.scratch, r[0], r[1], coarse)
	}
	n.emitDecoded(d, prefix, "json", depth)
}

// jsonContext is how far around an escape the JSON view reaches: far
// enough for a pattern's match across the escape.
const jsonContext = 256

// folded is the text view of some content.
type folded struct {
	text      []byte
	off       []int32 // nil when text maps 1:1 onto the input
	disguised bool    // homoglyphs, invisible controls or full-width forms were removed
	tags      []byte  // ASCII decoded from Unicode tag characters
	tagStart  int
	tagEnd    int

	// lin, when not nil, maps text to the input instead of off.
	lin []linSeg
	// cache, when not nil, remembers foldings of runes.
	cache *runeCache

	// Buffers kept for reuse by a pooled normalizer.
	buf    []byte
	offBuf []int32
	linBuf []linSeg
}

// fold sets f to the folding of raw, reusing f's buffers: it lower-cases
// ASCII, and for other content applies NFKC, folds homoglyphs, drops
// zero-width and bidi controls and collects Unicode tag characters. Pure
// ASCII keeps its positions, so no offset table is needed.
func (f *folded) fold(raw []byte, exact bool) { f.foldMode(raw, exact, false) }

// foldLin is fold with an exact mapping made of segments (f.lin), not
// one offset per byte: cheaper when most of the text is ASCII.
func (f *folded) foldLin(raw []byte) { f.foldMode(raw, false, true) }

func (f *folded) foldMode(raw []byte, exact, lin bool) {
	*f = folded{buf: f.buf[:0], offBuf: f.offBuf[:0], tags: f.tags[:0], tagStart: -1, linBuf: f.linBuf[:0], cache: f.cache}
	cache := f.cache
	if isASCII(raw) {
		f.text = lowerInto(f.buf, raw)
		f.buf = f.text
		f.tagStart = 0
		return
	}
	text := f.buf
	var off []int32
	if exact {
		off = f.offBuf
	}
	var segs []linSeg
	if lin {
		segs = f.linBuf
	}
	text = slices.Grow(text, len(raw))
	if exact {
		off = slices.Grow(off, len(raw)+1)
	}
	var buf [32]byte
	for i := 0; i < len(raw); {
		if raw[i] < utf8.RuneSelf {
			// A run of ASCII, lower-cased and mapped in bulk.
			j := asciiEnd(raw, i+1)
			k := len(text)
			text = append(text, raw[i:j]...)
			lowerInPlace(text[k:])
			if exact {
				off = appendSeq(off, i, j)
			}
			if lin {
				segs = append(segs, linSeg{at: int32(k), src: int32(i), run: true})
			}
			i = j
			continue
		}
		r, size := utf8.DecodeRune(raw[i:])
		var out []byte
		// Text in a script other than Latin repeats its letters: their
		// foldings are remembered.
		var ce *runeFold
		if cache != nil {
			ce = &cache[uint32(r)*0x9E3779B1>>(32-runeCacheBits)]
		}
		if ce != nil && r != utf8.RuneError && ce.r == r && ce.ok {
			out = ce.out[:ce.n]
			f.disguised = f.disguised || ce.disguised
			text = append(text, out...)
			if exact {
				for range out {
					off = append(off, int32(i))
				}
			}
			if lin && len(out) > 0 {
				segs = append(segs, linSeg{at: int32(len(text) - len(out)), src: int32(i)})
			}
			i += size
			continue
		}
		wasDisguised := f.disguised
		f.disguised = false
		cacheable := r != utf8.RuneError && !(r >= 0xE0000 && r <= 0xE007F)
		switch {
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
			if h := homoglyph(lr); h != 0 {
				buf[0] = h
				out = buf[:1]
				f.disguised = true
				break
			}
			if r >= 0xFF01 && r <= 0xFF5E { // full-width ASCII
				buf[0] = lowerByte(byte(r - 0xFF01 + 0x21))
				out = buf[:1]
				f.disguised = true
				break
			}
			if r != utf8.RuneError && norm.NFKC.IsNormal(raw[i:i+size]) {
				// NFKC keeps the rune: lower-casing it is all there is
				// to do (as bytes.ToLower would, without allocating).
				out = utf8.AppendRune(buf[:0], lr)
				break
			}
			out = norm.NFKC.Append(buf[:0], raw[i:i+size]...)
			out = bytes.ToLower(out)
		}
		if ce != nil && cacheable && len(out) <= len(ce.out) {
			*ce = runeFold{r: r, ok: true, n: uint8(len(out)), disguised: f.disguised}
			copy(ce.out[:], out)
		}
		f.disguised = f.disguised || wasDisguised
		if lin && len(out) > 0 {
			segs = append(segs, linSeg{at: int32(len(text)), src: int32(i)})
		}
		text = append(text, out...)
		if exact {
			for range out {
				off = append(off, int32(i))
			}
		}
		i += size
	}
	if exact {
		off = append(off, int32(len(raw)))
	}
	if lin {
		segs = append(segs, linSeg{at: int32(len(text)), src: int32(len(raw)), run: true})
		f.lin, f.linBuf = segs, segs
	}
	if f.tagStart < 0 {
		f.tagStart = 0
	}
	f.text, f.buf = text, text
	if exact {
		f.off, f.offBuf = off, off
	}
}

// runeFold is the folding of one rune: what it becomes, and whether
// folding it disguised something.
type runeFold struct {
	r         rune
	ok        bool
	n         uint8
	disguised bool
	out       [12]byte
}

// runeCacheBits sizes runeCache.
const runeCacheBits = 9

// runeCache remembers the foldings of runes. A scanner has its own (see
// folded.cache): scans run concurrently.
type runeCache [1 << runeCacheBits]runeFold

// asciiEnd returns the index of the first byte of b from i on that is
// not ASCII, or len(b).
func asciiEnd(b []byte, i int) int {
	for i < len(b) && b[i] < utf8.RuneSelf {
		i++
	}
	return i
}

// appendSeq appends the offsets from, from+1, ..., to-1 to off.
func appendSeq(off []int32, from, to int) []int32 {
	k := len(off)
	off = slices.Grow(off, to-from)[:k+to-from]
	o := off[k:]
	for p := range o {
		o[p] = int32(from + p)
	}
	return off
}

// appendLowerAt appends b lower-cased (ASCII only) to dst, and to off the
// offsets at, at+1, ... of its bytes.
func appendLowerAt(dst []byte, off []int32, b []byte, at int) ([]byte, []int32) {
	k := len(dst)
	dst = append(dst, b...)
	lowerInPlace(dst[k:])
	return dst, appendSeq(off, at, at+len(b))
}

// lowerInto appends b lower-cased (ASCII only) to dst[:0].
func lowerInto(dst, b []byte) []byte {
	dst = append(dst[:0], b...)
	lowerInPlace(dst)
	return dst
}

// lowerInPlace lower-cases the ASCII letters of b, eight bytes at a time:
// per byte, without carries between bytes, the high bit of lo is set
// from 'A' up, that of hi above 'Z', and bytes beyond ASCII are left
// alone.
func lowerInPlace(b []byte) {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		h := w &^ highs
		lo := h + ones*(0x80-'A')
		hi := h + ones*(0x80-'Z'-1)
		if upper := lo &^ hi &^ w & highs; upper != 0 {
			binary.LittleEndian.PutUint64(b[i:], w|upper>>2)
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
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

// homoglyphTable is homoglyphs as an array, for the runes below its
// length (all but a few): a lookup per non-ASCII rune of the text;
// homoglyphFar holds the few beyond it.
var homoglyphTable, homoglyphFar = func() (t [0x600]byte, far []rune) {
	for r, c := range homoglyphs {
		if int(r) < len(t) {
			t[r] = c
		} else {
			far = append(far, r)
		}
	}
	return t, far
}()

// homoglyph returns the Latin letter r imitates, or 0.
func homoglyph(r rune) byte {
	if r >= 0 && int(r) < len(homoglyphTable) {
		return homoglyphTable[r]
	}
	for _, f := range homoglyphFar {
		if f == r {
			return homoglyphs[r]
		}
	}
	return 0
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

// sepContext is how far around a padded run the scanner's separators view
// reaches: the rest of a sentence written partly in the clear.
const sepContext = 200

// separators adds the view with letters padded with one repeated
// separator ("i.g.n.o.r.e", "i g n o r e", "i-g-n-o-r-e") collapsed into
// words. It covers only the regions around padded runs of four letters or
// more (with sepContext bytes on either side), joined by newlines; within
// them, shorter runs with the same separator ("a.l.l", "n.o") collapse too.
func (n *normalizer) separators(v View, prefix string) {
	t := v.Text
	var seps [256]bool
	regions := n.regions[:0]
	// A run of four padded letters starting at i has its separator at
	// i+1, i+3 and i+5: a cheap test made for eight values of i at once,
	// before the exact one. Positions before next were read as part of a
	// run.
	next := 0
	at := func(i int) {
		if i < next || t[i+1] != t[i+3] || t[i+3] != t[i+5] || !startsPadded(t, i) {
			return
		}
		j, letters := paddedRun(t, i, t[i+1])
		if letters >= 4 {
			seps[t[i+1]] = true
			regions = addRegion(regions, max(0, i-sepContext), min(len(t), j+1+sepContext))
		}
		next = j + 1
	}
	i := 0
	for ; i+13 <= len(t); i += 8 {
		for c := paddedCandidates(t, i); c != 0; c &= c - 1 {
			at(i + bits.TrailingZeros64(c)/8)
		}
	}
	for ; i+6 < len(t); i++ {
		at(i)
	}
	n.regions = regions
	if len(regions) == 0 {
		return
	}
	// The top level's buffers are reused; a nested view's must outlive
	// the top level's.
	var out []byte
	var off []int32
	if prefix == "" {
		out, off = n.sep[:0], n.sepOff[:0]
	}
	for k, r := range regions {
		if k > 0 {
			out = append(out, '\n')
			off = append(off, int32(r[0]))
		}
		out, off = collapsePadded(t, r[0], r[1], &seps, out, off)
	}
	off = append(off, int32(regions[len(regions)-1][1]))
	if prefix == "" {
		n.sep, n.sepOff = out, off
	}
	if v.mixed {
		for i, c := range out {
			out[i] = lowerByte(c)
		}
	}
	n.addSeparators(v, prefix, out, off)
}

// paddedCandidates has the high bit of byte k set when t[i+k+1],
// t[i+k+3] and t[i+k+5] are equal and t[i+k+2] differs from them (a
// padded letter is not its separator), for k in [0, 8); t must have 13
// bytes from i.
func paddedCandidates(t []byte, i int) uint64 {
	const lows, highs = 0x7f7f7f7f7f7f7f7f, 0x8080808080808080
	b := t[i+1 : i+13]
	w1 := binary.LittleEndian.Uint64(b)
	w2 := binary.LittleEndian.Uint64(b[1:])
	w3 := binary.LittleEndian.Uint64(b[2:])
	w5 := binary.LittleEndian.Uint64(b[4:])
	// The high bit of each byte that is not zero, exactly.
	x, y := w1^w3|w3^w5, w1^w2
	return ^((x&lows + lows) | x) & ((y&lows + lows) | y) & highs
}

// addRegion appends [s, e) to sorted regions, merging it with the last
// one when they touch.
func addRegion(regions [][2]int, s, e int) [][2]int {
	if k := len(regions) - 1; k >= 0 && s <= regions[k][1] {
		regions[k][1] = max(regions[k][1], e)
		return regions
	}
	return append(regions, [2]int{s, e})
}

// isPadCh reports a padded "letter": any visible byte other than the
// separator, so padded URLs and identifiers ("r-u-n-_-c-m-d") collapse
// as well.
func isPadCh(c, sep byte) bool { return c > ' ' && c != sep && c < 0x7F }

// paddedRun returns the end (index of the last letter) of a run of single
// letters separated by sep starting at i, and its letter count.
func paddedRun(t []byte, i int, sep byte) (int, int) {
	j := i
	for j+2 < len(t) && t[j+1] == sep && isPadCh(t[j+2], sep) && (j+3 >= len(t) || !isPadCh(t[j+3], sep)) {
		j += 2
	}
	return j, (j-i)/2 + 1
}

// startsPadded reports whether a padded run may start at i.
func startsPadded(t []byte, i int) bool {
	if i+2 >= len(t) {
		return false
	}
	c := lowerByte(t[i])
	if !isAlnum(c) && c != '{' && c != '!' && c != '"' {
		return false
	}
	sep := t[i+1]
	return (sep == ' ' || sep > ' ' && sep < 0x7F && !isAlnum(lowerByte(sep))) && (i == 0 || !isPadCh(t[i-1], sep))
}

// collapsePadded appends t[from:to] to out with padded runs of the
// separators in seps collapsed, and the index in t of every byte to off.
// A run that starts before to is collapsed to its end.
func collapsePadded(t []byte, from, to int, seps *[256]bool, out []byte, off []int32) ([]byte, []int32) {
	last := from
	for i := from; i+2 < to; i++ {
		if !seps[t[i+1]] || !startsPadded(t, i) {
			continue
		}
		j, letters := paddedRun(t, i, t[i+1])
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
	for k := last; k < to; k++ {
		out = append(out, t[k])
		off = append(off, int32(k))
	}
	return out, off
}

// addSeparators adds the separators view of v: out, with off mapping
// each byte (and the end) to an index of v.Text.
func (n *normalizer) addSeparators(v View, prefix string, out []byte, off []int32) {
	// Runs padded with spaces lose their word gaps ("a l l  p r e v"
	// becomes "all  prev"), and gaps of several spaces stand for one.
	out, off = squeezeSpaces(out, off)
	n.addDerived(v, join(prefix, "separators"), true, out, off)
}

// addDerived adds the view named name made from v: out, with off mapping
// each byte (and the end) to an index of v.Text.
func (n *normalizer) addDerived(v View, name string, obfuscated bool, out []byte, off []int32) {
	w := View{Name: name, Text: out, Obfuscated: obfuscated || v.Obfuscated, Depth: v.Depth}
	// Compose with v's mapping: off indexes v.Text.
	switch {
	case v.off != nil:
		m := make([]int32, len(off))
		for k, o := range off {
			m[k] = v.off[o]
		}
		w.off = m
	case v.lin != nil:
		// off is non-decreasing: the segments are walked alongside.
		m := make([]int32, len(off))
		g := 0
		for k, o := range off {
			for g+1 < len(v.lin) && v.lin[g+1].at <= o {
				g++
			}
			if sg := v.lin[g]; sg.at > o {
				m[k] = int32(v.at(int(o)))
			} else if sg.run {
				m[k] = sg.src + o - sg.at
			} else {
				m[k] = sg.src
			}
		}
		w.off = m
	case v.segs != nil:
		w.segs = v.segs
	default:
		w.off = off
	}
	n.add(w)
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

// addMarkup adds a view of text extracted from markup: t, with off
// mapping each byte (and the end) to the content. It reports whether t
// had anything but white space.
func (n *normalizer) addMarkup(name string, t []byte, off []int32, o bool, prefix string, depth int, coarse *segment) bool {
	if len(bytes.TrimSpace(t)) == 0 {
		return false
	}
	// The extracted text gets the same folding as any text; positions
	// stay exact through off when the input was the original. ASCII
	// (lower-cased as it was extracted) is its own folding.
	// The scanner's top-level markup views reuse buffers from scan to
	// scan.
	top := coarse == nil
	var buf *markupFold
	if top {
		buf = &n.mfold[0]
		if name != "html" {
			buf = &n.mfold[1]
		}
	} else {
		buf = n.mfolds.get()
	}
	f := &buf.f
	if isASCII(t) {
		*f = folded{text: t, buf: f.buf, offBuf: f.offBuf, tags: f.tags}
	} else {
		f.cache = n.runeCache()
		f.fold(t, coarse == nil)
	}
	v := View{Name: join(prefix, name), Text: f.text, Obfuscated: o || f.disguised, Depth: depth}
	if coarse != nil {
		v.segs = []segment{*coarse}
	} else if f.off != nil {
		m := slices.Grow(buf.off[:0], len(f.off))[:len(f.off)]
		for k, x := range f.off {
			m[k] = off[x]
		}
		v.off, buf.off = m, m
	} else {
		v.off = off
	}
	n.add(v)
	if depth < n.opts.MaxDepth && o {
		// Hidden or entity-encoded text may hide a further encoding.
		seg := segment{start: int(off[0]), end: int(off[len(off)-1])}
		if coarse != nil {
			seg = *coarse
		}
		if top {
			// Views of decoded text are obfuscated: the scanner asks
			// for them after the text and markup views (see finish).
			n.later = append(n.later, markupRest{t: t, name: v.Name, depth: depth, seg: seg})
		} else {
			n.decodeMarkup(t, v.Name, depth, &seg)
		}
	}
	return true
}

// markupFold holds the buffers of one markup view's folding.
type markupFold struct {
	f   folded
	off []int32
}

// markupRest is text extracted from markup left for finish to decode.
type markupRest struct {
	t     []byte
	name  string
	depth int
	seg   segment
}

// decodeMarkup adds the decoded views of text extracted from markup.
func (n *normalizer) decodeMarkup(t []byte, name string, depth int, seg *segment) {
	runs := n.b64Runs(t, depth)
	n.decodeBase64(t, runs, name, depth, seg)
	n.decodePercent(t, name, depth, seg)
	n.decodeHex(t, runs, name, depth, seg)
}

// markup holds the buffers html reuses.
type markup struct {
	vis, hid       []byte
	visOff, hidOff []int32
	stack          []bool
	marks          []int32
	tag            []byte
	ent            []byte
}

// htmlContext is how far around markup the scanner's html view reaches:
// beyond it, the visible text is the text view's own.
const htmlContext = 300

// html renders markup as its visible text (tags stripped, entities
// decoded) and, separately, the text a reader would not see: comments and
// elements hidden with display:none, visibility:hidden, font-size:0,
// white text, off-screen positioning, aria-hidden or the hidden attribute.
// It reports whether markup hides any text.
//
// The hidden text is extracted in full (all of it is suspicious, and it is
// usually small). The visible text is rendered only in the regions around markup and entities, where it differs from
// the text view; elsewhere it holds the same words. A "<" or "&" that
// cannot start markup ("a < b", "&&", "&x") makes no region. On the
// content itself (the top level) the scanner also records where hidden
// text lies: the text view is not marked hidden as a whole, a match there
// counts as hidden when it overlaps a hidden range.
func (n *normalizer) html(raw []byte, prefix string, depth int, coarse *segment, obf bool) bool {
	top := coarse == nil
	m := &n.vis
	if !top {
		// Nested content: its views must outlive the next call.
		m = n.markups.get()
	}
	// Where markup may start, and the regions around it.
	marks, regions := m.marks[:0], n.regions[:0]
	for _, c := range [2]byte{'<', '&'} {
		for p := 0; ; p++ {
			k := bytes.IndexByte(raw[p:], c)
			if k < 0 {
				break
			}
			p += k
			if startsMarkup(raw, p) {
				marks = append(marks, int32(p))
			}
		}
	}
	slices.Sort(marks)
	for _, p := range marks {
		regions = addRegion(regions, max(0, int(p)-htmlContext), min(len(raw), int(p)+htmlContext))
	}
	n.regions = regions

	vis, hid, visOff, hidOff := m.vis[:0], m.hid[:0], m.visOff[:0], m.hidOff[:0]
	stack := m.stack[:0] // per open element: whether it hides its content
	entities := false
	hiddenDepth, hiddenStart := 0, 0
	ri, lastVis := 0, -1
	// visible appends raw[a:b] (or, when rep is not nil, rep for the
	// markup at a) to the visible text where it lies in a region.
	visible := func(a, b int, rep []byte) {
		for a < b {
			for ri < len(regions) && regions[ri][1] <= a {
				ri++
			}
			if ri == len(regions) || regions[ri][0] >= b {
				return
			}
			s, e := max(a, regions[ri][0]), min(b, regions[ri][1])
			if len(vis) > 0 && lastVis != s {
				vis = append(vis, '\n')
				visOff = append(visOff, int32(s))
			}
			if rep != nil {
				vis = append(vis, rep...)
				for range rep {
					visOff = append(visOff, int32(a))
				}
				lastVis = b
				return
			}
			vis, visOff = appendLowerAt(vis, visOff, raw[s:e], s)
			lastVis = e
			a = e
		}
	}
	hidden := func(a, b int, rep []byte) {
		if a >= b {
			return
		}
		if rep != nil {
			hid = append(hid, rep...)
			for range rep {
				hidOff = append(hidOff, int32(a))
			}
			return
		}
		hid, hidOff = appendLowerAt(hid, hidOff, raw[a:b], a)
	}
	emit := func(a, b int, rep []byte) {
		if hiddenDepth > 0 {
			hidden(a, b, rep)
		} else {
			visible(a, b, rep)
		}
	}
	addHidden := func(r [2]int) {
		if top {
			n.hidden = append(n.hidden, r)
		}
	}
	space := []byte{' '}
	i := 0
	for _, mk := range marks {
		if int(mk) < i {
			continue // inside markup already read
		}
		// Text up to the markup is the text itself.
		emit(i, int(mk), nil)
		i = int(mk)
		c := raw[i]
		switch {
		case c == '<' && bytes.HasPrefix(raw[i:], []byte("<!--")):
			end := bytes.Index(raw[i+4:], []byte("-->"))
			stop := len(raw)
			if end >= 0 {
				stop = i + 4 + end
			}
			hidden(i, i+1, space)
			hidden(i+4, stop, nil)
			hidden(stop, stop+1, space)
			addHidden([2]int{i, min(len(raw), stop+3)})
			i = min(len(raw), stop+3) // an unclosed comment runs to the end
		case c == '<' && (isASCIILetter(raw[i+1]) || raw[i+1] == '/'):
			end := bytes.IndexByte(raw[i:], '>')
			if end < 0 {
				continue // not a tag: text
			}
			tag := raw[i+1 : i+end]
			emit(i, i+end+1, space)
			start := i
			i += end + 1
			if tag[0] == '/' {
				if len(stack) > 0 {
					if stack[len(stack)-1] {
						hiddenDepth--
						if hiddenDepth == 0 {
							addHidden([2]int{hiddenStart, i})
						}
					}
					stack = stack[:len(stack)-1]
				}
				continue
			}
			if tag[len(tag)-1] == '/' {
				continue
			}
			m.tag = lowerInto(m.tag, tag)
			tag = m.tag
			if isVoid(tag) {
				continue
			}
			h := hidesContent(tag)
			stack = append(stack, h)
			if h {
				if hiddenDepth == 0 {
					hiddenStart = start
				}
				hiddenDepth++
			}
		case c == '&':
			end := bytes.IndexByte(raw[i:min(len(raw), i+12)], ';')
			if end > 1 {
				if dec, ok := unescapeEntity(m.ent[:0], raw[i:i+end+1]); ok {
					m.ent = dec
					if raw[i+1] == '#' {
						entities = true
					}
					emit(i, i+end+1, dec)
					i += end + 1
				}
			}
		}
		// Anything else is text, emitted with what follows.
	}
	emit(i, len(raw), nil)
	if hiddenDepth > 0 {
		addHidden([2]int{hiddenStart, len(raw)})
	}
	visOff = append(visOff, int32(len(raw)))
	hidOff = append(hidOff, int32(len(raw)))
	*m = markup{vis: vis, hid: hid, visOff: visOff, hidOff: hidOff, stack: stack, marks: marks, tag: m.tag, ent: m.ent}
	n.addMarkup("html", vis, visOff, obf || entities, prefix, depth, coarse)
	return n.addMarkup("hidden-html", hid, hidOff, true, prefix, depth, coarse)
}

// unescapeEntity appends the lower-cased decoding of the character
// reference ent ("&...;") to dst, and reports false when ent is not one
// (it decodes to itself). The common references, numeric ones for ASCII
// and the named ones markup escapes with, are decoded here; the rest as
// html.UnescapeString does.
func unescapeEntity(dst, ent []byte) ([]byte, bool) {
	name := ent[1 : len(ent)-1]
	if len(name) > 1 && name[0] == '#' {
		var r, base rune = 0, 10
		digits := name[1:]
		if digits[0] == 'x' || digits[0] == 'X' {
			base, digits = 16, digits[1:]
		}
		ok := len(digits) > 0 && len(digits) <= 6
		for _, c := range digits {
			v, good := unhex(c)
			if !good || base == 10 && v > 9 {
				ok = false
				break
			}
			r = r*base + rune(v)
		}
		if ok && r >= 0x20 && r < 0x7F {
			return append(dst, lowerByte(byte(r))), true
		}
	} else {
		switch string(name) {
		case "amp":
			return append(dst, '&'), true
		case "lt":
			return append(dst, '<'), true
		case "gt":
			return append(dst, '>'), true
		case "quot":
			return append(dst, '"'), true
		case "apos":
			return append(dst, '\''), true
		case "nbsp":
			return append(dst, "\u00a0"...), true
		}
	}
	dec := html.UnescapeString(string(ent))
	if dec == string(ent) {
		return dst, false
	}
	return append(dst, lowerASCII([]byte(dec))...), true
}

// startsMarkup reports whether the "<" or "&" at raw[p] can start a tag,
// a comment or an entity: only there does the visible text differ from
// the text itself.
func startsMarkup(raw []byte, p int) bool {
	if p+1 >= len(raw) {
		return false
	}
	c := raw[p+1]
	if raw[p] == '<' {
		return isASCIILetter(c) || c == '/' || c == '!'
	}
	return isASCIILetter(c) || c == '#'
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
// angle brackets) hides its content from a reader. It overwrites tag.
func hidesContent(tag []byte) bool {
	if bytes.Contains(tag, []byte(`aria-hidden="true"`)) || bytes.Contains(tag, []byte(" hidden")) && !bytes.Contains(tag, []byte("overflow")) && !bytes.Contains(tag, []byte("type=")) {
		return true
	}
	i := bytes.Index(tag, []byte("style="))
	if i < 0 {
		return false
	}
	// The style without spaces, in place: tag is a scratch copy.
	s := tag[i:i]
	for _, c := range tag[i:] {
		if c != ' ' {
			s = append(s, c)
		}
	}
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
	// scratch is where a run is decoded before add copies it.
	scratch []byte
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

func (n *normalizer) emitDecoded(d *decoded, prefix, kind string, depth int) {
	if len(d.text) == 0 || n.full() || n.readBefore(d.text, depth) {
		return
	}
	name := join(prefix, kind)
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

// readBefore reports whether text, decoded at depth, was already read as
// a source at depth or above, and notes it otherwise. Reading it again
// would only make views with the texts of those already made, which add
// drops: a JSON string keeps escapes that are not JSON's (\x41), so the
// JSON view repeats the hex escapes decoded from the content itself.
func (n *normalizer) readBefore(text []byte, depth int) bool {
	for _, s := range n.sourced {
		if s.depth <= depth && bytes.Equal(n.sourcedBuf[s.start:s.end], text) {
			return true
		}
	}
	start := len(n.sourcedBuf)
	n.sourcedBuf = append(n.sourcedBuf, text...)
	n.sourced = append(n.sourced, sourcedText{start: start, end: len(n.sourcedBuf), depth: depth})
	return false
}

// minBase64 is the shortest run decoded as base64: shorter runs are
// mostly identifiers and hashes, and too short to carry an instruction.
const minBase64 = 20

// Byte classes, for the loops that look at every byte.
const (
	clB64 = 1 << iota // the base64 and base64url alphabets
	clHex             // hex digits
)

var byteClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		if b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '-' || b == '_' {
			t[c] |= clB64
		}
		if _, ok := unhex(b); ok {
			t[c] |= clHex
		}
	}
	return t
}()

// decodeBase64 decodes runs of the base64 or base64url alphabet that
// decode to mostly printable text.
func (n *normalizer) decodeBase64(raw []byte, runs [][2]int, prefix string, depth int, coarse *segment) {
	d := n.decoded(depth)
	for _, r := range runs {
		i, j := r[0], r[1]
		if j-i < minBase64 {
			continue
		}
		if fewSymbols(raw[i:j]) {
			continue
		}
		end := j
		for end < len(raw) && raw[end] == '=' && end-j < 2 {
			end++
		}
		b := decodeB64Run(d.scratch, raw[i:j])
		if b != nil {
			d.scratch = b
		}
		if b == nil || !printable(b) {
			// Base64 glued to the word before it ("payloadSWdub3Jl…")
			// decodes misaligned: the run is read again from one, two
			// and three bytes in, judged first on its first 64 bytes.
			i, b = realignBase64(d, raw, i, j)
		}
		if b != nil && printable(b) {
			d.add(b, i, end, coarse)
		}
	}
	n.emitDecoded(d, prefix, "base64", depth)
}

// realignBase64 decodes the run raw[i:j] from one, two or three bytes in
// and returns where the first printable decoding starts and the decoding
// (nil when none is printable). Only the shift whose first 64 bytes decode
// to text is decoded whole.
func realignBase64(d *decoded, raw []byte, i, j int) (int, []byte) {
	for s := i + 1; s <= i+3 && j-s >= minBase64; s++ {
		head := raw[s:min(j, s+64)]
		head = head[:len(head)-len(head)%4]
		if b := decodeB64Run(d.scratch, head); b == nil || !printable(b) {
			continue
		}
		b := decodeB64Run(d.scratch, raw[s:j])
		if b != nil {
			d.scratch = b
			return s, b
		}
	}
	return i, nil
}

// fewSymbols reports whether a run of the base64 alphabet uses fewer than
// six distinct bytes in its first 64: padding, rulers and repeated
// characters ("xxxx…", "AAAA…", "----…") decode to no text, and are common
// in answers (fill, zeroed keys), so they are not decoded. Base64 of any
// sentence uses far more.
func fewSymbols(run []byte) bool {
	var seen [256]bool
	distinct := 0
	for _, c := range run[:min(len(run), 64)] {
		if !seen[c] {
			seen[c] = true
			if distinct++; distinct >= 6 {
				return false
			}
		}
	}
	return true
}

// minRun is the shortest run of the base64 alphabet either decoder
// reads: base64 from minBase64 bytes, plain hex from 16.
const minRun = min(minBase64, 16)

// b64Runs returns the maximal runs of the base64 alphabet in raw of at
// least minRun bytes, which the base64 and hex decoders share: one pass
// over the content finds them for both.
func b64Runs(raw []byte) [][2]int {
	return appendB64Runs(nil, raw)
}

// appendB64Runs appends the runs b64Runs returns to runs. A run of
// minRun bytes or more covers one of every minRun consecutive positions,
// so it looks only at every minRun-th byte and, where that byte is of
// the alphabet, at the run around it: prose and code, made of short
// words, are read a few bytes in sixteen.
func appendB64Runs(runs [][2]int, raw []byte) [][2]int {
	lo := 0 // no run of interest starts before lo
	for p := minRun - 1; p < len(raw); p += minRun {
		if byteClass[raw[p]]&clB64 == 0 {
			lo = p + 1
			continue
		}
		i := p
		for i > lo && byteClass[raw[i-1]]&clB64 != 0 {
			i--
		}
		j := p + 1
		for j < len(raw) && byteClass[raw[j]]&clB64 != 0 {
			j++
			// Fill ("xxxx…", "AAAA…") is passed over eight bytes at a
			// time.
			if c := raw[j-1]; j+8 <= len(raw) && raw[j] == c {
				for j+8 <= len(raw) && binary.LittleEndian.Uint64(raw[j:]) == uint64(c)*0x0101010101010101 {
					j += 8
				}
			}
		}
		if j-i >= minRun {
			runs = append(runs, [2]int{i, j})
		}
		// Runs of interest start past this one's end: the next byte
		// looked at is the last of the first minRun after it.
		lo = j + 1
		p = j
	}
	return runs
}

func decodeB64Run(dst, run []byte) []byte {
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
	out := slices.Grow(dst[:0], enc.DecodedLen(len(run)))[:enc.DecodedLen(len(run))]
	k, err := enc.Decode(out, run)
	if err != nil {
		return nil
	}
	return out[:k]
}

// escapedWordByte reports a byte of the word an escape run may start
// with: a letter, a digit, or "+", ".", "-", "_" and "~", which URLs
// leave unescaped.
func escapedWordByte(c byte) bool {
	return isAlnum(lowerByte(c)) || c == '+' || c == '.' || c == '-' || c == '_' || c == '~'
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
// allowed between them) that contain at least four escapes. A run starts
// at the word before its first escape ("ignore%20all…" encodes only the
// spaces); in percent-encoding a "+" is a space, as forms encode it.
func escapeRuns(raw []byte, prefix string, coarse *segment, d *decoded) {
	plus := byte('+')
	if prefix == "%" {
		plus = ' '
	}
	from := 0 // where the last run ended
	for i := 0; i < len(raw); i++ {
		k := bytes.Index(raw[i:], []byte(prefix))
		if k < 0 {
			return
		}
		i += k
		out := d.scratch[:0]
		j, count, plain := i, 0, 0
		for i > from && j-i < 40 && escapedWordByte(raw[i-1]) {
			i--
		}
		for _, c := range raw[i:j] {
			if c == '+' {
				c = plus
			}
			out = append(out, c)
		}
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
			if c == '+' {
				c = plus
			}
			out = append(out, c)
			plain++
			j++
		}
		from = j
		d.scratch = out
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
	d := n.decoded(depth)
	escapeRuns(raw, "%", coarse, d)
	n.emitDecoded(d, prefix, "percent", depth)
}

// decodeHex decodes \x41 escapes and plain runs of hex digits (at least
// 16, an even number) that decode to printable text; hashes and ids
// decode to binary and are dropped.
func (n *normalizer) decodeHex(raw []byte, runs [][2]int, prefix string, depth int, coarse *segment) {
	d := n.decoded(depth)
	if bytes.Count(raw, []byte(`\x`)) >= 4 {
		escapeRuns(raw, `\x`, coarse, d)
	}
	// Plain runs: runs of hex digits, at least 16, inside the runs of the
	// base64 alphabet, so that hex glued to a word ("data6967…") or after
	// "0x" is read from its first digit. A run that decodes to binary is
	// read once more from its second digit: a glued letter that is itself
	// a hex digit ("a6967…") shifts the pairs.
	for _, r := range runs {
		for i := r[0]; i < r[1]; {
			if byteClass[raw[i]]&clHex == 0 {
				i++
				continue
			}
			j := i + 1
			for j < r[1] && byteClass[raw[j]]&clHex != 0 {
				j++
			}
			for s := i; s <= i+1 && j-s >= 16; s++ {
				out := unhexRun(d.scratch, raw[s:j])
				d.scratch = out
				if printable(out) {
					d.add(out, s, j, coarse)
					break
				}
			}
			i = j
		}
	}
	n.emitDecoded(d, prefix, "hex", depth)
}

// unhexRun decodes the pairs of hex digits of run (a trailing odd digit
// is dropped) into dst[:0].
func unhexRun(dst, run []byte) []byte {
	out := slices.Grow(dst[:0], len(run)/2)[:len(run)/2]
	for k := range out {
		h, _ := unhex(run[2*k])
		l, _ := unhex(run[2*k+1])
		out[k] = h<<4 | l
	}
	return out
}
