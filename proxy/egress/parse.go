package egress

import (
	"net/netip"
	"strings"
)

// ParseHost reports whether host is an IP literal and, if so, its address.
// It accepts what browsers (the WHATWG URL standard) and libc's inet_aton
// accept: IPv4 in one to four dot-separated parts, each decimal, octal
// (leading 0) or hexadecimal (leading 0x), the last part filling the
// remaining bytes (127.1, 127.0.1, 2130706433, 0x7f000001, 0177.0.0.1), with
// an optional trailing dot; and IPv6, optionally in brackets, optionally
// with a zone (fe80::1%eth0; the zone is kept as written and plays no part
// in Check). IPv4-mapped IPv6 (::ffff:127.0.0.1, ::ffff:7f00:1) is returned
// as the IPv4 address. Anything else, including every real host name, returns false.
func ParseHost(host string) (netip.Addr, bool) {
	h := host
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	if strings.Contains(h, ":") {
		a, err := netip.ParseAddr(h)
		if err != nil {
			return netip.Addr{}, false
		}
		if a.Is4In6() {
			a = a.Unmap()
		}
		return a, true
	}
	return parseIPv4(h)
}

// parseIPv4 implements the WHATWG IPv4 parser, which also accepts everything
// inet_aton does.
func parseIPv4(h string) (netip.Addr, bool) {
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return netip.Addr{}, false
	}
	var parts [4]uint64
	n := 0
	for part := range strings.SplitSeq(h, ".") {
		if n == 4 {
			return netip.Addr{}, false
		}
		v, ok := parseIPv4Part(part)
		if !ok {
			return netip.Addr{}, false
		}
		parts[n] = v
		n++
	}
	var ip uint64
	for i := range n - 1 {
		if parts[i] > 255 {
			return netip.Addr{}, false
		}
		ip |= parts[i] << (8 * (3 - i))
	}
	last := parts[n-1]
	if last >= 1<<(8*(5-n)) {
		return netip.Addr{}, false
	}
	ip |= last
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), true
}

// parseIPv4Part parses one part: 0x-prefixed hexadecimal (digits may be
// absent, meaning 0), 0-prefixed octal, or decimal. Values above 2^32 are
// refused, which also stops overflow.
func parseIPv4Part(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	base := uint64(10)
	switch {
	case len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		base, s = 16, s[2:]
	case len(s) >= 2 && s[0] == '0':
		base, s = 8, s[1:]
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		var d uint64
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		v = v*base + d
		if v > 1<<32 {
			return 0, false
		}
	}
	return v, true
}
