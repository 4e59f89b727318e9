package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultDialTimeout bounds each connection attempt when Options leaves
// DialTimeout zero.
const DefaultDialTimeout = 10 * time.Second

// Resolver turns a host name into addresses; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options configure a Guard. The zero value refuses every built-in range
// and resolves with net.DefaultResolver.
type Options struct {
	// AllowCIDRs are reachable even where the built-in list refuses them.
	// Each must be /8 or longer.
	AllowCIDRs []netip.Prefix
	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver Resolver
	// DialTimeout bounds each connection attempt; zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
}

// Guard checks destinations and dials those it allows. It is safe for
// concurrent use.
type Guard struct {
	allow    []netip.Prefix
	resolver Resolver
	dialer   net.Dialer
	self     atomic.Pointer[selfSet]
}

// selfSet is the proxy's own listeners, refused whatever the allow list
// says.
type selfSet struct {
	exact map[netip.AddrPort]bool
	// anyPorts are ports listened on at an unspecified address: refused on
	// every local address.
	anyPorts map[uint16]bool
	local    map[netip.Addr]bool
}

// RefuseListeners makes the guard refuse the proxy's own listening
// addresses even where an allow prefix covers them, so that an agent
// cannot reach the admin listener, or loop back into the proxy, through
// the proxy. A listener on an unspecified address (0.0.0.0, ::) is refused
// on every address of this host. Each call replaces the previous set.
func (g *Guard) RefuseListeners(addrs ...netip.AddrPort) {
	s := &selfSet{exact: map[netip.AddrPort]bool{}, anyPorts: map[uint16]bool{}, local: map[netip.Addr]bool{}}
	for _, ap := range addrs {
		a := ap.Addr().WithZone("").Unmap()
		if a.IsUnspecified() {
			s.anyPorts[ap.Port()] = true
			continue
		}
		s.exact[netip.AddrPortFrom(a, ap.Port())] = true
	}
	if ifaddrs, err := net.InterfaceAddrs(); err == nil {
		for _, ia := range ifaddrs {
			if p, err := netip.ParsePrefix(ia.String()); err == nil {
				s.local[p.Addr().WithZone("").Unmap()] = true
			}
		}
	}
	g.self.Store(s)
}

// selfReason says why ap is one of the proxy's own listeners, or "".
func (g *Guard) selfReason(ap netip.AddrPort) string {
	s := g.self.Load()
	if s == nil {
		return ""
	}
	a := ap.Addr().WithZone("").Unmap()
	if s.exact[netip.AddrPortFrom(a, ap.Port())] {
		return "the sidecar's own listener"
	}
	if s.anyPorts[ap.Port()] && (a.IsLoopback() || a.IsUnspecified() || s.local[a]) {
		return "the sidecar's own listener"
	}
	return ""
}

// minAllowBits is the shortest allow prefix New accepts.
const minAllowBits = 8

// New validates opts and returns a Guard.
func New(opts Options) (*Guard, error) {
	g := &Guard{resolver: opts.Resolver}
	if g.resolver == nil {
		g.resolver = net.DefaultResolver
	}
	for _, p := range opts.AllowCIDRs {
		if !p.IsValid() {
			return nil, fmt.Errorf("egress: allow %q: %w", p.String(), ErrInvalidPrefix)
		}
		p = p.Masked()
		// An IPv4-mapped prefix means the IPv4 addresses it maps, which is how
		// Check sees them.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Bits() < minAllowBits {
			return nil, fmt.Errorf("egress: allow %s: %w (shorter than /%d would turn the guard off)",
				p, ErrAllowTooBroad, minAllowBits)
		}
		g.allow = append(g.allow, p)
	}
	timeout := opts.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	g.dialer = net.Dialer{Timeout: timeout, ControlContext: g.control}
	return g, nil
}

// Check returns nil if addr may be dialled, or a *DeniedError saying why
// not. An allow prefix containing addr wins over the built-in list.
func (g *Guard) Check(addr netip.Addr) error {
	if reason := g.denyReason(addr); reason != "" {
		return &DeniedError{Addr: addr, Reason: reason}
	}
	return nil
}

// DialContext connects to address ("host:port") over network (tcp, tcp4 or
// tcp6) if the guard allows it. The host is an IP literal in any spelling
// ParseHost accepts, or a name resolved exactly once; every resolved address
// must pass Check, or the dial is refused with a *DeniedError. The checked
// addresses are then tried in order, by IP, until one connects. It fits
// http.Transport.DialContext.
func (g *Guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ipNetwork, err := ipNetworkFor(network)
	if err != nil {
		return nil, err
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("egress: dial %q: %w: %w", address, ErrAddress, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("egress: dial %q: %w: port %q", address, ErrAddress, portStr)
	}
	addrs, err := g.resolve(ctx, ipNetwork, host)
	if err != nil {
		return nil, err
	}
	// All addresses first, then dial: one refused address refuses the name.
	for _, a := range addrs {
		reason := g.denyReason(a)
		if reason == "" {
			reason = g.selfReason(netip.AddrPortFrom(a, uint16(port)))
		}
		if reason != "" {
			return nil, &DeniedError{Host: host, Addr: a, Reason: reason}
		}
	}
	var errs []error
	tried := 0
	for _, a := range addrs {
		a = a.Unmap()
		if (ipNetwork == "ip4" && !a.Is4()) || (ipNetwork == "ip6" && !a.Is6()) {
			continue
		}
		tried++
		conn, err := g.dialer.DialContext(ctx, network, netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if tried == 0 {
		return nil, fmt.Errorf("egress: dial %s: %w for %s", address, ErrNoAddress, network)
	}
	return nil, fmt.Errorf("egress: dial %s: %w", address, errors.Join(errs...))
}

// Dial is DialContext without a context, the shape of goproxy's
// ConnectDial. Prefer DialContext (goproxy's ConnectDialWithReq) so a
// cancelled request stops its dial.
func (g *Guard) Dial(network, address string) (net.Conn, error) {
	return g.DialContext(context.Background(), network, address)
}

func ipNetworkFor(network string) (string, error) {
	switch network {
	case "tcp":
		return "ip", nil
	case "tcp4":
		return "ip4", nil
	case "tcp6":
		return "ip6", nil
	}
	return "", fmt.Errorf("egress: dial %q: %w", network, ErrNetwork)
}

func (g *Guard) resolve(ctx context.Context, ipNetwork, host string) ([]netip.Addr, error) {
	if host == "" {
		return nil, fmt.Errorf("egress: dial: %w: empty host", ErrAddress)
	}
	if a, ok := ParseHost(host); ok {
		return []netip.Addr{a}, nil
	}
	addrs, err := g.resolver.LookupNetIP(ctx, ipNetwork, host)
	if err != nil {
		return nil, fmt.Errorf("egress: resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("egress: resolve %s: %w", host, ErrNoAddress)
	}
	return addrs, nil
}

// control runs just before each connect system call and checks the address
// actually being connected to: a second line behind DialContext's own
// check, so no later change in this file can dial an unchecked address.
func (g *Guard) control(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("egress: connect %q: %w", address, ErrAddress)
	}
	if reason := g.selfReason(ap); reason != "" {
		return &DeniedError{Addr: ap.Addr(), Reason: reason}
	}
	return g.Check(ap.Addr())
}
