package injection

import (
	"bytes"
	"slices"
)

// Layout views: the text as a reader takes it in when its layout splits
// the words the patterns read. Each covers only the regions where it
// differs from the text view, joined by blank lines, and maps back to it
// byte by byte.
//
//   - "unwrapped": paragraphs wrapped by hand or by a mail client, with
//     their line breaks read as spaces; paragraphs cut at a fixed column
//     (`fold -w 40` cuts words) read with the breaks removed. A reader
//     sees the same words, so the view is not obfuscated.
//   - "emphasis": markdown emphasis on every word ("**ignore**
//     **previous**") with the markers dropped.
//   - "json-array": a JSON array of strings read as one text: single
//     words joined by spaces, longer fragments ("ign", "ore all prev")
//     joined as they are.

// layoutViews adds the layout views of v.
func (n *normalizer) layoutViews(v View, prefix string) {
	t := v.Text
	n.unwrapped(v, prefix, t)
	n.emphasis(v, prefix, t)
	n.jsonArrays(v, prefix, t)
}

// Wrapped paragraphs.
const (
	// minWrapped is the shortest line read as wrapped: shorter lines
	// are code, lists and signatures.
	minWrapped = 20
	// maxWrapped is the widest wrap column read as one.
	maxWrapped = 200
)

// unwrapped adds the view of the wrapped paragraphs of t. A line break
// is a wrap when the line is at least minWrapped bytes long and the next
// line's first word would not have fitted on it within the paragraph's
// widest line: the mark of a greedy wrap, which code and lists seldom
// leave.
func (n *normalizer) unwrapped(v View, prefix string, t []byte) {
	if bytes.IndexByte(t, '\n') < 0 {
		return
	}
	out, off := n.layoutBuf(0, prefix)
	for p := 0; p < len(t); {
		// A paragraph: lines up to a blank line.
		lines := n.lines[:0]
		q := p
		for q < len(t) {
			e := bytes.IndexByte(t[q:], '\n')
			if e < 0 {
				e = len(t)
			} else {
				e += q
			}
			if blank(t[q:e]) {
				if len(lines) > 0 {
					break
				}
				q = e + 1
				p = q
				continue
			}
			lines = append(lines, [2]int{q, e})
			q = e + 1
		}
		n.lines = lines
		if len(lines) >= 2 {
			out, off = unwrapParagraph(t, lines, out, off)
		}
		p = max(q, p+1)
	}
	n.addLayout(v, prefix, 0, "unwrapped", false, out, off)
}

// unwrapParagraph appends the wrapped runs of lines of one paragraph to
// out, line breaks read as spaces, or removed when every line but the
// last is as long as the widest (a cut at a fixed column).
func unwrapParagraph(t []byte, lines [][2]int, out []byte, off []int32) ([]byte, []int32) {
	width := 0
	for _, l := range lines {
		width = max(width, l[1]-l[0])
	}
	if width < minWrapped || width > maxWrapped {
		return out, off
	}
	column := true
	for _, l := range lines[:len(lines)-1] {
		column = column && l[1]-l[0] == width
	}
	inRun := false
	for k := 0; k+1 < len(lines); k++ {
		l, next := lines[k], lines[k+1]
		wrap := l[1]-l[0] >= minWrapped && !startsBlock(t[next[0]:next[1]]) &&
			l[1]-l[0]+1+firstWordLen(t[next[0]:next[1]]) > width
		if !wrap {
			if inRun {
				out, off = appendMapped(out, off, t, l[0], l[1])
				inRun = false
			}
			continue
		}
		if !inRun {
			out, off = layoutBreak(out, off, l[0])
			inRun = true
		}
		out, off = appendMapped(out, off, t, l[0], l[1])
		if !column {
			out = append(out, ' ')
			off = append(off, int32(l[1]))
		}
	}
	if inRun {
		l := lines[len(lines)-1]
		out, off = appendMapped(out, off, t, l[0], l[1])
	}
	return out, off
}

