package passport

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

// splitMatchPath is matchPath written the obvious way, splitting both
// sides into segments: the reference the walking version must agree with.
func splitMatchPath(pattern, p string) bool {
	ps, segs := splitPath(pattern), splitPath(p)
	if len(ps) > 0 && ps[len(ps)-1] == "**" {
		ps = ps[:len(ps)-1]
		if len(segs) < len(ps) {
			return false
		}
	} else if len(segs) != len(ps) {
		return false
	}
	for i, pat := range ps {
		if !matchSegment(pat, segs[i]) {
			return false
		}
	}
	return true
}

func TestMatchPathAgreesWithSplitting(t *testing.T) {
	patterns := []string{"/", "/**", "/v1/**", "/v1/charges/*", "/v1/*/refunds", "/a/**/b", "/a/b*c/**", "/v1/charges", "/*", "/**/x"}
	paths := []string{"/", "/v1", "/v1/charges", "/v1/charges/ch_1", "/v1/charges/ch_1/refunds", "/a/b", "/a/x/b", "/a/bxc", "/a/bxc/d/e", "/x", "/y/x"}
	for _, pat := range patterns {
		for _, p := range paths {
			if got, want := matchPath(pat, p), splitMatchPath(pat, p); got != want {
				t.Errorf("matchPath(%q, %q) = %v, want %v", pat, p, got, want)
			}
		}
	}
}

func FuzzMatchPath(f *testing.F) {
	f.Add("/v1/**", "/v1/charges/ch_1")
	f.Add("/a/*/b", "/a/x/b")
	f.Add("/**", "/")
	f.Add("//a//**", "/a//b")
	f.Fuzz(func(t *testing.T, pattern, p string) {
		if got, want := matchPath(pattern, p), splitMatchPath(pattern, p); got != want {
			t.Fatalf("matchPath(%q, %q) = %v, splitting says %v", pattern, p, got, want)
		}
	})
}

// The host reason is formatted only when a request is denied on its host.
func TestAllowsHostReason(t *testing.T) {
	s := Scope{{Hosts: []string{"api.stripe.com"}}}
	if d := s.Allows(Request{Host: "API.Stripe.com:443", Method: "GET", Path: "/"}); !d.Allowed {
		t.Fatalf("denied: %+v", d)
	}
	d := s.Allows(Request{Host: "evil.test", Method: "GET", Path: "/"})
	if d.Allowed || d.Grant != -1 || !strings.Contains(d.Reason, "host not granted: evil.test") {
		t.Fatalf("got %+v", d)
	}
}

