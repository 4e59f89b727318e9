package hostmatch_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stackctl/stack/hostmatch"
)

// refused marks an input Normalize or Pattern must refuse.
const refused = "(refused)"

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		name, host, want string
	}{
		{"exact", "api.example.com", "api.example.com"},
		{"case", "API.Example.COM", "api.example.com"},
		{"trailing dot", "api.example.com.", "api.example.com"},
		{"port", "api.example.com:443", "api.example.com"},
		{"empty port", "api.example.com:", "api.example.com"},
		{"IPv4", "10.0.0.1", "10.0.0.1"},
		{"IPv4 with port", "10.0.0.1:8443", "10.0.0.1"},
		{"IPv4 trailing dot", "10.0.0.1.", "10.0.0.1"},
		{"IPv6 bare", "::1", "::1"},
		{"IPv6 bracketed", "[::1]", "::1"},
		{"IPv6 with port", "[::1]:443", "::1"},
		{"IPv6 canonical form", "[2001:DB8:0::1]:8443", "2001:db8::1"},
		{"IPv4-mapped IPv6", "[::ffff:10.0.0.1]", "10.0.0.1"},
		{"punycode", "XN--BCHER-KVA.example", "xn--bcher-kva.example"},
		{"underscore", "my_svc.internal.example", "my_svc.internal.example"},
		{"single label", "localhost", "localhost"},

		{"empty", "", refused},
		{"dot alone", ".", refused},
		{"two trailing dots", "api.example.com..", refused},
		{"empty label", "api..example.com", refused},
		{"leading dot", ".example.com", refused},
		{"leading space", " api.example.com", refused},
		{"inner space", "exa mple.com", refused},
		{"unicode", "bücher.example", refused},
		{"wildcard is no host", "*.example.com", refused},
		{"IPv6 zone", "[fe80::1%25eth0]", refused},
		{"IPv6 zone bare", "fe80::1%eth0", refused},
		{"IPv4 in brackets", "[10.0.0.1]", refused},
		{"IPv4 shorthand", "127.1", refused},
		{"IPv4 octal", "010.0.0.1", refused},
		{"IPv4 decimal", "2130706433", refused},
		{"bad port", "api.example.com:https", refused},
		{"port too big", "api.example.com:65536", refused},
		{"scheme", "https://api.example.com", refused},
		{"user", "user@api.example.com", refused},
		{"leading hyphen", "-a.example.com", refused},
		{"trailing hyphen", "a-.example.com", refused},
		{"label of 64", strings.Repeat("a", 64) + ".com", refused},
		{"name of 254", strings.Repeat("a.", 126) + "aa", refused},
		{"unclosed bracket", "[::1", refused},
		{"text after bracket", "[::1]x", refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hostmatch.Normalize(tc.host)
			if tc.want == refused {
				if !errors.Is(err, hostmatch.ErrInvalid) {
					t.Fatalf("Normalize(%q) = %q, %v; want ErrInvalid", tc.host, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Normalize(%q) = %q, %v; want %q", tc.host, got, err, tc.want)
			}
		})
	}
}

