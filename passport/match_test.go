package passport

import (
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
