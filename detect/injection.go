package detect

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strings"
)

// InjectionName is the prompt-injection detector's config name.
const InjectionName = "prompt_injection"

// Prompt-injection defaults.
const (
	// DefaultInjectionThreshold is the score at or above which content is
	// flagged.
	DefaultInjectionThreshold = 0.5
	// DefaultInjectionCritical is the score at or above which the signal
	// is critical rather than a warning.
	DefaultInjectionCritical = 0.85
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
	// excerptLen is the longest excerpt quoted in evidence.
	excerptLen = 120
)

// PromptInjectionOptions configure the prompt_injection detector and
// Scan. The zero value means the defaults.
type PromptInjectionOptions struct {
	// Threshold is the score at or above which content is flagged
	// (default DefaultInjectionThreshold). Scores combine the weights w
	// of the distinct patterns that matched as 1 - prod(1 - w).
	Threshold float64
	// Critical is the score at or above which the signal is critical
	// (default DefaultInjectionCritical); flagged content below it is a
	// warning.
	Critical float64
	// Window is the most bytes of a body scanned (default
	// DefaultScanWindow, 64 KiB).
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
}

func (o PromptInjectionOptions) withDefaults() (PromptInjectionOptions, error) {
	if o.Threshold < 0 || o.Threshold > 1 || o.Critical < 0 || o.Critical > 1 || o.Window < 0 || o.MaxDepth < 0 || o.MentionFactor < 0 || o.MentionFactor > 1 || o.HiddenBonus > 1 {
		return o, fmt.Errorf("prompt injection options: %w: thresholds and factors must be within [0, 1], sizes not negative", ErrInvalidOptions)
	}
	if o.Threshold == 0 {
		o.Threshold = DefaultInjectionThreshold
	}
	if o.Critical == 0 {
		o.Critical = DefaultInjectionCritical
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

// Result is the verdict of Scan.
type Result struct {
	Flagged  bool     `json:"flagged"`
	Score    float64  `json:"score"`
	Severity Severity `json:"severity,omitempty"`
	// Matches are ordered by weight, strongest first.
	Matches []Match `json:"matches,omitempty"`
}

// Scan scores text for prompt injection: it normalizes the text into
// views (see Normalize), finds the catalogue's patterns in them through a
// trigger prefilter, and combines the weights of the distinct patterns
// found. It does no I/O and never fails; invalid options fall back to the
// defaults.
func Scan(text []byte, opts PromptInjectionOptions) Result {
	o, err := opts.withDefaults()
	if err != nil {
		o, _ = PromptInjectionOptions{}.withDefaults()
	}
	return scanInjection(text, o)
}

// PromptInjection is the prompt_injection detector: it scans request
// bodies (tool output on its way to a model) and response bodies
// (fetched content coming back) with Scan.
type PromptInjection struct {
	opts PromptInjectionOptions
}

// NewPromptInjection returns the detector. Options out of range are an
// error wrapping ErrInvalidOptions.
func NewPromptInjection(opts PromptInjectionOptions) (*PromptInjection, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &PromptInjection{opts: o}, nil
}

// Name returns "prompt_injection".
func (p *PromptInjection) Name() string { return InjectionName }

// Inspect scans ev.Body, in either direction. Media and archives are not
// text and are skipped.
func (p *PromptInjection) Inspect(ev *Event) []Signal {
	if len(ev.Body) == 0 || binaryContent(ev.ContentType) {
		return nil
	}
	r := scanInjection(ev.Body, p.opts)
	if !r.Flagged {
		return nil
	}
	top := r.Matches[0]
	span := top.Span
	dir := "request"
	if ev.Direction == Response {
		dir = "response"
	}
	return []Signal{{
		Detector: InjectionName,
		Severity: r.Severity,
		Score:    r.Score,
		Rule:     top.Pattern,
		Span:     &span,
		Evidence: fmt.Sprintf("prompt injection in %s body, score %.2f: %s; matched %q", dir, r.Score, summarize(r.Matches), span.Excerpt),
	}}
}

// binaryContent reports content types that cannot carry readable
// instructions.
func binaryContent(ct string) bool {
	ct = strings.ToLower(ct)
	for _, p := range []string{"image/", "audio/", "video/", "font/", "application/octet-stream", "application/zip", "application/gzip", "application/x-tar", "application/pdf"} {
		if strings.HasPrefix(ct, p) {
			return true
		}
	}
	return false
}

func summarize(ms []Match) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		s := m.Pattern
		if m.Obfuscated {
			s += " (in " + m.View + ")"
		}
		if m.Mention {
			s += " (quoted)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// hit is one trigger occurrence in a view.
type hit struct {
	start, end int
	mask       uint64
}

// kinds of rendering a trigger was found in.
const (
	kindPlain = iota
	kindLeet
	kindROT13
	kindReversed
	nKinds
)

var kindNames = [nKinds]string{"", "leet", "rot13", "reversed"}

type viewHits struct {
	v    *View
	hits [nKinds][]hit
}

func scanInjection(text []byte, o PromptInjectionOptions) Result {
	views := normalize(text, NormalizeOptions{Window: o.Window, MaxDepth: o.MaxDepth}, false)
	c := compiled
	vh := make([]viewHits, len(views))
	for i := range views {
		vh[i].v = &views[i]
		t := views[i].Text
		c.ac.scan(t, func(w, end int) {
			tr := &c.trig[w]
			k := kindPlain
			switch tr.form {
			case formROT13:
				k = kindROT13
			case formReversed:
				k = kindReversed
			}
			start := end - tr.n
			if k != kindROT13 && hasLeet(t[start:end]) {
				if k == kindReversed {
					return // reversed leetspeak: not worth the views
				}
				k = kindLeet
			}
			hs := vh[i].hits[k]
			if len(hs) >= maxHits {
				return
			}
			// Merge with the previous hit when it is the same place.
			if n := len(hs); n > 0 && hs[n-1].start == start && hs[n-1].end == end {
				hs[n-1].mask |= tr.mask
				return
			}
			vh[i].hits[k] = append(hs, hit{start: start, end: end, mask: tr.mask})
		})
	}

	// A trigger spelled plainly may still sit in a leetspeak sentence
	// ("![](h77p5://...)"): where the view has leetspeak words, plain hits
	// are tried on the leet rendering too.
	for i := range vh {
		h := &vh[i].hits
		if len(h[kindPlain]) > 0 && hasLeetWords(vh[i].v.Text) {
			h[kindLeet] = append(h[kindLeet], h[kindPlain]...)
			sort.Slice(h[kindLeet], func(a, b int) bool { return h[kindLeet][a].start < h[kindLeet][b].start })
		}
	}

	found := map[int]Match{}
	var done uint64
	// Plain renderings of views a reader sees come first, so that a
	// pattern visible in the clear never earns the hidden bonus.
	for _, pass := range []bool{false, true} {
		for i := range vh {
			for k := 0; k < nKinds; k++ {
				obf := vh[i].v.Obfuscated || k != kindPlain
				if obf != pass || len(vh[i].hits[k]) == 0 {
					continue
				}
				matchKind(&vh[i], k, obf, o, found, &done)
			}
		}
	}

	r := Result{}
	if len(found) == 0 {
		return r
	}
	keep := 1.0
	for _, m := range found {
		r.Matches = append(r.Matches, m)
		keep *= 1 - m.Weight
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
		r.Severity = Warning
		if r.Score >= o.Critical {
			r.Severity = Critical
		}
	}
	return r
}

// hasLeetWords reports a word mixing letters with leetspeak digits or
// symbols.
func hasLeetWords(t []byte) bool {
	letters, leets := false, false
	for _, c := range t {
		switch {
		case c >= 'a' && c <= 'z':
			letters = true
		case leetMap[c] != 0:
			leets = true
		default:
			letters, leets = false, false
			continue
		}
		if letters && leets {
			return true
		}
	}
	return false
}

func hasLeet(b []byte) bool {
	for _, c := range b {
		if leetMap[c] != 0 {
			return true
		}
	}
	return false
}

// rendering returns the views that kind k of v is matched on: v itself,
// its leetspeak folding(s), ROT13 or reversal.
func rendering(v *View, k int) []View {
	w := *v
	switch k {
	case kindPlain:
		return []View{w}
	case kindROT13:
		w.Text, w.Name = rot13(v.Text), v.Name+"/rot13"
		return []View{w}
	case kindReversed:
		w.Text, w.Name, w.rev = reverse(v.Text), v.Name+"/reversed", !v.rev
		return []View{w}
	}
	l, ok := leet(v.Text)
	if !ok {
		return nil
	}
	w.Text, w.Name = l, v.Name+"/leet"
	out := []View{w}
	// "1" stands for "l" as often as for "i": a second folding.
	l2 := append([]byte(nil), l...)
	changed := false
	for j, ch := range v.Text {
		if ch == '1' && l2[j] == 'i' {
			l2[j] = 'l'
			changed = true
		}
	}
	if changed {
		w2 := w
		w2.Text = l2
		out = append(out, w2)
	}
	return out
}

// Windows around a trigger in which the expressions run.
const (
	maxWindow = 1024
	// leadSpan is the most text an anchored expression reads.
	leadSpan = 240
	// maxLeadPerPattern bounds anchored runs per pattern and view.
	maxLeadPerPattern = 1024
)

func matchKind(vh *viewHits, k int, obf bool, o PromptInjectionOptions, found map[int]Match, done *uint64) {
	hs := vh.hits[k]
	var want uint64
	for _, h := range hs {
		want |= h.mask
	}
	want &^= *done
	if want == 0 {
		return
	}
	rs := rendering(vh.v, k)
	if len(rs) == 0 {
		return
	}
	n := len(vh.v.Text)
	for p := range compiled.pats {
		if want&(1<<uint(p)) == 0 {
			continue
		}
		pat := &compiled.pats[p]
		// Windows in the rendering's coordinates, merged.
		var wins [][2]int
		for _, h := range hs {
			if h.mask&(1<<uint(p)) == 0 {
				continue
			}
			s, e := h.start, h.end
			if k == kindReversed {
				s, e = n-h.end, n-h.start
			}
			if pat.lead {
				// Anchored at the trigger, which must start a word.
				if s > 0 && isAlnum(rs[0].Text[s-1]) && isAlnum(rs[0].Text[s]) {
					continue
				}
				if len(wins) >= maxLeadPerPattern {
					break
				}
				w := [2]int{s, min(n, s+leadSpan)}
				if needs(rs, w, pat.need) {
					wins = append(wins, w)
				}
				continue
			}
			s, e = max(0, s-pat.back), min(n, e+pat.fwd)
			if !needs(rs, [2]int{s, e}, pat.need) {
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
	search:
		for ri := range rs {
			r := &rs[ri]
			for _, w := range wins {
				loc := pat.re.FindIndex(r.Text[w[0]:w[1]])
				if loc == nil {
					continue
				}
				i, j := w[0]+loc[0], w[0]+loc[1]
				m := Match{Pattern: pat.Name, Category: pat.Category, View: r.Name, Obfuscated: obf, Weight: pat.Weight}
				if obf {
					m.Weight = math.Min(1, m.Weight+o.HiddenBonus)
				} else if mentioned(r.Text, i, j) {
					m.Mention = true
					m.Weight *= o.MentionFactor
				}
				m.Span.Start, m.Span.End = r.Origin(i, j)
				m.Span.Excerpt = excerpt(r.Text[i:j])
				if prev, ok := found[p]; !ok || m.Weight > prev.Weight {
					found[p] = m
				}
				if !m.Mention {
					*done |= 1 << uint(p)
				}
				break search
			}
		}
	}
}

// needs reports whether one of the literals is in window w of any of the
// renderings (all when there are none).
func needs(rs []View, w [2]int, lits []string) bool {
	if len(lits) == 0 {
		return true
	}
	for _, r := range rs {
		t := r.Text[w[0]:w[1]]
		for _, l := range lits {
			if bytes.Contains(t, []byte(l)) {
				return true
			}
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
	return false
}

func isQuote(c byte) bool {
	return c == '"' || c == '\'' || c == '`' || c == 0x9c /* end of “ ” in UTF-8 */
}

// excerpt quotes matched text for evidence: at most excerptLen bytes,
// printable ASCII only, secret-shaped strings redacted.
func excerpt(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if sb.Len() >= excerptLen-3 {
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
	return redactSecrets(sb.String())
}
