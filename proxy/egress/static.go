package egress

import (
	"context"
	"net/netip"
	"strings"
)

// StaticResolver answers pinned host names from a table and asks Next for
// the rest (like curl --resolve). Pinned addresses are still checked by the
// Guard that uses it.
type StaticResolver struct {
	Hosts map[string][]netip.Addr // lower-case names
	Next  Resolver
}

// LookupNetIP implements Resolver.
func (r *StaticResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if addrs, ok := r.Hosts[strings.TrimSuffix(strings.ToLower(host), ".")]; ok {
		return addrs, nil
	}
	return r.Next.LookupNetIP(ctx, network, host)
}