func BenchmarkAllows(b *testing.B) {
	s := Scope{
		{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET", "POST"}, Paths: []string{"/v1/charges/**", "/v1/stream"}, Credentials: []string{"stripe"}},
		{Hosts: []string{"other.test"}},
	}
	r := Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges/ch_123", Credential: "stripe"}
	b.ReportAllocs()
	for b.Loop() {
		if !s.Allows(r).Allowed {
			b.Fatal("denied")
		}
	}
}

// A literal '%' is data; what could read differently upstream is matched
// in every reading, so it passes a grant for every path and cannot step
// out of a narrower one.
func TestAllowsPathReadings(t *testing.T) {
	const (
		anyPath = "/**"
		charges = "/v1/charges/**"
		echoOne = "/echo/*"
	)
	cases := []struct {
		name    string
		pattern string // "" for a grant without paths
		path    string
		allow   bool
		reason  string
	}{
		{"encoded percent, every path", anyPath, "/echo/a%252Fb", true, ""},
		{"encoded percent, no paths", "", "/echo/a%252Fb", true, ""},
		{"S3 key with a percent sign", anyPath, "/dir/100%25.txt", true, ""},
		{"percent sign inside a segment glob", "/dir/*", "/dir/100%25.txt", true, ""},
		{"lone encoded percent", anyPath, "/%25", true, ""},
		{"encoded slash, every path", anyPath, "/echo/a%2Fb", true, ""},
		{"encoded slash inside the grant", charges, "/v1/charges/a%2Fb", true, ""},
		{"encoded dots, every path", anyPath, "/v1/charges/%2e%2e/admin", true, ""},

		{"encoded slash splits a segment", echoOne, "/echo/a%2Fb", false, "path not granted: /echo/a/b"},
		{"double-encoded slash splits when decoded twice", echoOne, "/echo/a%252Fb", false, "path not granted: /echo/a/b (decoded twice)"},
		{"encoded dot-dot", charges, "/v1/charges/%2e%2e/admin", false, "path not granted: /v1/admin"},
		{"encoded slash and dot-dot", charges, "/v1/charges%2F..%2F..%2Fadmin", false, "path not granted: /admin"},
		{"dot-dot hidden behind an encoded slash", charges, "/v1/other/..%2Fcharges/x", false, "path not granted: /v1/other/..%2Fcharges/x (as sent"},
		{"encoded dot-dot a server may not resolve", charges, "/v1/other/%2e%2e/charges/x", false, "path not granted: /v1/other/%2E%2E/charges/x (as sent"},
		{"double-encoded traversal", charges, "/v1/charges/x%252F..%252F..%252Fadmin", false, "path not granted: /v1/admin (decoded twice)"},
		{"double-encoded dot-dot", charges, "/v1/charges/%252e%252e/%252e%252e/admin", false, "path not granted: /admin (decoded twice)"},

		{"NUL when decoded twice", anyPath, "/v1/%2500", false, "control character or backslash in path when decoded twice"},
		{"backslash when decoded twice", anyPath, "/v1/a%255Cb", false, "control character or backslash in path when decoded twice"},
		{"encoded backslash", anyPath, "/v1/a%5Cb", false, "control character or backslash"},
		{"NUL", "", "/v1/a%00", false, "control character"},
		{"nested three times", anyPath, "/v1/%25252F", false, "nested more than twice"},
		{"lone percent sign", anyPath, "/dir/100%.txt", false, "bad percent-encoding"},
		{"truncated escape", anyPath, "/dir/a%2", false, "bad percent-encoding"},
		{"dot-dot-semicolon when decoded twice", anyPath, "/v1/%252E%252E%253B/x", false, "dot-dot segment when decoded twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := Grant{Hosts: []string{"api.example.com"}}
			if tc.pattern != "" {
				g.Paths = []string{tc.pattern}
			}
			d := Scope{g}.Allows(Request{Host: "api.example.com", Method: "GET", Path: tc.path})
			if d.Allowed != tc.allow {
				t.Fatalf("Allows(%q) under %q = %v (%s), want %v", tc.path, tc.pattern, d.Allowed, d.Reason, tc.allow)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("reason %q, want it to contain %q", d.Reason, tc.reason)
			}
		})
	}
}

// A path that a grant for /v1/charges/** allows stays under /v1/charges
// for servers that decode before splitting, split before decoding, or
// decode twice, each written here independently of Allows.
func FuzzAllowedPathStaysInGrant(f *testing.F) {
	for _, p := range []string{"/v1/charges/ch_1", "/v1/charges/%2e%2e/x", "/v1/other/..%2Fcharges/x",
		"/v1/charges/x%252F..%252Fy", "/v1/charges/100%25.txt", "/v1/charges/%2Fa", "/v1/./charges/../charges/a"} {
		f.Add(p)
	}
	s := Scope{{Hosts: []string{"api.stripe.com"}, Paths: []string{"/v1/charges/**"}}}
	under := func(segs []string) bool {
		var kept []string
		for _, seg := range segs {
			if seg != "" {
				kept = append(kept, seg)
			}
		}
		return len(kept) >= 2 && kept[0] == "v1" && kept[1] == "charges"
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !s.Allows(Request{Host: "api.stripe.com", Method: "GET", Path: p}).Allowed {
			return
		}
		once, err := url.PathUnescape(p)
		if err != nil {
			t.Fatalf("%q allowed with invalid encoding", p)
		}
		if !under(strings.Split(path.Clean(once), "/")) {
			t.Fatalf("%q allowed, decoded it is %q", p, path.Clean(once))
		}
		var segs []string
		for _, seg := range strings.Split(path.Clean(p), "/") {
			d, _ := url.PathUnescape(seg)
			segs = append(segs, d)
		}
		if !under(segs) {
			t.Fatalf("%q allowed, split as sent it is %q", p, segs)
		}
		if twice, err := url.PathUnescape(once); err == nil && !under(strings.Split(path.Clean(twice), "/")) {
			t.Fatalf("%q allowed, decoded twice it is %q", p, path.Clean(twice))
		}
	})
}
