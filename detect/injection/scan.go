package injection

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"
)

// Scoring defaults.
const (
	// DefaultThreshold is the score at or above which content is flagged.
	DefaultThreshold = 0.5
	// DefaultCritical is the score at or above which flagged content is
	// critical rather than a warning.
	DefaultCritical = 0.85
	// DefaultHiddenBonus is added to a pattern's weight when it matched
	// only in an obfuscated view (decoded, hidden, disguised).
	DefaultHiddenBonus = 0.25
	// DefaultMentionFactor scales a pattern's weight when the match is
	// quoted or introduced as an example ("phrases such as ..."), which is
	// how articles about prompt injection mention attacks.
	DefaultMentionFactor = 0.4
	// maxWindowsPerPattern bounds the expression runs per pattern and
	// view, so that text stuffed with triggers cannot make a scan slow.
	maxWindowsPerPattern = 64
	// maxHits bounds the trigger occurrences recorded per view.
	maxHits = 8192
	// ExcerptLen is the longest excerpt a match quotes.
	ExcerptLen = 120
	// RecommendedLearnedThreshold is the learned layer's threshold
	// (Options.LearnedThreshold) chosen on the training sources'
	// development split; see learned.go.
	RecommendedLearnedThreshold = 0.98
)

// ErrInvalidOptions is returned for options out of range.
var ErrInvalidOptions = errors.New("invalid options")

// Options configure a scan. The zero value means the defaults.
type Options struct {
	// Threshold is the score at or above which content is flagged
	// (default DefaultThreshold). Scores combine the weights w of the
	// distinct patterns that matched as 1 - prod(1 - w).
	Threshold float64
	// Critical is the score at or above which flagged content is critical
	// (default DefaultCritical); flagged content below it is a warning.
	Critical float64
	// Window is the most bytes of a body scanned (default DefaultWindow,
	// 64 KiB).
	Window int
	// MaxDepth bounds nested decoding (default DefaultMaxDepth, 2).
	MaxDepth int
	// HiddenBonus is added to the weight of a pattern found only in a
	// decoded or hidden view (default DefaultHiddenBonus; negative means
	// none).
	HiddenBonus float64
	// MentionFactor scales the weight of a quoted or cited match (default
	// DefaultMentionFactor; 1 turns the discount off).
	MentionFactor float64
	// LearnedThreshold turns the learned layer on (see learned.go): its
	// score at or above it is a match that alone flags the content as a
	// warning. Zero or negative leaves the layer off, the default; see
	// RecommendedLearnedThreshold.
	LearnedThreshold float64
}

// WithDefaults returns o with zero fields set to their defaults, or an
// error wrapping ErrInvalidOptions when a field is out of range.
func (o Options) WithDefaults() (Options, error) {
	if o.LearnedThreshold > 1 || o.Threshold < 0 || o.Threshold > 1 || o.Critical < 0 || o.Critical > 1 || o.Window < 0 || o.MaxDepth < 0 || o.MentionFactor < 0 || o.MentionFactor > 1 || o.HiddenBonus > 1 {
		return o, fmt.Errorf("%w: thresholds and factors must be within [0, 1], sizes not negative", ErrInvalidOptions)
	}
	if o.Threshold == 0 {
		o.Threshold = DefaultThreshold
	}
	if o.Critical == 0 {
		o.Critical = DefaultCritical
	}
	if o.Critical < o.Threshold {
		o.Critical = o.Threshold
	}
	if o.HiddenBonus == 0 {
		o.HiddenBonus = DefaultHiddenBonus
	} else if o.HiddenBonus < 0 {
		o.HiddenBonus = 0
	}
	if o.MentionFactor == 0 {
		o.MentionFactor = DefaultMentionFactor
	}
	return o, nil
}

// Match is one catalogue pattern found in scanned content.
type Match struct {
	Pattern  string   `json:"pattern"`
	Category Category `json:"category"`
	// View names the rendering the pattern matched in ("text",
	// "base64", "hidden-html/rot13", ...).
	View string `json:"view"`
	// Obfuscated is set when the pattern matched only in a decoded,
	// hidden or disguised view.
	Obfuscated bool `json:"obfuscated"`
	// Mention is set when the match reads as quoted or cited, not used.
	Mention bool `json:"mention,omitempty"`
	// Weight is the pattern's contribution after bonus and discount.
	Weight float64 `json:"weight"`
	// Span locates the match in the original content; its excerpt is
	// the normalized text that matched (decoded when it was encoded).
	Span Span `json:"span"`
}

// Span is a byte range [Start, End) of the scanned content, and an
// excerpt of what matched there: at most ExcerptLen bytes of printable
// ASCII.
type Span struct {
	Start   int    `json:"start"`
	End     int    `json:"end"`
	Excerpt string `json:"excerpt"`
}

// Result is the verdict of Scan.
//
// A scan stops as soon as its score reaches the critical threshold
// (Options.Critical): further matches could only add evidence to a
// verdict that is already as severe as it gets, and content stuffed with
// injections must not cost more to scan than content with one. Matches
// then holds the patterns found up to that point, and Score is at least
// Critical but may be lower than a full scan would find.
type Result struct {
	Flagged bool    `json:"flagged"`
	Score   float64 `json:"score"`
	// Critical is set when the score reached Options.Critical.
	Critical bool `json:"critical,omitempty"`
	// Matches are ordered by weight, strongest first.
	Matches []Match `json:"matches,omitempty"`
}

