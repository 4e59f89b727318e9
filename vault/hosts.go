package vault

import (
	"regexp"
	"slices"

	"github.com/stackctl/stack/hostmatch"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidateName reports whether name may name a credential: 1 to 64 of
// a-z, 0-9, '_' and '-', starting with a letter or digit, so that the
// placeholder stk_ph_NAME is one token wherever an agent puts it.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return invalid("name %q: want 1-64 of a-z, 0-9, '_', '-', starting with a letter or digit", name)
	}
	return nil
}

// NormalizeHosts checks, normalizes, de-duplicates and sorts the hosts a
// credential is bound to: host patterns as hostmatch.Pattern reads them
// (api.stripe.com, an IP address, or *.example.com, which matches exactly
// one more label). At least one host is required.
func NormalizeHosts(hosts []string) ([]string, error) {
	if len(hosts) == 0 {
		return nil, invalid("at least one host is required")
	}
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		n, err := hostmatch.Pattern(h)
		if err != nil {
			return nil, invalid("host %q: %v; want a DNS name, an IP address or *.example.com", h, err)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
