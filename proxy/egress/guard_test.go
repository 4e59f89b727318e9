package egress

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func mustNew(t testing.TB, opts Options) *Guard {
	t.Helper()
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// host is parsed with ParseHost, so every spelling goes through the same
// path the proxy uses.
func TestCheck(t *testing.T) {
	g := mustNew(t, Options{})
	tests := []struct {
		name   string
		host   string
		reason string // "" means allowed
	}{
		{"public ipv4", "93.184.216.34", ""},
		{"public ipv4 next to private", "172.32.0.1", ""},
		{"public ipv4 before CGNAT", "100.63.255.255", ""},
		{"public ipv6", "2606:4700::1111", ""},

		{"loopback", "127.0.0.1", "loopback"},
		{"loopback far end", "127.255.255.254", "loopback"},
		{"loopback octal", "0177.0.0.1", "loopback"},
		{"loopback hex", "0x7f.0.0.1", "loopback"},
		{"loopback hex whole", "0x7f000001", "loopback"},
		{"loopback integer", "2130706433", "loopback"},
		{"loopback short", "127.1", "loopback"},
		{"loopback short three", "127.0.1", "loopback"},
		{"loopback ipv6", "::1", "loopback"},
		{"loopback ipv6 brackets", "[::1]", "loopback"},
		{"private 10", "10.1.2.3", reasonPrivate},
		{"private 172.16", "172.16.0.1", reasonPrivate},
		{"private 172.31", "172.31.255.255", reasonPrivate},
		{"private 192.168", "192.168.1.1", reasonPrivate},
		{"private integer", "167772161", reasonPrivate},
		{"CGNAT", "100.64.0.1", "shared address space (CGNAT)"},
		{"CGNAT end", "100.127.255.255", "shared address space (CGNAT)"},
		{"alibaba metadata", "100.100.100.200", "cloud metadata"},
		{"metadata", "169.254.169.254", reasonMetadata},
		{"metadata integer", "2852039166", reasonMetadata},
		{"metadata hex", "0xa9fea9fe", reasonMetadata},
		{"metadata short", "169.254.43518", reasonMetadata},
		{"ECS metadata", "169.254.170.2", reasonMetadata},
		{"metadata ipv6", "fd00:ec2::254", reasonMetadata},
		{"link-local", "169.254.1.1", "link-local"},
		{"link-local ipv6", "fe80::1", "link-local"},
		{"link-local ipv6 zone", "fe80::1%eth0", "link-local"},
		{"link-local ipv6 brackets zone", "[fe80::1%eth0]", "link-local"},
		{"ULA", "fd12:3456::1", "unique local (private)"},
		{"ULA fc", "fc00::1", "unique local (private)"},
		{"unspecified", "0.0.0.0", "unspecified"},
		{"this network", "0.1.2.3", "unspecified"},
		{"unspecified integer", "0", "unspecified"},
		{"unspecified ipv6", "::", "unspecified"},
		{"multicast", "224.0.0.1", "multicast"},
		{"multicast end", "239.255.255.255", "multicast"},
		{"multicast ipv6", "ff02::1", "multicast"},
		{"broadcast", "255.255.255.255", "broadcast"},
		{"broadcast integer", "4294967295", "broadcast"},
		{"reserved class E", "240.0.0.1", reasonReserved},
		{"IETF protocol assignments", "192.0.0.8", "IETF protocol assignments"},
		{"documentation TEST-NET-1", "192.0.2.1", reasonDoc},
		{"documentation TEST-NET-2", "198.51.100.1", reasonDoc},
		{"documentation TEST-NET-3", "203.0.113.1", reasonDoc},
		{"documentation ipv6", "2001:db8::1", reasonDoc},
		{"documentation ipv6 3fff", "3fff::1", reasonDoc},
		{"benchmarking", "198.19.0.1", "benchmarking"},
		{"6to4 relay anycast", "192.88.99.1", "6to4 relay anycast (deprecated)"},
		{"discard-only ipv6", "100::1", "discard-only"},
		{"site-local ipv6", "fec0::1", "site-local (deprecated)"},
		{"Teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo tunnel"},
		{"outside global unicast", "4000::1", "not global unicast"},

		{"mapped loopback", "::ffff:127.0.0.1", "loopback"},
		{"mapped loopback hex", "::ffff:7f00:1", "loopback"},
		{"mapped metadata", "[::ffff:169.254.169.254]", reasonMetadata},
		{"mapped public", "::ffff:93.184.216.34", ""},
		{"compatible loopback", "::127.0.0.1", "IPv4-compatible form of loopback"},
		{"compatible metadata", "::a9fe:a9fe", "IPv4-compatible form of " + reasonMetadata},
		{"compatible public", "::93.184.216.34", "IPv4-compatible (deprecated)"},
		{"SIIT loopback", "::ffff:0:7f00:1", "IPv4-translated form of loopback"},
		{"NAT64 loopback", "64:ff9b::127.0.0.1", "NAT64 form of loopback"},
		{"NAT64 metadata", "64:ff9b::a9fe:a9fe", "NAT64 form of " + reasonMetadata},
		{"NAT64 private", "64:ff9b::10.0.0.1", "NAT64 form of private"},
		{"NAT64 public", "64:ff9b::93.184.216.34", ""},
		{"NAT64 local-use", "64:ff9b:1::1", "NAT64 local-use"},
		{"6to4 loopback", "2002:7f00:1::", "6to4 form of loopback"},
		{"6to4 metadata", "2002:a9fe:a9fe::1", "6to4 form of " + reasonMetadata},
		{"6to4 private", "2002:c0a8:101::", "6to4 form of private"},
		{"6to4 public", "2002:5db8:d822::1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, ok := ParseHost(tt.host)
			if !ok {
				t.Fatalf("ParseHost(%q) failed", tt.host)
			}
			err := g.Check(addr)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Check(%v) = %v, want allowed", addr, err)
				}
				return
			}
			var denied *DeniedError
			if !errors.As(err, &denied) || !errors.Is(err, ErrDenied) {
				t.Fatalf("Check(%v) = %v, want a *DeniedError", addr, err)
			}
			want := tt.reason
			if addr.Is4() {
				// ParseHost unmaps; Check on the mapped form names it.
				if err := g.Check(netip.AddrFrom16(addr.As16())); err == nil ||
					!strings.Contains(err.Error(), "IPv4-mapped form of "+tt.reason) {
					t.Errorf("Check on the mapped form = %v", err)
				}
			}
			if denied.Reason != want || denied.Addr != addr {
				t.Errorf("Check(%v) = %q for %v, want %q", addr, denied.Reason, denied.Addr, want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q does not say %q", err, want)
			}
		})
	}
}