func TestPattern(t *testing.T) {
	for _, tc := range []struct {
		name, pattern, want string
	}{
		{"name", "API.Example.com", "api.example.com"},
		{"wildcard", "*.Example.COM", "*.example.com"},
		{"wildcard trailing dot", "*.example.com.", "*.example.com"},
		{"white space around", "  api.example.com\t", "api.example.com"},
		{"IPv4", "10.0.0.1", "10.0.0.1"},
		{"IPv6 bracketed", "[::1]", "::1"},
		{"two-label wildcard", "*.co.uk", "*.co.uk"},

		{"empty", "", refused},
		{"star alone", "*", refused},
		{"wildcard over one label", "*.com", refused},
		{"wildcard not first", "a.*.example.com", refused},
		{"partial wildcard", "a*.example.com", refused},
		{"two wildcards", "*.*.example.com", refused},
		{"wildcard over an address", "*.0.0.1", refused},
		{"port", "api.example.com:443", refused},
		{"IPv6 with port", "[::1]:443", refused},
		{"scheme", "https://api.example.com", refused},
		{"unicode", "*.bücher.example", refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hostmatch.Pattern(tc.pattern)
			if tc.want == refused {
				if !errors.Is(err, hostmatch.ErrInvalid) {
					t.Fatalf("Pattern(%q) = %q, %v; want ErrInvalid", tc.pattern, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Pattern(%q) = %q, %v; want %q", tc.pattern, got, err, tc.want)
			}
		})
	}
}

// matchTests are the rules every binding of something to a host follows.
var matchTests = []struct {
	name, pattern, host string
	want                bool
}{
	{"exact", "api.example.com", "api.example.com", true},
	{"host case", "api.example.com", "API.Example.COM", true},
	{"pattern case", "API.EXAMPLE.COM", "api.example.com", true},
	{"host trailing dot", "api.example.com", "api.example.com.", true},
	{"pattern trailing dot", "api.example.com.", "api.example.com", true},
	{"host port", "api.example.com", "api.example.com:443", true},
	{"other name", "api.example.com", "xapi.example.com", false},
	{"suffix is no match", "example.com", "api.example.com", false},
	{"IPv4 with port", "10.0.0.1", "10.0.0.1:443", true},
	{"IPv4-mapped IPv6", "10.0.0.1", "::ffff:10.0.0.1", true},
	{"other IPv4", "10.0.0.1", "10.0.0.2", false},
	{"IPv6 bare", "::1", "::1", true},
	{"IPv6 bracketed host", "::1", "[::1]", true},
	{"IPv6 host with port", "::1", "[::1]:443", true},
	{"IPv6 bracketed pattern", "[::1]", "::1", true},
	{"IPv6 other form", "2001:db8::1", "[2001:DB8:0::1]:8443", true},
	{"wildcard one label", "*.example.com", "a.example.com", true},
	{"wildcard case and port", "*.example.com", "A.EXAMPLE.COM:443", true},
	{"wildcard underscore label", "*.example.com", "my_svc.example.com", true},
	{"wildcard not the apex", "*.example.com", "example.com", false},
	{"wildcard not two labels", "*.example.com", "a.b.example.com", false},
	{"wildcard empty label", "*.example.com", ".example.com", false},
	{"wildcard lookalike", "*.example.com", "a.evilexample.com", false},
	{"wildcard literal star host", "*.example.com", "*.example.com", false},
	{"wildcard unicode label", "*.example.com", "bücher.example.com", false},
	{"wildcard hyphen label", "*.example.com", "-a.example.com", false},
	{"wildcard never an address", "*.example.com", "10.0.0.1", false},
	{"star alone", "*", "localhost", false},
	{"star over one label", "*.com", "example.com", false},
	{"empty", "", "", false},
	{"empty host", "api.example.com", "", false},
	{"punycode case", "xn--bcher-kva.example", "XN--BCHER-KVA.example", true},
	{"punycode against unicode", "xn--bcher-kva.example", "bücher.example", false},
	{"unicode both sides", "bücher.example", "bücher.example", false},
	{"host white space", "api.example.com", " api.example.com", false},
	{"pattern white space", " api.example.com ", "api.example.com", true},
	{"pattern with port", "api.example.com:443", "api.example.com:443", false},
	{"address shorthand", "127.1", "127.1", false},
}

func TestMatch(t *testing.T) {
	for _, tc := range matchTests {
		t.Run(tc.name, func(t *testing.T) {
			if got := hostmatch.Match(tc.pattern, tc.host); got != tc.want {
				t.Fatalf("Match(%q, %q) = %v, want %v", tc.pattern, tc.host, got, tc.want)
			}
			if got := hostmatch.MatchAny([]string{"other.example", tc.pattern}, tc.host); got != tc.want {
				t.Fatalf("MatchAny(%q, %q) = %v, want %v", tc.pattern, tc.host, got, tc.want)
			}
		})
	}
	if hostmatch.MatchAny(nil, "api.example.com") {
		t.Error("MatchAny with no patterns matched")
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		parent, child string
		want          bool
	}{
		{"api.example.com", "api.example.com", true},
		{"API.example.com.", "api.example.com", true},
		{"*.example.com", "*.example.com", true},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", "example.com", false},
		{"a.example.com", "*.example.com", false},
		{"*.b.example.com", "*.example.com", false},
		{"*.example.com", "*.b.example.com", false}, // names a.b.example.com, which the parent does not
		{"api.example.com", "other.example.com", false},
		{"*.com", "a.com", false},                         // an invalid parent covers nothing
		{"api.example.com", "api.example.com:443", false}, // nor does it cover an invalid child
	}
	for _, tc := range tests {
		if got := hostmatch.Covers(tc.parent, tc.child); got != tc.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tc.parent, tc.child, got, tc.want)
		}
	}
}

func TestErrorSaysWhy(t *testing.T) {
	for in, want := range map[string]string{
		"*.com":               "at least two labels",
		"api.example.com:443": "no port",
		"bücher.example":      "xn--",
		"https://a.com":       "not a URL",
		"127.1":               "IPv4",
	} {
		_, err := hostmatch.Pattern(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Pattern(%q) error %v, want it to say %q", in, err, want)
		}
	}
}

func BenchmarkMatchAny(b *testing.B) {
	patterns := []string{"api.stripe.com", "*.stripe.com", "files.example.com"}
	b.ReportAllocs()
	for b.Loop() {
		if !hostmatch.MatchAny(patterns, "Files.Stripe.com:443") {
			b.Fatal("no match")
		}
	}
}
