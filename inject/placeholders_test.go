package inject

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// placeholderRE is the placeholder grammar as a regular expression, the
// specification placeholders is checked against.
var placeholderRE = regexp.MustCompile(`stk_ph_[A-Za-z0-9_-]+`)

func placeholderNames(text string) []string {
	var out []string
	placeholders(text, func(n string) { out = append(out, n) })
	return out
}

func regexNames(text string) []string {
	var out []string
	for _, m := range placeholderRE.FindAllString(text, -1) {
		out = append(out, strings.TrimPrefix(m, Prefix))
	}
	return out
}

func TestPlaceholders(t *testing.T) {
	for text, want := range map[string][]string{
		"":                            nil,
		"Bearer stk_ph_stripe":        {"stripe"},
		"stk_ph_":                     nil,
		"stk_ph_ stk_ph_a-b_c9.x":     {"a-b_c9"},
		"stk_ph_stk_ph_x":             {"stk_ph_x"},
		"a=stk_ph_one&b=stk_ph_two;":  {"one", "two"},
		"stk_pH_case stk_ph_\u00e9":   nil,
		"xxstk_phstk_ph_ok/stk_ph_!!": {"ok"},
	} {
		if got := placeholderNames(text); !slices.Equal(got, want) {
			t.Errorf("placeholders(%q) = %q, want %q", text, got, want)
		}
		if got := regexNames(text); !slices.Equal(got, want) {
			t.Errorf("the grammar's regexp finds %q in %q, the table says %q", got, text, want)
		}
		if hasPlaceholder(text) != (len(want) > 0) {
			t.Errorf("hasPlaceholder(%q) = %v", text, !(len(want) > 0))
		}
	}
}

func FuzzPlaceholders(f *testing.F) {
	for _, s := range []string{"Bearer stk_ph_stripe", "stk_ph_stk_ph_x", "stk_ph_-_", "stk_phstk_ph_a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if got, want := placeholderNames(text), regexNames(text); !slices.Equal(got, want) {
			t.Fatalf("placeholders(%q) = %q, the regexp finds %q", text, got, want)
		}
	})
}