func TestCheckInvalidAddress(t *testing.T) {
	if err := mustNew(t, Options{}).Check(netip.Addr{}); !errors.Is(err, ErrDenied) {
		t.Errorf("Check(zero Addr) = %v, want ErrDenied", err)
	}
}

// Allow prefixes win over the built-in list however they overlap it, and
// match IPv4 addresses in their IPv6 spellings.
func TestAllowPrecedence(t *testing.T) {
	tests := []struct {
		name    string
		allow   []string
		allowed []string
		denied  []string
	}{
		{
			name:    "allow inside a refused range",
			allow:   []string{"10.1.0.0/16"},
			allowed: []string{"10.1.2.3", "::ffff:10.1.2.3", "012.1.0.1"},
			denied:  []string{"10.2.0.1", "10.0.255.255", "127.0.0.1"},
		},
		{
			name:    "allow covering a refused range",
			allow:   []string{"100.0.0.0/8"},
			allowed: []string{"100.64.0.1", "100.100.100.200", "100.1.1.1"},
			denied:  []string{"10.0.0.1", "169.254.169.254"},
		},
		{
			name:    "allow one loopback address",
			allow:   []string{"127.0.0.1/32"},
			allowed: []string{"127.0.0.1", "0x7f000001", "::ffff:127.0.0.1", "64:ff9b::127.0.0.1", "2002:7f00:1::"},
			denied:  []string{"127.0.0.2", "::1"},
		},
		{
			name:    "allow the metadata address explicitly",
			allow:   []string{"169.254.169.254/32"},
			allowed: []string{"169.254.169.254", "2852039166"},
			denied:  []string{"169.254.169.253", "fd00:ec2::254"},
		},
		{
			name:    "allow written as an IPv4-mapped prefix",
			allow:   []string{"::ffff:192.168.0.0/112"},
			allowed: []string{"192.168.3.4", "::ffff:192.168.3.4"},
			denied:  []string{"10.0.0.1", "::ffff:10.0.0.1"},
		},
		{
			name:    "allow an IPv6 ULA prefix",
			allow:   []string{"fd00::/8"},
			allowed: []string{"fd12::1", "fd00:ec2::254"},
			denied:  []string{"fc00::1", "fe80::1"},
		},
		{
			name:    "allow link-local with zone",
			allow:   []string{"fe80::/10"},
			allowed: []string{"fe80::1%eth0"},
			denied:  []string{"fec0::1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := mustNew(t, Options{AllowCIDRs: prefixes(tt.allow...)})
			for _, h := range tt.allowed {
				a, ok := ParseHost(h)
				if !ok {
					t.Fatalf("ParseHost(%q) failed", h)
				}
				if err := g.Check(a); err != nil {
					t.Errorf("%s: %v, want allowed", h, err)
				}
			}
			for _, h := range tt.denied {
				a, ok := ParseHost(h)
				if !ok {
					t.Fatalf("ParseHost(%q) failed", h)
				}
				if err := g.Check(a); !errors.Is(err, ErrDenied) {
					t.Errorf("%s: %v, want denied", h, err)
				}
			}
		})
	}
}

