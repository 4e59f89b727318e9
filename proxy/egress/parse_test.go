package egress

import (
	"net/netip"
	"testing"
)

func TestParseHost(t *testing.T) {
	tests := []struct {
		name string
		host string
		want string // "" means not an IP literal
	}{
		{"dotted decimal", "127.0.0.1", "127.0.0.1"},
		{"dotted decimal public", "93.184.216.34", "93.184.216.34"},
		{"trailing dot", "127.0.0.1.", "127.0.0.1"},
		{"octal first part", "0177.0.0.1", "127.0.0.1"},
		{"octal all parts", "0177.00.00.01", "127.0.0.1"},
		{"hex first part", "0x7f.0.0.1", "127.0.0.1"},
		{"hex upper case", "0X7F.0X0.0X0.0X1", "127.0.0.1"},
		{"hex whole", "0x7f000001", "127.0.0.1"},
		{"hex whole metadata", "0xA9FEA9FE", "169.254.169.254"},
		{"integer", "2130706433", "127.0.0.1"},
		{"integer metadata", "2852039166", "169.254.169.254"},
		{"integer zero", "0", "0.0.0.0"},
		{"integer max", "4294967295", "255.255.255.255"},
		{"short two parts", "127.1", "127.0.0.1"},
		{"short three parts", "127.0.1", "127.0.0.1"},
		{"short metadata", "169.254.43518", "169.254.169.254"},
		{"short with big last part", "10.65535", "10.0.255.255"},
		{"mixed bases", "0x7f.0.0001", "127.0.0.1"},
		{"mixed octal hex decimal", "0251.0xfe.43518", "169.254.169.254"},
		{"bare 0x is zero", "0x.0.0.1", "0.0.0.1"},
		{"ipv6 loopback", "::1", "::1"},
		{"ipv6 brackets", "[::1]", "::1"},
		{"ipv6 zone", "fe80::1%eth0", "fe80::1%eth0"},
		{"ipv6 brackets and zone", "[fe80::1%eth0]", "fe80::1%eth0"},
		{"ipv4-mapped dotted", "::ffff:127.0.0.1", "127.0.0.1"},
		{"ipv4-mapped hex", "::ffff:7f00:1", "127.0.0.1"},
		{"ipv4-mapped brackets", "[::ffff:169.254.169.254]", "169.254.169.254"},
		{"ipv4-mapped long form", "0:0:0:0:0:ffff:7f00:0001", "127.0.0.1"},
		{"ipv4-compatible stays v6", "::127.0.0.1", "::7f00:1"},
		{"nat64 stays v6", "64:ff9b::7f00:1", "64:ff9b::7f00:1"},
		{"6to4 stays v6", "2002:7f00:1::", "2002:7f00:1::"},
		{"ipv6 upper case", "FE80::1", "fe80::1"},
		{"brackets around ipv4", "[127.0.0.1]", "127.0.0.1"},

		{"host name", "api.example.test", ""},
		{"single label", "localhost", ""},
		{"numeric label in name", "1.2.3.example", ""},
		{"empty", "", ""},
		{"lone dot", ".", ""},
		{"empty part", "127..1", ""},
		{"leading dot", ".127.0.0.1", ""},
		{"two trailing dots", "127.0.0.1..", ""},
		{"five parts", "1.2.3.4.5", ""},
		{"part over 255", "256.0.0.1", ""},
		{"last part over range", "1.2.3.256", ""},
		{"short last part over range", "127.16777216", ""},
		{"integer over 32 bits", "4294967296", ""},
		{"huge integer", "99999999999999999999999", ""},
		{"bad octal digit", "08.0.0.1", ""},
		{"bad hex digit", "0x7g.0.0.1", ""},
		{"sign", "+127.0.0.1", ""},
		{"space", "127.0.0.1 ", ""},
		{"host:port", "127.0.0.1:80", ""},
		{"bad ipv6", "fe80:::1", ""},
		{"ipv6 with port in brackets", "[::1]:443", ""},
		{"unbalanced bracket", "[::1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseHost(tt.host)
			if tt.want == "" {
				if ok {
					t.Fatalf("ParseHost(%q) = %v, true; want not an IP", tt.host, got)
				}
				return
			}
			if !ok {
				t.Fatalf("ParseHost(%q) not an IP; want %s", tt.host, tt.want)
			}
			if want := netip.MustParseAddr(tt.want); got != want {
				t.Errorf("ParseHost(%q) = %v, want %v", tt.host, got, want)
			}
		})
	}
}

func FuzzParseHost(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1", "0177.0.0.1", "0x7f.0.0.1", "0x7f000001", "2130706433", "127.1", "127.0.1",
		"[fe80::1%eth0]", "::ffff:127.0.0.1", "::ffff:7f00:1", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::",
		"api.example.test", "[::1]", "1.2.3.4.", "0x", "::127.0.0.1", "fd00:ec2::254",
	} {
		f.Add(s)
	}
	g, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host string) {
		a, ok := ParseHost(host)
		// Whatever netip accepts is an IP literal to ParseHost too, and the
		// same address.
		if std, err := netip.ParseAddr(host); err == nil && (!ok || a != std.Unmap()) {
			t.Fatalf("ParseHost(%q) = %v, %v; netip says %v", host, a, ok, std)
		}
		if !ok {
			return
		}
		if !a.IsValid() {
			t.Fatalf("ParseHost(%q) returned an invalid address as an IP", host)
		}
		canon, err := netip.ParseAddr(a.String())
		if err != nil {
			t.Fatalf("ParseHost(%q) = %v, which netip cannot parse back: %v", host, a, err)
		}
		got, want := g.Check(a), g.Check(canon)
		if (got == nil) != (want == nil) {
			t.Fatalf("ParseHost(%q) = %v: Check says %v, on canonical %v says %v", host, a, got, canon, want)
		}
		if unmapped := g.Check(canon.Unmap()); (unmapped == nil) != (want == nil) {
			t.Fatalf("ParseHost(%q): Check disagrees between %v and its unmapped form", host, canon)
		}
	})
}
