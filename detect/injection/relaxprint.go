package injection

import (
	"fmt"
	"regexp/syntax"
	"strings"
)

// classSentinel is the first of the private-use code points exprString
// stands in for character classes while printing; no pattern uses them.
const classSentinel = 0x10FF00

// exprString prints re as syntax.Regexp.String does, but fast. String
// decides for every character class whether it is closed under case
// folding, which for a negated class such as \S or [^<>] means folding
// every code point it spans: milliseconds per class, and the catalogue's
// relaxed expressions have dozens, which made package initialisation take
// 100 ms and more. Classes are printed as explicit ranges instead (the
// same set of code points, spelled differently), the rest by String. re's
// classes are restored before it returns.
func exprString(re *syntax.Regexp) string {
	root := &syntax.Regexp{Op: syntax.OpConcat, Sub: []*syntax.Regexp{re}}
	type swapped struct {
		parent *syntax.Regexp
		i      int
		class  *syntax.Regexp
	}
	var swaps []swapped
	var walk func(r *syntax.Regexp)
	walk = func(r *syntax.Regexp) {
		for i, sub := range r.Sub {
			if sub.Op == syntax.OpCharClass && len(swaps) < 0xFF {
				swaps = append(swaps, swapped{r, i, sub})
				r.Sub[i] = &syntax.Regexp{Op: syntax.OpLiteral, Rune: []rune{classSentinel + rune(len(swaps)-1)}}
				continue
			}
			walk(sub)
		}
	}
	walk(root)
	s := root.Sub[0].String()
	pairs := make([]string, 0, 2*len(swaps))
	for k, sw := range swaps {
		sw.parent.Sub[sw.i] = sw.class
		pairs = append(pairs, fmt.Sprintf(`\x{%x}`, classSentinel+k), classText(sw.class.Rune))
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// classText spells a character class's ranges (pairs lo, hi) out.
func classText(ranges []rune) string {
	if len(ranges) == 0 {
		return `[^\x00-\x{10ffff}]` // matches nothing
	}
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i+1 < len(ranges); i += 2 {
		fmt.Fprintf(&b, `\x{%x}`, ranges[i])
		if ranges[i+1] != ranges[i] {
			fmt.Fprintf(&b, `-\x{%x}`, ranges[i+1])
		}
	}
	b.WriteByte(']')
	return b.String()
}