func TestNewRejectsBadAllowPrefixes(t *testing.T) {
	tests := []struct {
		prefix netip.Prefix
		want   error
	}{
		{netip.MustParsePrefix("0.0.0.0/0"), ErrAllowTooBroad},
		{netip.MustParsePrefix("::/0"), ErrAllowTooBroad},
		{netip.MustParsePrefix("0.0.0.0/7"), ErrAllowTooBroad},
		{netip.MustParsePrefix("::ffff:0.0.0.0/96"), ErrAllowTooBroad},
		{netip.MustParsePrefix("::ffff:0.0.0.0/100"), ErrAllowTooBroad},
		{netip.Prefix{}, ErrInvalidPrefix},
	}
	for _, tt := range tests {
		_, err := New(Options{AllowCIDRs: []netip.Prefix{tt.prefix}})
		if !errors.Is(err, tt.want) {
			t.Errorf("New(allow %v) = %v, want %v", tt.prefix, err, tt.want)
		}
	}
	if _, err := New(Options{AllowCIDRs: prefixes("10.0.0.0/8", "fd00::/8", "127.0.0.1/32")}); err != nil {
		t.Errorf("New with /8 and narrower prefixes: %v", err)
	}
}

func TestDeniedErrorMessage(t *testing.T) {
	err := &DeniedError{Host: "evil.test", Addr: netip.MustParseAddr("127.0.0.1"), Reason: "loopback"}
	if got := err.Error(); got != "egress: evil.test resolves to 127.0.0.1, refused: loopback" {
		t.Errorf("Error() = %q", got)
	}
	err.Host = ""
	if got := err.Error(); got != "egress: 127.0.0.1 refused: loopback" {
		t.Errorf("Error() = %q", got)
	}
}

func BenchmarkCheck(b *testing.B) {
	g := mustNew(b, Options{AllowCIDRs: prefixes("10.1.0.0/16")})
	public := netip.MustParseAddr("2606:4700::1111")
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Check(public); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseHost(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := ParseHost("0x7f.0.0.1"); !ok {
			b.Fatal("not parsed")
		}
	}
}