// Scan scores text for prompt injection: it normalizes the text into
// views, finds the catalogue's patterns in them through a trigger
// prefilter, and combines the weights of the distinct patterns found.
// Text that is a JSON object or array is read with its string escapes
// decoded, as the model it is sent to reads it; spans still point into
// the text as given. It does no I/O and never fails; invalid options fall
// back to the defaults.
func Scan(text []byte, opts Options) Result {
	o, err := opts.WithDefaults()
	if err != nil {
		o, _ = Options{}.WithDefaults()
	}
	return scanInjection(text, o)
}

// hit is one trigger occurrence in a view.
type hit struct {
	start, end int
	mask       uint64
}

// needHit is one occurrence of a need literal in a view.
type needHit struct{ start, end int32 }

// kinds of rendering a trigger was found in.
const (
	kindPlain = iota
	kindLeet
	kindROT13
	kindReversed
	nKinds
)

var kindNames = [nKinds]string{"", "leet", "rot13", "reversed"}

// viewHits is what the trigger automaton found in one view.
type viewHits struct {
	v *View
	// scanned is set once the trigger automaton has run over the view;
	// it runs on first use, so views a scan never reaches (it stopped at
	// the critical threshold) cost nothing.
	scanned bool
	hits    [nKinds][]hit
	// needs are the need literals found, per form and per pattern
	// whose literal they are, so a pattern's look-up reads its own.
	needs [nForms][][]needHit
	// leetFrom is where leetspeak folding of words made of leet
	// characters alone begins (see leet): just past the start of the
	// first word mixing letters with them, or -1 when there is none;
	// -2 until computed.
	leetFrom int
	// rendered counts the bytes of windows rendered per kind; once they
	// exceed the view's length, the whole view is rendered once (whole)
	// and windows become slices of it.
	rendered [nKinds]int
	whole    [nKinds]*wholeRendering
}

// wholeRendering is one rendering of a whole view. Every rendering folds
// a byte by what it is and by the word it is in, never by where a window
// starts, so a window of it equals the window rendered on its own.
type wholeRendering struct {
	text []byte
	// For leetspeak: alt reads a folded "1" as "l" (made on first use by
	// a window with such a "1"); folded and ones list, in order, the
	// positions leetspeak changed and those where it read a "1".
	alt          []byte
	folded, ones []int32
}

// scanner is the working memory of one scan. Scans take one from a pool
// and return it, so that a scan allocates almost nothing.
type scanner struct {
	o     Options
	norm  normalizer
	vh    []viewHits
	found [64]Match
	has   uint64 // patterns in found
	done  uint64 // patterns found in earnest: no need to look further
	// critical is set once the matches found reach the critical
	// threshold: the scan ends there (see Result).
	critical bool
	wins     [][2]int
	byPat    [][]int32 // hit indexes per pattern (matchKind)
	rend     [2][]byte // window renderings
	// json is the decoded body when the body is JSON (isJSON; see
	// jsonBody): spans map back to the raw body through it.
	json   jsonBody
	isJSON bool
	// wholes are the whole-view renderings, reused from scan to scan;
	// nwhole are in use.
	wholes []*wholeRendering
	nwhole int
	// learned is the learned layer's match, when hasLearned.
	learned    Match
	hasLearned bool
	// misses holds the windows, by content, in which a pattern was
	// looked for in vain: the same text in another view (the HTML view
	// repeats the text outside markup) or repeated in the body is not
	// looked at twice.
	misses map[missKey]struct{}
}

// missKey names a window by the pattern, the rendering and a hash of the
// raw text it is rendered from, which decides it.
type missKey struct {
	hash uint64
	p, k uint8
}

// missSeed keys window hashes; it is random per process, so content
// cannot be made to collide with another window on purpose.
var missSeed = maphash.MakeSeed()

var scanners = sync.Pool{New: func() any { return new(scanner) }}

func scanInjection(text []byte, o Options) Result {
	sc := scanners.Get().(*scanner)
	defer func() {
		sc.vh = sc.vh[:0]
		scanners.Put(sc)
	}()
	return sc.scan(text, o)
}

func (sc *scanner) scan(text []byte, o Options) Result {
	sc.o, sc.has, sc.done, sc.nwhole, sc.critical = o, 0, 0, 0, false
	sc.hasLearned = false
	if sc.misses == nil {
		sc.misses = make(map[missKey]struct{})
	}
	clear(sc.misses)
	nopts := normalizeOptions{Window: o.Window, MaxDepth: o.MaxDepth}.withDefaults()
	if len(text) > nopts.Window {
		text = text[:nopts.Window]
	}
	raw := text
	sc.isJSON = jsonShaped(text)
	if sc.isJSON {
		sc.json.decode(text)
		text = sc.json.text
	}
	n := &sc.norm
	n.reset(nopts, len(text))
	n.source(text, "", 0, nil, false)
	// The text and markup views first; the decoded ones, all obfuscated,
	// only when those did not settle the verdict.
	sc.vh = sc.vh[:0]
	sc.match(n.views)
	if !sc.critical && o.LearnedThreshold > 0 && len(n.views) > 0 {
		sc.learn(&n.views[0], raw)
	}
	if !sc.critical && n.finish() {
		sc.match(n.views)
	}

	r := Result{}
	if sc.has == 0 && !sc.hasLearned {
		return r
	}
	keep := 1.0
	if sc.hasLearned {
		r.Matches = append(r.Matches, sc.learned)
		keep *= 1 - sc.learned.Weight
	}
	for p := range compiled.pats {
		if sc.has&(1<<uint(p)) != 0 {
			m := sc.found[p]
			r.Matches = append(r.Matches, m)
			keep *= 1 - m.Weight
		}
	}
	sort.Slice(r.Matches, func(a, b int) bool {
		if r.Matches[a].Weight != r.Matches[b].Weight {
			return r.Matches[a].Weight > r.Matches[b].Weight
		}
		return r.Matches[a].Pattern < r.Matches[b].Pattern
	})
	r.Score = math.Round((1-keep)*1000) / 1000
	if r.Score >= o.Threshold {
		r.Flagged = true
		r.Critical = r.Score >= o.Critical
	}
	return r
}

