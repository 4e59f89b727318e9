// Package egress decides which network addresses the proxy may connect to
// on an agent's behalf, and dials only those: the guard against
// server-side request forgery.
//
// # Basics
//
// A Guard refuses loopback, private, shared (CGNAT), link-local (including
// the cloud metadata addresses 169.254.169.254 and fd00:ec2::254),
// multicast, unspecified, broadcast, documentation, benchmarking and other
// reserved addresses, and IPv6 addresses outside global unicast. IPv6 forms
// that carry an IPv4 address (IPv4-mapped, IPv4-compatible, SIIT, NAT64
// 64:ff9b::/96, 6to4 2002::/16) are judged by the IPv4 address inside them;
// Teredo is refused outright. Every refusal is a *DeniedError naming the
// reason.
//
//	g, err := egress.New(egress.Options{})
//	tr := &http.Transport{DialContext: g.DialContext, Proxy: nil}
//
// DialContext resolves a host name exactly once, checks every address the
// name resolves to, and connects to a checked address by IP, so a DNS
// answer that changes between check and connect (DNS rebinding) cannot
// steer the connection. If any address of a name is refused the whole name
// is refused, as smokescreen does: a name mixing public and internal
// addresses is a misconfiguration or an attack, and the outcome should not
// depend on which address is tried first.
//
// # Allow list and precedence
//
// Options.AllowCIDRs lists prefixes the operator wants reachable despite the
// built-in refusals (a service on the pod's network, a test server on
// loopback). An allow prefix always wins over the built-in list, whether it
// lies inside a refused range (10.1.0.0/16 within 10.0.0.0/8) or covers one
// (100.0.0.0/8 covering 100.64.0.0/10); addresses outside every allow prefix
// are judged by the built-in list alone. Allow prefixes match IPv4 addresses
// in all their IPv6 spellings too. A prefix shorter than /8 (0.0.0.0/0,
// ::/0 and the like) is rejected by New: it would switch the guard off
// rather than make an exception to it.
//
// ParseHost recognises IP literals in every spelling browsers and libc
// accept (octal, hexadecimal, dotted-less integers, short forms, IPv6 with
// brackets and zones), so a literal never reaches a resolver that might
// read it differently.
package egress
