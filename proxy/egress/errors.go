package egress

import (
	"errors"
	"fmt"
	"net/netip"
)

var (
	// ErrDenied matches every *DeniedError with errors.Is.
	ErrDenied = errors.New("egress: destination refused")

	// ErrAllowTooBroad is returned by New for an allow prefix shorter than
	// /8, which would disable the guard instead of making an exception.
	ErrAllowTooBroad = errors.New("egress: allow prefix too broad")

	// ErrInvalidPrefix is returned by New for an invalid allow prefix.
	ErrInvalidPrefix = errors.New("egress: invalid allow prefix")

	// ErrNetwork is returned when DialContext is asked for a network other
	// than tcp, tcp4 or tcp6.
	ErrNetwork = errors.New("egress: unsupported network")

	// ErrAddress is returned when DialContext is given an address that is
	// not host:port with a numeric port.
	ErrAddress = errors.New("egress: malformed address")

	// ErrNoAddress is returned when a host name resolves to no address of
	// the requested family.
	ErrNoAddress = errors.New("egress: no address")
)

// DeniedError says why a destination was refused. Host is the name the
// caller asked for (empty when Check was called with a bare address); Addr is
// the refused address; Reason says why, e.g. "loopback" or "link-local
// (cloud metadata)".
type DeniedError struct {
	Host   string
	Addr   netip.Addr
	Reason string
}

func (e *DeniedError) Error() string {
	if e.Host != "" && e.Host != e.Addr.String() {
		return fmt.Sprintf("egress: %s resolves to %s, refused: %s", e.Host, e.Addr, e.Reason)
	}
	return fmt.Sprintf("egress: %s refused: %s", e.Addr, e.Reason)
}

// Is makes errors.Is(err, ErrDenied) true.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }
