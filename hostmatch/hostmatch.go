// Package hostmatch says what a host is and which hosts a host pattern
// names. Every part of STACK that ties something to a host asks it: the
// vault's credential bindings, the injector, passport grants, the
// exfiltration detector, detector suppressions and the proxy's tunnel
// list, so that a credential refused for a host is refused, and reported,
// everywhere alike.
//
// # Hosts
//
// Normalize writes a host the one way every comparison uses:
//
//   - ASCII letters are lower-cased: case never matters.
//   - A port is dropped (api.example.com:443, [::1]:8443): a host is the
//     same on every port. Patterns never carry one.
//   - One trailing dot is dropped (api.example.com.).
//   - An IP address loses its brackets and is written canonically
//     (2001:db8::1); an IPv4-mapped IPv6 address is written as IPv4.
//   - A DNS name is labels of 1 to 63 letters, digits, '-' and '_', not
//     starting or ending with '-', at most 253 bytes in all. Its last label
//     is not all digits: 127.1 and 010.0.0.1 are addresses in forms some
//     parsers read differently, not names, and are refused.
//   - Refused: the empty string, white space, IPv6 zones (fe80::1%eth0),
//     non-ASCII names (write the xn-- form: a name that only IDNA mapping
//     makes equal to a pattern is a different name here), and anything
//     else that is not a host.
//
// # Patterns
//
// A pattern is a host (a DNS name or an IP address) or a wildcard: "*."
// followed by a DNS name of at least two labels (*.example.com, not *.com
// nor * alone). Pattern checks one and writes it normalized; white space
// around it is ignored. Check patterns when they are configured, so that a
// bad one is a clear error instead of a host that never matches.
//
// # Matching
//
// Match(pattern, host) is true when
//
//   - the pattern is a host and the host is the same host, or
//   - the pattern is *.example.com and the host is example.com with exactly
//     one more label in front: a.example.com, not example.com, not
//     a.b.example.com. This is the TLS certificate rule (RFC 6125): a
//     wildcard never widens to deeper names, so a credential bound to
//     *.example.com is never sent to a host its owner did not name.
//
// An IP address matches only the same address, never a wildcard. Match
// normalizes both sides itself, so a host may be passed as a request names
// it (with a port); a pattern or host that is not valid matches nothing.
// Covers(parent, child) says whether one pattern names every host another
// does, which is how a delegated passport's hosts are checked against its
// parent's.
package hostmatch

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrInvalid is wrapped by every error of Normalize and Pattern.
var ErrInvalid = errors.New("invalid host")

// Normalize returns host as every comparison writes it (see the package
// doc), or an error wrapping ErrInvalid that says what is wrong.
func Normalize(host string) (string, error) {
	var h parsed
	if why := h.parse(host, false); why != "" {
		return "", invalid(host, why)
	}
	return h.String(), nil
}

// Pattern returns pattern normalized, or an error wrapping ErrInvalid that
// says what is wrong. A wildcard is returned as "*." and the normalized
// name.
func Pattern(pattern string) (string, error) {
	var p parsed
	if why := p.parse(pattern, true); why != "" {
		return "", invalid(pattern, why)
	}
	if p.wild {
		return "*." + strings.ToLower(p.name), nil
	}
	return p.String(), nil
}

// Match reports whether pattern names host. Both are normalized first: a
// host may carry a port; an invalid pattern or host matches nothing.
func Match(pattern, host string) bool {
	var h parsed
	return h.parse(host, false) == "" && h.matchedBy(pattern)
}

// MatchAny reports whether any of patterns names host.
func MatchAny(patterns []string, host string) bool {
	var h parsed
	if h.parse(host, false) != "" {
		return false
	}
	for _, p := range patterns {
		if h.matchedBy(p) {
			return true
		}
	}
	return false
}

// Covers reports whether pattern parent names every host pattern child
// names: the same pattern, or a wildcard that names child's one host. A
// wildcard child is covered only by the same wildcard. Delegation uses it:
// a delegated grant may narrow its parent's hosts, never widen them.
func Covers(parent, child string) bool {
	c, err := Pattern(child)
	if err != nil {
		return false
	}
	p, err := Pattern(parent)
	if err != nil {
		return false
	}
	return p == c || !strings.HasPrefix(c, "*.") && Match(p, c)
}

// parsed is a host or pattern, read without copying: name is a substring
// of what was parsed, in its original case.
type parsed struct {
	name string     // a DNS name, without "*." and trailing dot; "" for an address
	addr netip.Addr // the address, when name is ""
	wild bool       // name came after "*."
}

// String writes a host (not a wildcard) normalized. It allocates only when
// the input was not already written that way.
func (h *parsed) String() string {
	if h.name != "" {
		return strings.ToLower(h.name)
	}
	return h.addr.String()
}

// matchedBy reports whether pattern names h.
func (h *parsed) matchedBy(pattern string) bool {
	if h.name != "" && pattern == h.name {
		// A valid name is a valid pattern naming itself: the common
		// case of a request to a bound host, decided without parsing.
		return true
	}
	var p parsed
	switch {
	case p.parse(pattern, true) != "":
		return false
	case p.name == "":
		return h.name == "" && p.addr == h.addr
	case h.name == "":
		return false
	case p.wild:
		// One label, then exactly the pattern's name.
		dot := strings.IndexByte(h.name, '.')
		return dot > 0 && asciiEqualFold(h.name[dot+1:], p.name)
	}
	return asciiEqualFold(h.name, p.name)
}

