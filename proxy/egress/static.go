package egress

import (
	"context"
	"net/netip"

	"github.com/stackctl/stack/hostmatch"
)

// StaticResolver answers pinned host names from a table and asks Next for
// the rest (like curl --resolve). Pinned addresses are still checked by the
// Guard that uses it.
type StaticResolver struct {
	Hosts map[string][]netip.Addr // names as hostmatch.Normalize writes them
	Next  Resolver
}

// LookupNetIP implements Resolver.
func (r *StaticResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if h, err := hostmatch.Normalize(host); err == nil {
		if addrs, ok := r.Hosts[h]; ok {
			return addrs, nil
		}
	}
	return r.Next.LookupNetIP(ctx, network, host)
}
