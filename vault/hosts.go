package vault

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	labelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// ValidateName reports whether name may name a credential: 1 to 64 of
// a-z, 0-9, '_' and '-', starting with a letter or digit, so that the
// placeholder stk_ph_NAME is one token wherever an agent puts it.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return invalid("name %q: want 1-64 of a-z, 0-9, '_', '-', starting with a letter or digit", name)
	}
	return nil
}

// NormalizeHosts lower-cases, checks, de-duplicates and sorts the hosts a
// credential is bound to. A host is a DNS name (api.stripe.com), an IP
// address, or a wildcard *.example.com that matches exactly one more
// label (a.example.com, not example.com nor a.b.example.com). A wildcard
// needs at least two labels after "*." so that *.com is refused. At least
// one host is required.
func NormalizeHosts(hosts []string) ([]string, error) {
	if len(hosts) == 0 {
		return nil, invalid("at least one host is required")
	}
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		n, err := normalizeHost(h)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func normalizeHost(h string) (string, error) {
	h = strings.ToLower(strings.TrimSpace(h))
	if h == "" {
		return "", invalid("empty host")
	}
	if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		if ip.Zone() != "" {
			return "", invalid("host %q: zoned addresses are not allowed", h)
		}
		return ip.String(), nil
	}
	name := h
	minLabels := 1
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name = rest
		minLabels = 2
	}
	if len(name) > 253 {
		return "", invalid("host %q: longer than 253 characters", h)
	}
	labels := strings.Split(name, ".")
	if len(labels) < minLabels {
		return "", invalid("host %q: a wildcard needs at least two labels after *.", h)
	}
	for _, l := range labels {
		if !labelRE.MatchString(l) {
			return "", invalid("host %q: want a DNS name, an IP address or *.example.com (no ports, no schemes)", h)
		}
	}
	return h, nil
}

// MatchHost reports whether host (as in a request, without port) is
// matched by pattern (a normalized bound host).
func MatchHost(pattern, host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		host = ip.String()
	}
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		label, rest, found := strings.Cut(host, ".")
		return found && label != "" && "."+rest == suffix
	}
	return pattern == host
}
