package egress

import (
	"context"
	"net/netip"
	"slices"
	"testing"
)

// A pinned name answers however the request writes it; any other name
// goes to the next resolver.
func TestStaticResolver(t *testing.T) {
	next := static("203.0.113.9")
	r := &StaticResolver{Hosts: map[string][]netip.Addr{"api.stripe.com": addrs("127.0.0.1")}, Next: next}
	for _, host := range []string{"api.stripe.com", "API.Stripe.com", "api.stripe.com."} {
		got, err := r.LookupNetIP(context.Background(), "ip", host)
		if err != nil || !slices.Equal(got, addrs("127.0.0.1")) {
			t.Errorf("LookupNetIP(%q) = %v, %v; want the pinned 127.0.0.1", host, got, err)
		}
	}
	if next.Calls() != 0 {
		t.Fatalf("a pinned name asked the next resolver")
	}
	got, err := r.LookupNetIP(context.Background(), "ip", "evil.test")
	if err != nil || !slices.Equal(got, addrs("203.0.113.9")) || next.Calls() != 1 {
		t.Errorf("LookupNetIP(evil.test) = %v, %v after %d calls; want the next resolver's answer", got, err, next.Calls())
	}
}
