package hostmatch_test

import (
	"strings"
	"testing"

	"github.com/stackctl/stack/hostmatch"
)

// Normalizing is idempotent, and a valid pattern stays the same pattern.
func FuzzNormalize(f *testing.F) {
	for _, tc := range matchTests {
		f.Add(tc.host)
		f.Add(tc.pattern)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := hostmatch.Normalize(s); err == nil {
			if again, err := hostmatch.Normalize(n); err != nil || again != n {
				t.Fatalf("Normalize(%q) = %q, then %q, %v", s, n, again, err)
			}
			if !hostmatch.Match(n, s) {
				t.Fatalf("%q does not match its own normal form %q", s, n)
			}
		}
		if p, err := hostmatch.Pattern(s); err == nil {
			if again, err := hostmatch.Pattern(p); err != nil || again != p {
				t.Fatalf("Pattern(%q) = %q, then %q, %v", s, p, again, err)
			}
		}
	})
}

// Match is the rule on normalized forms, written plainly: equal, or one
// label in front of a wildcard's name. Whatever does not normalize
// matches nothing.
func FuzzMatch(f *testing.F) {
	for _, tc := range matchTests {
		f.Add(tc.pattern, tc.host)
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		got := hostmatch.Match(pattern, host)
		p, perr := hostmatch.Pattern(pattern)
		h, herr := hostmatch.Normalize(host)
		if perr != nil || herr != nil {
			if got {
				t.Fatalf("Match(%q, %q) with pattern error %v, host error %v", pattern, host, perr, herr)
			}
			return
		}
		want := p == h
		if name, ok := strings.CutPrefix(p, "*."); ok {
			label, rest, found := strings.Cut(h, ".")
			want = found && label != "" && rest == name
		}
		if got != want {
			t.Fatalf("Match(%q, %q) = %v, but on %q and %q the rule says %v", pattern, host, got, p, h, want)
		}
		if again := hostmatch.Match(p, h); again != got {
			t.Fatalf("Match(%q, %q) = %v, on normalized forms %v", pattern, host, got, again)
		}
	})
}