// match looks for the catalogue's patterns in the views past those
// already looked at.
func (sc *scanner) match(views []View) {
	from := len(sc.vh)
	if cap(sc.vh) < len(views) {
		sc.vh = append(make([]viewHits, 0, max(len(views), 2*cap(sc.vh))), sc.vh...)
	}
	sc.vh = sc.vh[:len(views)]
	for i := range from {
		// Adding views may have moved them.
		sc.vh[i].v = &views[i]
	}
	for i := from; i < len(views); i++ {
		vh := &sc.vh[i]
		vh.v, vh.leetFrom, vh.scanned = &views[i], -2, false
		vh.rendered, vh.whole = [nKinds]int{}, [nKinds]*wholeRendering{}
	}
	// Plain renderings of views a reader sees come first, so that a
	// pattern visible in the clear never earns the hidden bonus.
	for _, pass := range []bool{false, true} {
		for i := from; i < len(sc.vh); i++ {
			vh := &sc.vh[i]
			if sc.critical {
				return
			}
			if !pass && vh.v.Obfuscated {
				continue
			}
			sc.triggers(vh)
			for k := 0; k < nKinds && !sc.critical; k++ {
				obf := vh.v.Obfuscated || k != kindPlain
				if obf != pass {
					continue
				}
				if len(vh.hits[k]) > 0 {
					sc.matchKind(vh, k, vh.hits[k], obf)
				}
				// A trigger spelled plainly may still sit in a leetspeak
				// sentence ("![](h77p5://...)"): where the view has
				// leetspeak words, plain hits are tried on the leet
				// rendering too.
				if k == kindLeet && len(vh.hits[kindPlain]) > 0 && sc.leetFrom(vh) >= 0 {
					sc.matchKind(vh, k, vh.hits[kindPlain], obf)
				}
			}
		}
	}
}

// triggers runs the trigger automaton over vh's view, once, and records
// the triggers and need literals it finds, per rendering.
func (sc *scanner) triggers(vh *viewHits) {
	if vh.scanned {
		return
	}
	vh.scanned = true
	c := compiled
	for k := range vh.hits {
		vh.hits[k] = vh.hits[k][:0]
	}
	for f := range vh.needs {
		if len(vh.needs[f]) != len(c.pats) {
			vh.needs[f] = make([][]needHit, len(c.pats))
		}
		for p := range vh.needs[f] {
			vh.needs[f][p] = vh.needs[f][p][:0]
		}
	}
	t := vh.v.Text
	c.ac.Scan(t, func(w, end int) {
		tr := &c.trig[w]
		start := end - tr.n
		for m := tr.need; m != 0; m &= m - 1 {
			p := bits.TrailingZeros64(m)
			if ns := vh.needs[tr.form][p]; len(ns) < maxHits {
				vh.needs[tr.form][p] = append(ns, needHit{start: int32(start), end: int32(end)})
			}
		}
		if tr.mask == 0 {
			return
		}
		k := kindPlain
		switch tr.form {
		case formROT13:
			k = kindROT13
		case formReversed:
			k = kindReversed
		}
		if k != kindROT13 && hasLeet(t[start:end]) {
			if k == kindReversed {
				return // reversed leetspeak: not worth the views
			}
			k = kindLeet
		}
		hs := vh.hits[k]
		if len(hs) >= maxHits {
			return
		}
		// Merge with the previous hit when it is the same place.
		if n := len(hs); n > 0 && hs[n-1].start == start && hs[n-1].end == end {
			hs[n-1].mask |= tr.mask
			return
		}
		vh.hits[k] = append(hs, hit{start: start, end: end, mask: tr.mask})
	})
}

// leetFrom returns vh.leetFrom, computing it on first use: a pass over
// the view that stops at the first word mixing letters with leetspeak
// digits or symbols.
func (sc *scanner) leetFrom(vh *viewHits) int {
	if vh.leetFrom != -2 {
		return vh.leetFrom
	}
	vh.leetFrom = firstLeetWord(vh.v.Text)
	return vh.leetFrom
}

