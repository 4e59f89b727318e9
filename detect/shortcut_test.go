package detect

import (
	"strings"
	"testing"
)

// The reference definitions the allocation-free versions must agree with.

func hostAllowedLowered(host string, hosts []string) bool {
	if host == "" {
		return false
	}
	host = strings.ToLower(host)
	for _, h := range hosts {
		h = strings.ToLower(h)
		if h == host || strings.HasPrefix(h, "*.") && strings.HasSuffix(host, h[1:]) {
			return true
		}
	}
	return false
}

func TestHostAllowedCases(t *testing.T) {
	cases := []struct {
		host  string
		hosts []string
		want  bool
	}{
		{"api.stripe.com", []string{"api.stripe.com"}, true},
		{"API.Stripe.COM", []string{"api.stripe.com"}, true},
		{"api.stripe.com", []string{"API.STRIPE.COM"}, true},
		{"a.example.com", []string{"*.example.com"}, true},
		{"A.EXAMPLE.com", []string{"*.Example.COM"}, true},
		{"example.com", []string{"*.example.com"}, false},
		{"badexample.com", []string{"*.example.com"}, false},
		{"api.stripe.com", []string{"api.stripe.co"}, false},
		{"", []string{""}, false},
		{"x", []string{"*."}, false},
		{"\u212Aey.example", []string{"key.example"}, true}, // the Kelvin sign lower-cases to "k"
		{"İ.example", []string{"i.example"}, true},
		{"ß.example", []string{"SS.example"}, false},
	}
	for _, c := range cases {
		if got := hostAllowed(c.host, c.hosts); got != c.want {
			t.Errorf("hostAllowed(%q, %q) = %v, want %v", c.host, c.hosts, got, c.want)
		}
		if ref := hostAllowedLowered(c.host, c.hosts); ref != c.want {
			t.Errorf("reference hostAllowed(%q, %q) = %v, want %v", c.host, c.hosts, ref, c.want)
		}
	}
}

func FuzzHostAllowed(f *testing.F) {
	for _, s := range [][2]string{{"api.stripe.com", "api.stripe.com"}, {"A.b.C", "*.B.c"}, {"\u212A.x", "k.x"}, {"İ", "i"}, {"x", "*."}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, host, h string) {
		hosts := []string{h}
		if got, want := hostAllowed(host, hosts), hostAllowedLowered(host, hosts); got != want {
			t.Fatalf("hostAllowed(%q, %q) = %v, want %v", host, h, got, want)
		}
	})
}
