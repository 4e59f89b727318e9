package egress

import "net/netip"

// Reasons shared by several ranges.
const (
	reasonMetadata = "link-local (cloud metadata)"
	reasonPrivate  = "private"
	reasonDoc      = "documentation"
	reasonReserved = "reserved"
)

type deniedRange struct {
	prefix netip.Prefix
	reason string
}

func r(prefix, reason string) deniedRange {
	return deniedRange{netip.MustParsePrefix(prefix), reason}
}

// deniedV4 is the built-in IPv4 deny list (IANA's special-purpose registry,
// RFC 6890, less the ranges that are ordinary unicast). The first matching
// entry gives the reason, so specific entries come first.
var deniedV4 = []deniedRange{
	r("169.254.169.254/32", reasonMetadata),   // AWS, GCP, Azure, OCI, ...
	r("169.254.170.2/32", reasonMetadata),     // AWS ECS task metadata
	r("100.100.100.200/32", "cloud metadata"), // Alibaba Cloud, inside CGNAT space
	r("0.0.0.0/8", "unspecified"),
	r("10.0.0.0/8", reasonPrivate),
	r("100.64.0.0/10", "shared address space (CGNAT)"),
	r("127.0.0.0/8", "loopback"),
	r("169.254.0.0/16", "link-local"),
	r("172.16.0.0/12", reasonPrivate),
	r("192.0.0.0/24", "IETF protocol assignments"),
	r("192.0.2.0/24", reasonDoc),
	r("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
	r("192.168.0.0/16", reasonPrivate),
	r("198.18.0.0/15", "benchmarking"),
	r("198.51.100.0/24", reasonDoc),
	r("203.0.113.0/24", reasonDoc),
	r("224.0.0.0/4", "multicast"),
	r("255.255.255.255/32", "broadcast"),
	r("240.0.0.0/4", reasonReserved),
}

// deniedV6 is the built-in IPv6 deny list, consulted after the forms that
// embed an IPv4 address. Anything outside 2000::/3 is refused as well.
var deniedV6 = []deniedRange{
	r("fd00:ec2::254/128", reasonMetadata), // AWS IMDS over IPv6
	r("100::/64", "discard-only"),
	r("64:ff9b:1::/48", "NAT64 local-use"),
	r("2001::/32", "Teredo tunnel"),
	r("2001:2::/48", "benchmarking"),
	r("2001:10::/28", reasonReserved+" (ORCHID)"),
	r("2001:20::/28", reasonReserved+" (ORCHIDv2)"),
	r("2001:db8::/32", reasonDoc),
	r("3fff::/20", reasonDoc),
	r("fc00::/7", "unique local (private)"),
	r("fe80::/10", "link-local"),
	r("fec0::/10", "site-local (deprecated)"),
	r("ff00::/8", "multicast"),
}

var (
	v4Compatible  = netip.MustParsePrefix("::/96")
	v4Translated  = netip.MustParsePrefix("::ffff:0:0:0/96") // SIIT, RFC 2765
	nat64         = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour     = netip.MustParsePrefix("2002::/16")
	globalUnicast = netip.MustParsePrefix("2000::/3")
)

// denyReason returns why addr is refused, or "" if it is allowed.
func (g *Guard) denyReason(addr netip.Addr) string {
	if !addr.IsValid() {
		return "invalid address"
	}
	// Prefixes never contain zoned addresses; IPv4-mapped addresses are the
	// IPv4 host they map.
	a := addr.WithZone("")
	mapped := a.Is4In6()
	a = a.Unmap()
	if g.allowed(a) {
		return ""
	}
	if a.Is4() {
		reason := lookup(deniedV4, a)
		if mapped && reason != "" {
			reason = "IPv4-mapped form of " + reason
		}
		return reason
	}
	b := a.As16()
	switch {
	case a == netip.IPv6Unspecified():
		return "unspecified"
	case a == netip.IPv6Loopback():
		return "loopback"
	case v4Compatible.Contains(a):
		return embedded(g, netip.AddrFrom4([4]byte(b[12:16])), "IPv4-compatible", true)
	case v4Translated.Contains(a):
		return embedded(g, netip.AddrFrom4([4]byte(b[12:16])), "IPv4-translated", true)
	case nat64.Contains(a):
		return embedded(g, netip.AddrFrom4([4]byte(b[12:16])), "NAT64", false)
	case sixToFour.Contains(a):
		return embedded(g, netip.AddrFrom4([4]byte(b[2:6])), "6to4", false)
	}
	if reason := lookup(deniedV6, a); reason != "" {
		return reason
	}
	if !globalUnicast.Contains(a) {
		return "not global unicast"
	}
	return ""
}

// embedded judges an IPv6 address by the IPv4 address it carries. Forms
// that are deprecated and never routed (refuseAlways) are refused even when
// the IPv4 address is fine.
func embedded(g *Guard, v4 netip.Addr, form string, refuseAlways bool) string {
	if inner := g.denyReason(v4); inner != "" {
		return form + " form of " + inner
	}
	if refuseAlways {
		return form + " (deprecated)"
	}
	return ""
}

func (g *Guard) allowed(a netip.Addr) bool {
	for _, p := range g.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func lookup(ranges []deniedRange, a netip.Addr) string {
	for _, d := range ranges {
		if d.prefix.Contains(a) {
			return d.reason
		}
	}
	return ""
}