// firstLeetWord returns leetFrom for text t: just past the start of the
// first word (a run of letters, digits, "@" and "$") that mixes letters
// with leetspeak digits or symbols and is not a hex id, or -1. Text
// without such characters is passed over eight bytes at a time.
func firstLeetWord(t []byte) int {
	const ones = 0x0101010101010101
	for i := 0; i < len(t); {
		if i+8 <= len(t) {
			w := binary.LittleEndian.Uint64(t[i:])
			// Leet characters: '0'-'7' but '2' and '6' (0x30-0x37), '@'
			// and '$'. A byte is a candidate when it is one of 0x30-0x37,
			// 0x40 or 0x24.
			if zeroBytes(w&(ones*0xf8)^ones*0x30)|zeroBytes(w^ones*'@')|zeroBytes(w^ones*'$') == 0 {
				i += 8
				continue
			}
		}
		if leetMap[t[i]] == 0 {
			i++
			continue
		}
		// The word around the leet character.
		for i > 0 && isWordish(lowerByte(t[i-1])) {
			i--
		}
		j := i
		letters, leets := 0, 0
		for j < len(t) {
			c := lowerByte(t[j])
			if c >= 'a' && c <= 'z' {
				letters++
			} else if leetMap[c] != 0 {
				leets++
			} else if c < '0' || c > '9' {
				break
			}
			j++
		}
		if letters > 0 && leets > 0 && !hexID(t[i:j]) {
			return i + 1
		}
		i = max(j, i+1)
	}
	return -1
}

// zeroBytes has the high bit of each zero byte of x set, exactly.
func zeroBytes(x uint64) uint64 {
	const lows, highs = 0x7f7f7f7f7f7f7f7f, 0x8080808080808080
	return ^((x&lows + lows) | x) & highs
}

func hasLeet(b []byte) bool {
	for _, c := range b {
		if leetMap[c] != 0 {
			return true
		}
	}
	return false
}

// Windows around a trigger in which the expressions run.
const (
	maxWindow = 1024
	// leadSpan is the most text an anchored expression reads.
	leadSpan = 240
	// maxLeadPerPattern bounds anchored runs per pattern and view.
	maxLeadPerPattern = 1024
	// maxNeedLen is the length of the longest need literal, at least.
	maxNeedLen = 16
)

// renderAt returns byte i of rendering k of view text t (of length n),
// lower-cased, for the word-boundary test; leetspeak counts its symbols
// as letters.
func renderAt(t []byte, k, i int) byte {
	n := len(t)
	switch k {
	case kindReversed:
		return lowerByte(t[n-1-i])
	case kindROT13:
		return rot13Byte(lowerByte(t[i]))
	case kindLeet:
		if m := leetMap[t[i]]; m != 0 {
			return m
		}
	}
	return lowerByte(t[i])
}

func rot13Byte(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return 'a' + (c-'a'+13)%26
	}
	return c
}

// render writes window [s, e) of rendering k of vh's view (in the
// rendering's coordinates) to the scanner's buffers and returns it; for
// leetspeak, alt is the second folding that reads "1" as "l" (nil when
// the same), and ok is false when leetspeak changed nothing, so the plain
// rendering already said all there is.
func (sc *scanner) render(vh *viewHits, k, s, e int) (text, alt []byte, ok bool) {
	if k != kindPlain || vh.v.mixed {
		if w := vh.whole[k]; w != nil {
			return w.window(k, s, e)
		}
		if vh.rendered[k] += e - s; vh.rendered[k] > len(vh.v.Text) {
			return sc.renderWhole(vh, k).window(k, s, e)
		}
	}
	return sc.renderWindow(vh, k, s, e)
}

// renderWhole renders the whole of rendering k of vh's view, once.
func (sc *scanner) renderWhole(vh *viewHits, k int) *wholeRendering {
	if sc.nwhole == len(sc.wholes) {
		sc.wholes = append(sc.wholes, new(wholeRendering))
	}
	w := sc.wholes[sc.nwhole]
	sc.nwhole++
	vh.whole[k] = w
	t := vh.v.Text
	n := len(t)
	w.alt, w.folded, w.ones = nil, w.folded[:0], w.ones[:0]
	switch k {
	case kindPlain:
		w.text = lowerInto(w.text, t)
	case kindROT13:
		w.text = lowerInto(w.text, t)
		for i, c := range w.text {
			w.text[i] = rot13Byte(c)
		}
	case kindReversed:
		w.text = append(w.text[:0], t...)
		for i := range n {
			w.text[i] = lowerByte(t[n-1-i])
		}
	case kindLeet:
		b := lowerInto(w.text, t)
		leetWindow(b, t, 0, n, sc.leetFrom(vh))
		w.text = b
		for i, c := range b {
			if c != lowerByte(t[i]) {
				w.folded = append(w.folded, int32(i))
				if t[i] == '1' {
					w.ones = append(w.ones, int32(i))
				}
			}
		}
	}
	return w
}

// window returns window [s, e) of the rendering, as renderWindow would.
func (w *wholeRendering) window(k, s, e int) (text, alt []byte, ok bool) {
	if k != kindLeet {
		return w.text[s:e], nil, true
	}
	if !anyWithin(w.folded, s, e) {
		return nil, nil, false
	}
	if anyWithin(w.ones, s, e) {
		if w.alt == nil {
			w.alt = append(w.alt, w.text...)
			for _, i := range w.ones {
				w.alt[i] = 'l'
			}
		}
		return w.text[s:e], w.alt[s:e], true
	}
	return w.text[s:e], nil, true
}

