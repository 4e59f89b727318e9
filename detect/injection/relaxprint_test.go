package injection

import (
	"regexp/syntax"
	"testing"
)

// exprString must print the same expression String does: parsed again,
// it is the same tree, for every expression of the catalogue, relaxed or
// not, and for the classes that make String slow.
func TestExprString(t *testing.T) {
	exprs := []string{`\S+`, `[^<>]{0,5}x`, `(?:\s+\S+){0,3}`, `[a-z]\w*`, `(?i)ab[c-f]`, `^[^\n]{1,200}?$`, `[\x{e0000}-\x{e007f}]`}
	for _, p := range Patterns() {
		exprs = append(exprs, p.Expr)
		rx, _, _ := relax(p.Expr)
		exprs = append(exprs, rx)
	}
	for _, e := range exprs {
		re, err := syntax.Parse(e, syntax.Perl)
		if err != nil {
			t.Fatalf("%s: %v", e, err)
		}
		want := re.String()
		fast := exprString(re)
		if re.String() != want {
			t.Fatalf("exprString changed the tree of %s", e)
		}
		back, err := syntax.Parse(fast, syntax.Perl)
		if err != nil {
			t.Fatalf("exprString(%s) = %s, which does not parse: %v", e, fast, err)
		}
		if got := back.String(); got != want {
			t.Errorf("exprString(%s) = %s\nparses to %s\nwant       %s", e, fast, got, want)
		}
	}
}