// parse reads s into h as a host (pattern false: a port is allowed, a
// wildcard is not) or as a pattern (white space around it is ignored, a
// wildcard is allowed, a port is not). It returns "" when s is valid, else
// what is wrong. It allocates nothing: it runs for every pattern on every
// request.
func (h *parsed) parse(s string, pattern bool) (why string) {
	if pattern {
		s = strings.TrimSpace(s)
	}
	// Most hosts and patterns are plain names: read s as one first, and
	// look for a port, brackets or a wildcard only when that fails.
	if why = h.parseName(s); why == "" || !strings.ContainsAny(s, "[:*") {
		return why
	}
	*h = parsed{}
	host, port, hasPort, v6, why := splitPort(s)
	switch {
	case why != "":
		return why
	case hasPort && pattern:
		return "no port: a pattern matches every port"
	case hasPort && !validPort(port):
		return "bad port"
	case v6:
		return h.parseIPv6(host)
	case !pattern:
		return h.parseName(host)
	case host == "*":
		return "* alone would match every name: list the hosts, or use *.example.com"
	}
	rest, wild := strings.CutPrefix(host, "*.")
	if !wild {
		return h.parseName(host)
	}
	switch why := h.parseName(rest); {
	case why != "":
		return why
	case h.name == "":
		return "a wildcard covers names, not addresses"
	case strings.IndexByte(h.name, '.') < 0:
		return `a wildcard needs at least two labels after "*." (e.g. *.example.com)`
	}
	h.wild = true
	return ""
}

// splitPort splits s into the host and the port, if any. A bracketed host
// must be an IPv6 address; an unbracketed one with two or more colons is
// an IPv6 address without a port. v6 says the host has a colon: it can
// only be an IPv6 address.
func splitPort(s string) (host, port string, hasPort, v6 bool, why string) {
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", false, false, "unclosed '['"
		}
		host, rest := s[1:end], s[end+1:]
		if strings.IndexByte(host, ':') < 0 {
			return "", "", false, false, "only an IPv6 address goes in brackets"
		}
		if rest == "" {
			return host, "", false, true, ""
		}
		if rest[0] != ':' {
			return "", "", false, false, "text after ']'"
		}
		return host, rest[1:], true, true, ""
	}
	first := strings.IndexByte(s, ':')
	if first < 0 {
		return s, "", false, false, ""
	}
	if strings.IndexByte(s[first+1:], ':') >= 0 {
		return s, "", false, true, ""
	}
	return s[:first], s[first+1:], true, false, ""
}

// validPort accepts the empty port (host:) and decimal ports to 65535.
func validPort(p string) bool {
	if len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n <= 65535
}

func (h *parsed) parseIPv6(s string) (why string) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() {
		return "not an IPv6 address"
	}
	if a.Zone() != "" {
		return "an IPv6 zone names an interface, not a host"
	}
	h.addr = a.Unmap()
	return ""
}

// parseName reads a DNS name or a dotted-decimal IPv4 address, with an
// optional trailing dot, in one pass over its bytes.
func (h *parsed) parseName(s string) (why string) {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return "empty host"
	}
	if len(s) > 253 {
		return "longer than 253 bytes"
	}
	n, digits := 0, true // the current label's length; is it all digits so far
	for i := 0; i < len(s); i++ {
		c := s[i]
		class := nameByte[c]
		if class == letter { // most of any name: decided first
			n++
			digits = false
			continue
		}
		switch class {
		case digit:
			n++
		case hyphen:
			if n == 0 {
				return "label starts with '-'"
			}
			n++
			digits = false
		case dot:
			if why := endLabel(s[:i], n); why != "" {
				return why
			}
			n, digits = 0, true
		default:
			return badByte(c)
		}
	}
	if why := endLabel(s, n); why != "" {
		return why
	}
	if digits {
		// The last label is a number: an IPv4 address, written in full.
		a, err := netip.ParseAddr(s)
		if err != nil {
			return "ends in a number but is not an IPv4 address a.b.c.d"
		}
		h.addr = a
		return ""
	}
	h.name = s
	return ""
}

// endLabel checks the label of n bytes that ends s.
func endLabel(s string, n int) string {
	switch {
	case n == 0:
		return "empty label"
	case n > 63:
		return "label longer than 63 bytes"
	case s[len(s)-1] == '-':
		return "label ends with '-'"
	}
	return ""
}

// Classes of the bytes of a DNS name; 0 is any other byte.
const (
	digit = 1 + iota
	letter
	hyphen
	dot
)

var nameByte = func() (class [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		class[c] = digit
	}
	for c := 'a'; c <= 'z'; c++ {
		class[c], class[c-'a'+'A'] = letter, letter
	}
	class['_'], class['-'], class['.'] = letter, hyphen, dot
	return class
}()

func badByte(c byte) string {
	switch {
	case c == '*':
		return `'*' is allowed only in a pattern, as its whole first label "*."`
	case c >= 0x80:
		return "not ASCII: write the name's xn-- form"
	}
	return "character not allowed in a host name"
}

// asciiEqualFold reports whether ASCII strings a and b are equal ignoring
// case.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// invalid says why s is refused; a URL is refused for being one, whatever
// part of it the parser tripped on.
func invalid(s, why string) error {
	if strings.ContainsAny(s, "/@") {
		why = "a host, not a URL: no scheme, user or path"
	}
	return fmt.Errorf("%w: %s", ErrInvalid, why)
}
