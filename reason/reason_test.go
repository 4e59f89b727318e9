package reason

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// name is how a reason looks in the docs: a backquoted lower-case word.
var name = regexp.MustCompile("`([a-z][a-z0-9_]*)`")

// Every reason constant this package declares is in All, once; the only
// other strings are the header's name and who revoked a passport.
func TestAllIsEveryConstant(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "reason.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if id.Name == "Header" || strings.HasPrefix(id.Name, "RevokedBy") {
					continue
				}
				v, err := strconv.Unquote(vs.Values[i].(*ast.BasicLit).Value)
				if err != nil {
					t.Fatalf("%s: %v", id.Name, err)
				}
				declared = append(declared, v)
			}
		}
	}
	all := All()
	if len(all) == 0 {
		t.Fatal("All is empty")
	}
	sorted := slices.Sorted(slices.Values(all))
	if c := slices.Compact(slices.Clone(sorted)); len(c) != len(sorted) {
		t.Errorf("All lists a reason twice: %v", all)
	}
	same(t, "reason.go's constants", declared, "All", all)
}

// The README's list of denial reasons is the code's, both ways.
func TestREADMEListsEveryReason(t *testing.T) {
	same(t, "README.md's Denials", readmeReasons(t, "../README.md"), "All", All())
}

// The troubleshooting page's table of reasons is the code's, both ways.
func TestTroubleshootingListsEveryReason(t *testing.T) {
	same(t, "docs/troubleshooting.md's table", tableReasons(t, "../docs/troubleshooting.md", "## Every reason"), "All", All())
}

// readmeReasons returns the names in the README's "**Denials:**" item,
// which runs to the next item of its list.
func readmeReasons(t *testing.T, path string) []string {
	t.Helper()
	var names []string
	in := false
	for _, line := range lines(t, path) {
		switch {
		case strings.HasPrefix(line, "- **Denials:**"):
			in = true
		case in && !strings.HasPrefix(line, "  "):
			return names
		}
		if in {
			for _, m := range name.FindAllStringSubmatch(line, -1) {
				names = append(names, m[1])
			}
		}
	}
	if !in {
		t.Fatalf("%s has no **Denials:** item", path)
	}
	return names
}

// tableReasons returns the first column of the table under heading.
func tableReasons(t *testing.T, path, heading string) []string {
	t.Helper()
	var names []string
	in := false
	for _, line := range lines(t, path) {
		switch {
		case line == heading:
			in = true
			continue
		case in && strings.HasPrefix(line, "## "):
			return names
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cell, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " |")
		if m := name.FindStringSubmatch(cell); m != nil {
			names = append(names, m[1])
		}
	}
	if !in {
		t.Fatalf("%s has no %q section", path, heading)
	}
	return names
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// same reports the names one list has and the other lacks, both ways.
func same(t *testing.T, aName string, a []string, bName string, b []string) {
	t.Helper()
	for _, x := range a {
		if !slices.Contains(b, x) {
			t.Errorf("%s has %q, %s does not", aName, x, bName)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			t.Errorf("%s has %q, %s does not", bName, x, aName)
		}
	}
}