// anyWithin reports whether sorted positions ps have one in [s, e).
func anyWithin(ps []int32, s, e int) bool {
	lo, hi := 0, len(ps)
	for lo < hi {
		if m := int(uint(lo+hi) >> 1); int(ps[m]) >= s {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo < len(ps) && int(ps[lo]) < e
}

// renderWindow renders window [s, e) alone.
func (sc *scanner) renderWindow(vh *viewHits, k, s, e int) (text, alt []byte, ok bool) {
	v := vh.v
	t := v.Text
	b := sc.rend[0][:0]
	switch k {
	case kindPlain:
		if !v.mixed {
			return t[s:e], nil, true
		}
		b = lowerInto(b, t[s:e])
	case kindROT13:
		b = lowerInto(b, t[s:e])
		for i, c := range b {
			b[i] = rot13Byte(c)
		}
	case kindReversed:
		n := len(t)
		for i := n - 1 - s; i >= n-e; i-- {
			b = append(b, lowerByte(t[i]))
		}
	case kindLeet:
		// Leetspeak changes only its own characters: a window without
		// any renders as the plain one.
		if !hasLeet(t[s:e]) {
			return nil, nil, false
		}
		b = lowerInto(b, t[s:e])
		changed, ones := leetWindow(b, t, s, e, sc.leetFrom(vh))
		if !changed {
			sc.rend[0] = b
			return nil, nil, false
		}
		if ones {
			a := append(sc.rend[1][:0], b...)
			for i := s; i < e; i++ {
				if t[i] == '1' && a[i-s] == 'i' {
					a[i-s] = 'l'
				}
			}
			sc.rend[1] = a
			alt = a
		}
	}
	sc.rend[0] = b
	return b, alt, true
}

// leetWindow folds leetspeak in b, the lower-cased window t[s:e], as
// leet(t) would: inside words that mix letters with leet digits and
// symbols, and in words of leet characters alone from leetFrom on. It
// reports whether anything changed and whether a "1" was folded.
func leetWindow(b, t []byte, s, e, leetFrom int) (changed, ones bool) {
	i := s
	for i > 0 && wordClass[t[i-1]] != 0 {
		i--
	}
	for i < e {
		// Skip to the next word, then read it.
		for i < e && wordClass[t[i]] == 0 {
			i++
		}
		if i >= e {
			break
		}
		j := i
		var seen uint8
		for j < len(t) && wordClass[t[j]] != 0 {
			seen |= wordClass[t[j]]
			j++
		}
		if seen&wcLeet != 0 && (seen&wcLetter != 0 || leetFrom >= 0 && i >= leetFrom) && !hexID(t[i:j]) {
			for k := max(i, s); k < min(j, e); k++ {
				if m := leetMap[t[k]]; m != 0 {
					b[k-s] = m
					changed = true
					ones = ones || t[k] == '1'
				}
			}
		}
		i = j
	}
	return changed, ones
}

// Word classes for leetspeak folding: what isWordish accepts (ASCII
// letters of either case, digits, "@" and "$"), marked as letter, leet
// character or other digit.
const (
	wcLetter = 1 << iota
	wcLeet
	wcDigit
)

var wordClass = func() (t [256]uint8) {
	for c := range 256 {
		b := lowerByte(byte(c))
		switch {
		case b >= 'a' && b <= 'z':
			t[c] = wcLetter
		case leetMap[b] != 0:
			t[c] = wcLeet
		case b >= '0' && b <= '9':
			t[c] = wcDigit
		}
	}
	return t
}()

// matchKind runs the expressions of the patterns that hs triggered on
// rendering k of a view, in windows around the triggers.
func (sc *scanner) matchKind(vh *viewHits, k int, hs []hit, obf bool) {
	var want uint64
	for _, h := range hs {
		want |= h.mask
	}
	want &^= sc.done
	if want == 0 || sc.critical {
		return
	}
	t := vh.v.Text
	n := len(t)
	// The hits of each pattern, in order, gathered in one pass.
	if len(sc.byPat) < len(compiled.pats) {
		sc.byPat = make([][]int32, len(compiled.pats))
	}
	for m := want; m != 0; m &= m - 1 {
		p := bits.TrailingZeros64(m)
		sc.byPat[p] = sc.byPat[p][:0]
	}
	for i, h := range hs {
		for m := h.mask & want; m != 0; m &= m - 1 {
			p := bits.TrailingZeros64(m)
			sc.byPat[p] = append(sc.byPat[p], int32(i))
		}
	}
	for m := want; m != 0; m &= m - 1 {
		p := bits.TrailingZeros64(m)
		if sc.critical {
			return
		}
		pat := &compiled.pats[p]
		// Windows in the rendering's coordinates, merged.
		wins := sc.wins[:0]
		for _, hi := range sc.byPat[p] {
			h := hs[hi]
			s, e := h.start, h.end
			if k == kindReversed {
				s, e = n-h.end, n-h.start
			}
			if pat.Before == 0 {
				// Anchored at the trigger, which must start a word.
				if s > 0 && isAlnum(renderAt(t, k, s-1)) && isAlnum(renderAt(t, k, s)) {
					continue
				}
				if len(wins) >= maxLeadPerPattern {
					break
				}
				w := [2]int{s, min(n, s+leadSpan)}
				nw := w
				if pat.NeedWithin > 0 {
					nw[1] = min(n, s+pat.NeedWithin+maxNeedLen)
				}
				if sc.needs(vh, k, nw, p, pat.NeedWithin) {
					wins = append(wins, w)
				}
				continue
			}
			s, e = max(0, s-pat.Before), min(n, e+pat.after())
			if !sc.needs(vh, k, [2]int{s, e}, p, 0) {
				continue
			}
			// Overlapping windows merge, up to a bound: one huge window
			// would make the expression scan the whole view.
			if m := len(wins); m > 0 && s <= wins[m-1][1] && e >= wins[m-1][0] && max(wins[m-1][1], e)-min(wins[m-1][0], s) <= maxWindow {
				wins[m-1][0], wins[m-1][1] = min(wins[m-1][0], s), max(wins[m-1][1], e)
				continue
			}
			if len(wins) >= maxWindowsPerPattern {
				break
			}
			wins = append(wins, [2]int{s, e})
		}
		sc.wins = wins
		for _, w := range wins {
			key, memo := sc.missKey(vh, k, p, w[0], w[1])
			if memo {
				if _, seen := sc.misses[key]; seen {
					continue
				}
			}
			text, alt, ok := sc.render(vh, k, w[0], w[1])
			var loc []int
			refuted := false
			if ok {
				loc, refuted = sc.find(vh, k, p, w[0], text)
				if loc == nil && alt != nil {
					text = alt
					var r bool
					loc, r = sc.find(vh, k, p, w[0], text)
					refuted = refuted || r
				}
			}
			if loc == nil {
				// A refuted match depends on the text around the window,
				// which the key does not cover.
				if memo && !refuted {
					sc.misses[key] = struct{}{}
				}
				continue
			}
			sc.record(vh, k, p, w[0]+loc[0], w[0]+loc[1], text[loc[0]:loc[1]], obf)
			break
		}
	}
}

// missKey returns the key of window [s, e) of rendering k of vh's view
// for pattern p: a hash of the raw text the window is rendered from. A
// leetspeak rendering folds whole words, and words of leet characters
// alone only from the view's leetFrom on, so its raw text runs to the
// ends of the words the window cuts, and memo is false where leetFrom
// falls inside it.
func (sc *scanner) missKey(vh *viewHits, k, p, s, e int) (key missKey, memo bool) {
	t := vh.v.Text
	if k == kindReversed {
		n := len(t)
		s, e = n-e, n-s
	}
	if k == kindLeet {
		for s > 0 && isWordish(lowerByte(t[s-1])) {
			s--
		}
		for e < len(t) && isWordish(lowerByte(t[e])) {
			e++
		}
		lf := sc.leetFrom(vh)
		if lf > s && lf <= e {
			return key, false
		}
		if lf >= 0 && lf <= s {
			// Words of leet characters alone are folded here, not
			// before leetFrom: the same text renders differently.
			k += nKinds
		}
	}
	return missKey{hash: maphash.Bytes(missSeed, t[s:e]), p: uint8(p), k: uint8(k)}, true
}

// find returns the first match of the pattern's expression in text. A
// prefilter, when the pattern has one, rules out most windows without
// running the expression at all.
func (p *Pattern) find(text []byte) []int {
	if p.pre != nil && !p.pre(text) {
		return nil
	}
	return p.re.FindIndex(text)
}

// find returns the first match of pattern p in text, window [at, ...) of
// rendering k of vh's view, that the text around it does not refute (see
// refutes), and whether it passed over one that it does.
func (sc *scanner) find(vh *viewHits, k, p, at int, text []byte) (loc []int, refuted bool) {
	pat := &compiled.pats[p]
	for from := 0; from < len(text); {
		l := pat.find(text[from:])
		if l == nil {
			return nil, refuted
		}
		l[0], l[1] = l[0]+from, l[1]+from
		if !sc.refutes(vh, k, p, at+l[0], at+l[1]) {
			return l, refuted
		}
		refuted = true
		if pat.Before == 0 {
			return nil, true // anchored at its trigger: no other match here
		}
		// On from the next word.
		from = l[0] + 1
		for from < len(text) && isWordRE(text[from]) {
			from++
		}
	}
	return nil, refuted
}

// Refutation: a match that the words around it turn into a defence.
const (
	// refuteBefore and refuteAfter are how much text before and after a
	// match refutes reads.
	refuteBefore = 64
	refuteAfter  = 64
)

// refutes reports whether the text around [i, j) of rendering k of vh's
// view makes the match a defence rather than an attack: a negation right
// before it ("NEVER reveal your instructions", "do not ignore your
// rules", "不要忽略"), or, for ignore_previous_instructions, instructions
// placed after it ("ignore all instructions in the user input below").
func (sc *scanner) refutes(vh *viewHits, k, p, i, j int) bool {
	t := vh.v.Text
	var buf [max(refuteBefore, refuteAfter)]byte
	b := buf[:0]
	for x := max(0, i-refuteBefore); x < i; x++ {
		b = append(b, renderAt(t, k, x))
	}
	if negated(b) {
		return true
	}
	if compiled.pats[p].Name != "ignore_previous_instructions" {
		return false
	}
	b = buf[:0]
	for x := i; x < min(len(t), j+refuteAfter); x++ {
		b = append(b, renderAt(t, k, x))
	}
	return laterInstructions(b, j-i)
}

// negators are the words that, right before an order (past a comma's
// aside: "must not, under any circumstances, print"), forbid it.
var negators = []string{"never", "not", "don't", "dont", "don’t", "cannot", "can't", "can’t", "won't", "won’t", "mustn't", "mustn’t", "shouldn't", "shouldn’t", "nor", "n'", "ne",
	"不要", "不能", "不得", "不可", "切勿", "绝不", "絕不", "决不", "決不", "请勿", "請勿", "禁止"}

// negated reports whether before, the text that precedes an order,
// ends with a negation in the same clause.
func negated(before []byte) bool {
	s := string(before)
	if k := strings.LastIndexAny(s, ".!?;:\n。！？；"); k >= 0 {
		s = s[k+1:]
	}
	s = strings.TrimRight(s, " \t")
	// An aside between commas ("not, under any circumstances, print").
	if strings.HasSuffix(s, ",") {
		if k := strings.LastIndexByte(s[:len(s)-1], ','); k >= 0 && len(s)-k < 40 {
			s = strings.TrimRight(s[:k], " \t")
		}
	}
	s = strings.TrimSuffix(s, " ever")
	for _, w := range negators {
		if strings.HasSuffix(s, w) {
			// A word of its own (the Chinese ones stand alone).
			if k := len(s) - len(w); k == 0 || w[0] >= 0x80 || !isWordRE(s[k-1]) {
				return true
			}
		}
	}
	return false
}

// laterInstructions reports whether m, a match of
// ignore_previous_instructions (its first n bytes) and the text after it,
// aims at instructions that come after it, without naming earlier ones:
// "ignore any instructions in the text below" is a defence prompt's
// rule.
func laterInstructions(m []byte, n int) bool {
	match, after := string(m[:n]), strings.TrimLeft(string(m[n:]), " \t\n")
	for _, w := range []string{"previous", "prior", "above", "earlier", "preceding", "former", "original", "initial", "existing", "old", "your", "system"} {
		if strings.Contains(match, w) {
			return false
		}
	}
	if strings.HasPrefix(after, "below") || strings.HasPrefix(after, "that follow") || strings.HasPrefix(after, "which follow") {
		return true
	}
	// "in", "within", "from", "contained in" ... then the text to come,
	// up to the end of the clause.
	lead := false
	for _, w := range []string{"in ", "within ", "inside ", "from ", "contained in ", "embedded in ", "found in "} {
		lead = lead || strings.HasPrefix(after, w)
	}
	if !lead {
		return false
	}
	if k := strings.IndexAny(after, ".!?;\n"); k >= 0 {
		after = after[:k]
	}
	for _, w := range []string{"previous", "prior", "above", "earlier", "before", "system", "developer"} {
		if strings.Contains(after, w) {
			return false
		}
	}
	for _, w := range []string{"below", "follow", "user", "input", "document", "text", "data", "content", "message", "query", "request", "email", "page", "tool", "result"} {
		if strings.Contains(after, w) {
			return true
		}
	}
	return false
}

// record notes pattern p matched [i, j) of rendering k of vh's view,
// reading matched.
func (sc *scanner) record(vh *viewHits, k, p, i, j int, matched []byte, obf bool) {
	v := vh.v
	pat := &compiled.pats[p]
	m := Match{Pattern: pat.Name, Category: pat.Category, View: v.Name, Obfuscated: obf, Weight: pat.Weight}
	if k != kindPlain {
		m.View += "/" + kindNames[k]
	}
	fi, fj := i, j // forward coordinates in the view
	if k == kindReversed {
		n := len(v.Text)
		fi, fj = n-j, n-i
	}
	m.Span.Start, m.Span.End = v.Origin(fi, fj)
	if !obf && sc.inHidden(v, m.Span.Start, m.Span.End) {
		// The text view shows hidden markup as if visible.
		obf = true
		m.Obfuscated = true
	}
	if !obf && sc.inEscaped(v, m.Span.Start, m.Span.End) {
		obf = true
		m.Obfuscated = true
		m.View = "json"
	}
	if obf {
		m.Weight = math.Min(1, m.Weight+sc.o.HiddenBonus)
	} else if mentioned(v.Text, i, j) {
		m.Mention = true
		m.Weight *= sc.o.MentionFactor
	}
	if sc.isJSON {
		m.Span.Start, m.Span.End = sc.json.origin(m.Span.Start), sc.json.origin(m.Span.End)
	}
	m.Span.Excerpt = excerpt(matched)
	if sc.has&(1<<uint(p)) == 0 || m.Weight > sc.found[p].Weight {
		sc.found[p] = m
		sc.has |= 1 << uint(p)
	}
	if !m.Mention {
		sc.done |= 1 << uint(p)
	}
	sc.critical = sc.score() >= sc.o.Critical
}

// score combines the weights of the patterns found so far, rounded as
// the result's score is.
func (sc *scanner) score() float64 {
	keep := 1.0
	if sc.hasLearned {
		keep *= 1 - sc.learned.Weight
	}
	for p := range compiled.pats {
		if sc.has&(1<<uint(p)) != 0 {
			keep *= 1 - sc.found[p].Weight
		}
	}
	return math.Round((1-keep)*1000) / 1000
}

// inEscaped reports whether [s, e) of the decoded JSON body overlaps
// text decoded from an escape, for a match in the top-level text view
// (see jsonBody.escaped).
func (sc *scanner) inEscaped(v *View, s, e int) bool {
	return sc.isJSON && v == &sc.norm.views[0] && sc.json.escaped(s, e)
}

// inHidden reports whether [s, e) of the original overlaps text that
// markup hides, for a match in the top-level text view.
func (sc *scanner) inHidden(v *View, s, e int) bool {
	if len(sc.norm.hidden) == 0 || v != &sc.norm.views[0] {
		return false
	}
	for _, h := range sc.norm.hidden {
		if s < h[1] && e > h[0] {
			return true
		}
	}
	return false
}

// needs reports whether one of pattern p's need literals is in window w
// (rendering coordinates) of rendering k of the view (true when p has
// none). The automaton found the literals; those it cannot find are
// looked up in the window.
//
// span, when not zero, is how far from the window's start (in the
// rendering) a literal must start.
func (sc *scanner) needs(vh *viewHits, k int, w [2]int, p int, span int) bool {
	pat := &compiled.pats[p]
	if len(pat.Need) == 0 {
		return true
	}
	s, e := w[0], w[1]
	n := len(vh.v.Text)
	form := formPlain
	switch k {
	case kindROT13:
		form = formROT13
	case kindReversed:
		form = formReversed
		s, e = n-e, n-s
	}
	// Hits are ordered by end: the first ending past s, by binary
	// search.
	hs := vh.needs[form][p]
	lo, hi := 0, len(hs)
	for lo < hi {
		if m := int(uint(lo+hi) >> 1); int(hs[m].end) > s {
			hi = m
		} else {
			lo = m + 1
		}
	}
	for i := lo; i < len(hs) && int(hs[i].end) <= e; i++ {
		h := hs[i]
		if int(h.start) < s {
			continue
		}
		if span > 0 {
			// Distance from the window's start to the literal's start,
			// in the rendering.
			d := int(h.start) - s
			if k == kindReversed {
				d = e - int(h.end)
			}
			if d > span {
				continue
			}
		}
		return true
	}
	for _, l := range compiled.needAny[p] {
		if bytes.Contains(vh.v.Text[s:e], l) {
			return true
		}
	}
	return false
}

// mentionCues introduce a phrase as an example rather than an order.
var mentionCues = []string{"such as", "e.g.", "for example", "for instance", "example", "phrases", "phrase", "called", "known as", "tries to", "try to", "trying to", "attempt to", "attempts to", "detect", "flags", "classic"}

// mentioned reports whether t[i:j] is quoted or follows a cue that makes
// it a mention of an attack rather than an attack, as in articles about
// prompt injection. Attackers can quote too; the discount only lowers the
// weight, so a quoted injection that matches more than one pattern still
// scores.
func mentioned(t []byte, i, j int) bool {
	if i > 0 && j < len(t) && isQuote(t[i-1]) && (isQuote(t[j]) || j+1 < len(t) && isQuote(t[j+1])) {
		// A quoted value in data ("key": "...", [..., "..."]) is content,
		// not a quotation.
		k := i - 2
		for k >= 0 && (t[k] == ' ' || t[k] == '\\') {
			k--
		}
		if k < 0 || !strings.ContainsRune(":[,=(", rune(t[k])) {
			return true
		}
	}
	before := strings.ToLower(string(t[max(0, i-48):i]))
	// The cue must be in the same sentence ("e.g." does not end one).
	if k := strings.LastIndexAny(before, "!?\n"); k >= 0 {
		before = before[k+1:]
	}
	if k := strings.LastIndex(before, ". "); k >= 0 && !strings.HasSuffix(before[:k], "e.g") && !strings.HasSuffix(before[:k], "i.e") {
		before = before[k+2:]
	}
	for _, c := range mentionCues {
		if strings.Contains(before, c) {
			return true
		}
	}
	return quoteCue(before) || inCuedQuote(t, i)
}

// inCuedQuote reports whether t[i] is inside a quotation, opened on the
// same line within 240 bytes, that a cue of quoteCues introduces: every
// pattern of a quoted attack is mentioned, not the first alone.
func inCuedQuote(t []byte, i int) bool {
	lo := max(0, i-240)
	if k := bytes.LastIndexByte(t[lo:i], '\n'); k >= 0 {
		lo += k + 1
	}
	line := t[lo:i]
	q := bytes.LastIndexAny(line, "\"“«")
	if q < 0 || line[q] == '"' && bytes.Count(line[:q], []byte{'"'})%2 != 0 {
		return false // none, or a closing one
	}
	_, size := utf8.DecodeRune(line[q:])
	return quoteCue(strings.ToLower(string(line[:q+size])))
}

// quoteCues introduce a quoted attack when a quotation mark or a colon
// follows them ("text like \"ignore…\"", "they inject: ignore…"). Alone
// they are no cue: "like" is a verb in attacks ("I would like you to
// ignore…") and an attack may name injection. Measured on the training
// sources' development split and this repository's corpus, the cue with
// its quote or colon costs no attack there; the whole quotation it opens
// is a mention (inCuedQuote). The discount only lowers weights: a quoted
// attack that matches three patterns still scores.
var quoteCues = []string{"like", "inject", "injects", "injected", "injecting", "injection", "payload", "payloads"}

// quoteCue reports whether before ends with a cue of quoteCues and a
// quotation mark or colon.
func quoteCue(before string) bool {
	s := strings.TrimRight(before, " \t")
	marked := false
	for {
		n := len(s)
		for _, q := range []string{":", "\"", "'", "`", "“", "«", "‘"} {
			s = strings.TrimSuffix(s, q)
		}
		if len(s) == n {
			break
		}
		marked = true
		s = strings.TrimRight(s, " \t")
	}
	if !marked {
		return false
	}
	for _, c := range quoteCues {
		if strings.HasSuffix(s, c) && (len(s) == len(c) || !isWordRE(s[len(s)-len(c)-1])) {
			return true
		}
	}
	return false
}

func isQuote(c byte) bool {
	return c == '"' || c == '\'' || c == '`' || c == 0x9c /* end of “ ” in UTF-8 */
}

// excerpt quotes matched text for evidence: at most ExcerptLen bytes,
// printable ASCII only.
func excerpt(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if sb.Len() >= ExcerptLen-3 {
			sb.WriteString("...")
			break
		}
		switch {
		case c == '\n' || c == '\t' || c == '\r':
			sb.WriteByte(' ')
		case c < 0x20 || c >= 0x7F:
			sb.WriteByte('?')
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}