// blank reports a line of white space only.
func blank(l []byte) bool {
	for _, c := range l {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// startsBlock reports a line that begins a list item, a quotation, a
// heading or a table row: the break before it is not a wrap.
func startsBlock(l []byte) bool {
	i := 0
	for i < len(l) && (l[i] == ' ' || l[i] == '\t') {
		i++
	}
	if i == len(l) {
		return true
	}
	switch l[i] {
	case '-', '*', '+', '#', '>', '|', '`':
		return true
	}
	j := i
	for j < len(l) && l[j] >= '0' && l[j] <= '9' {
		j++
	}
	return j > i && j < len(l) && (l[j] == '.' || l[j] == ')')
}

// firstWordLen is the length of the first word of line l.
func firstWordLen(l []byte) int {
	i := 0
	for i < len(l) && l[i] == ' ' {
		i++
	}
	j := i
	for j < len(l) && l[j] != ' ' && l[j] != '\t' && l[j] != '\r' {
		j++
	}
	return j - i
}

// emphasisMark reports a byte markdown emphasizes with.
func emphasisMark(c byte) bool { return c == '*' || c == '_' || c == '~' || c == '`' }

// wordy reports a byte of a word for emphasis: an ASCII letter or digit,
// or a byte of a multi-byte character.
func wordy(c byte) bool { return isAlnum(lowerByte(c)) || c >= 0x80 }

// emphasis adds the view of the text around emphasized words set side
// by side ("**ignore** **all**": marks, a space, marks), with the marks
// at the edges of words dropped ("*" inside words too, as markdown reads
// it).
func (n *normalizer) emphasis(v View, prefix string, t []byte) {
	regions := n.regions[:0]
	// Each mark is looked for on its own (IndexByte reads many bytes at
	// a time): text has far fewer marks than spaces.
	for _, c := range []byte("*_~`") {
		for i := 0; ; {
			k := bytes.IndexByte(t[i:], c)
			if k < 0 {
				break
			}
			i += k + 1
			if i >= len(t) || t[i] != ' ' {
				continue
			}
			j := i
			for j < len(t) && t[j] == ' ' {
				j++
			}
			if j < len(t) && emphasisMark(t[j]) && closesWord(t, i) && opensWord(t, j) {
				regions = append(regions, [2]int{max(0, i-sepContext), min(len(t), j+sepContext)})
			}
		}
	}
	if len(regions) == 0 {
		return
	}
	slices.SortFunc(regions, func(a, b [2]int) int { return a[0] - b[0] })
	merged := regions[:1]
	for _, r := range regions[1:] {
		merged = addRegion(merged, r[0], r[1])
	}
	regions = merged
	n.regions = regions
	if len(regions) == 0 {
		return
	}
	out, off := n.layoutBuf(1, prefix)
	for _, r := range regions {
		out, off = layoutBreak(out, off, r[0])
		for i := r[0]; i < r[1]; {
			if !emphasisMark(t[i]) {
				out = append(out, t[i])
				off = append(off, int32(i))
				i++
				continue
			}
			j := i
			for j < r[1] && emphasisMark(t[j]) {
				j++
			}
			before := i > 0 && wordy(t[i-1])
			after := j < len(t) && wordy(t[j])
			if before && after && t[i] != '*' || !before && !after {
				// snake_case, or marks standing alone: kept.
				out, off = appendMapped(out, off, t, i, j)
			}
			i = j
		}
	}
	n.addLayout(v, prefix, 1, "emphasis", true, out, off)
}

// closesWord reports emphasis marks ending at i that close a word.
func closesWord(t []byte, i int) bool {
	for i > 0 && emphasisMark(t[i-1]) {
		i--
	}
	return i > 0 && wordy(t[i-1])
}

// opensWord reports emphasis marks starting at j that open a word.
func opensWord(t []byte, j int) bool {
	for j < len(t) && emphasisMark(t[j]) {
		j++
	}
	return j < len(t) && wordy(t[j])
}

// jsonArrays adds the view of the JSON arrays of two strings or more in
// t, each read as one text.
func (n *normalizer) jsonArrays(v View, prefix string, t []byte) {
	var out []byte
	var off []int32
	started := false
	for i := 0; ; i++ {
		k := bytes.IndexByte(t[i:], '[')
		if k < 0 {
			break
		}
		i += k
		elems, end := stringArray(t, i, n.lines[:0])
		n.lines = elems
		if len(elems) < 2 {
			continue
		}
		if !started {
			out, off = n.layoutBuf(2, prefix)
			started = true
		}
		words := true
		for _, e := range elems {
			words = words && !bytes.ContainsAny(t[e[0]:e[1]], " \t\n")
		}
		out, off = layoutBreak(out, off, i)
		for k, e := range elems {
			if k > 0 && words {
				out = append(out, ' ')
				off = append(off, int32(e[0]-1))
			}
			out, off = appendMapped(out, off, t, e[0], e[1])
		}
		i = end - 1
	}
	if started {
		n.addLayout(v, prefix, 2, "json-array", true, out, off)
	}
}

// stringArray reads the JSON array of strings starting at t[i] ("[") and
// returns the ranges of its strings' contents and the array's end; no
// ranges when it is not one. Its strings are read up to the next quote:
// the text view has JSON escapes decoded.
func stringArray(t []byte, i int, elems [][2]int) ([][2]int, int) {
	j := skipSpace(t, i+1)
	for {
		if j >= len(t) || t[j] != '"' {
			return elems[:0], j
		}
		e := bytes.IndexByte(t[j+1:], '"')
		if e < 0 {
			return elems[:0], j
		}
		elems = append(elems, [2]int{j + 1, j + 1 + e})
		j = skipSpace(t, j+2+e)
		if j >= len(t) {
			return elems[:0], j
		}
		switch t[j] {
		case ']':
			return elems, j + 1
		case ',':
			j = skipSpace(t, j+1)
		default:
			return elems[:0], j
		}
	}
}

// appendMapped appends t[i:j] to out and its positions to off.
func appendMapped(out []byte, off []int32, t []byte, i, j int) ([]byte, []int32) {
	out = append(out, t[i:j]...)
	for k := i; k < j; k++ {
		off = append(off, int32(k))
	}
	return out, off
}

// layoutBreak separates regions of a layout view by a blank line, so
// that no pattern reads across two of them; at is where the next region
// starts.
func layoutBreak(out []byte, off []int32, at int) ([]byte, []int32) {
	if len(out) == 0 {
		return out, off
	}
	return append(out, '\n', '\n'), append(off, int32(at), int32(at))
}

// layoutBuf returns the buffers for layout view k, empty: the top
// level's are reused from scan to scan; a nested view's must outlive
// the top level's.
func (n *normalizer) layoutBuf(k int, prefix string) ([]byte, []int32) {
	if prefix != "" {
		return nil, nil
	}
	return n.layout[k].out[:0], n.layout[k].off[:0]
}

// addLayout adds layout view k of v, out, with off mapping its bytes to
// v.Text.
func (n *normalizer) addLayout(v View, prefix string, k int, name string, obfuscated bool, out []byte, off []int32) {
	if len(out) == 0 {
		return
	}
	end := len(v.Text)
	if len(off) > 0 {
		end = int(off[len(off)-1]) + 1
	}
	off = append(off, int32(min(end, len(v.Text))))
	if prefix == "" {
		n.layout[k].out, n.layout[k].off = out, off
	}
	if v.mixed {
		lowerInPlace(out)
	}
	n.addDerived(v, join(prefix, name), obfuscated, out, off)
}
