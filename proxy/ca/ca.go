package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
	"time"
)

const (
	// DefaultValidity is how long a generated CA is valid.
	DefaultValidity = 10 * 365 * 24 * time.Hour

	// LeafValidity is the longest a leaf certificate is valid. Leaves live
	// only in memory and minting one costs well under a millisecond, so a
	// day keeps a leaked leaf key (a core dump, a debugger) short-lived at
	// no real cost; a LeafCache renews them before they expire.
	LeafValidity = 24 * time.Hour

	// Backdate is how far before "now" certificates become valid, so a
	// client whose clock runs a little behind still accepts them.
	Backdate = time.Hour
)

// serialLimit bounds serial numbers to 128 random bits.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// CA is a certificate authority for TLS interception: an ECDSA P-256
// certificate and its private key. It is safe for concurrent use once Now is
// set.
type CA struct {
	// Now is the clock that dates leaves; nil means time.Now. Set it before
	// the CA is shared between goroutines.
	Now func() time.Time

	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

// GenerateOptions tune GenerateWith. The zero value gives the defaults.
type GenerateOptions struct {
	// Validity is how long the CA is valid; zero means DefaultValidity.
	Validity time.Duration
}

// Generate creates a new CA named commonName, valid from now (less
// Backdate) for DefaultValidity.
func Generate(now time.Time, commonName string) (*CA, error) {
	return GenerateWith(now, commonName, GenerateOptions{})
}

// GenerateWith is Generate with options.
func GenerateWith(now time.Time, commonName string, opts GenerateOptions) (*CA, error) {
	validity := opts.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	if validity < 0 {
		return nil, fmt.Errorf("ca: generate: negative validity %v", validity)
	}
	if strings.TrimSpace(commonName) == "" {
		return nil, fmt.Errorf("ca: generate: empty common name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("ca: generate: %w", err)
	}
	skid, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("ca: generate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"STACK"}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Leaves only: a stolen CA could not be used to create sub-CAs that
		// clients would accept.
		MaxPathLen:     0,
		MaxPathLenZero: true,
		SubjectKeyId:   skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca: generate certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: generate certificate: %w", err)
	}
	return newCA(cert, key), nil
}

func newCA(cert *x509.Certificate, key *ecdsa.PrivateKey) *CA {
	return &CA{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
	}
}

// CertPEM returns the CA certificate in PEM, the trust anchor agents
// install. It never contains the private key.
func (c *CA) CertPEM() []byte {
	return append([]byte(nil), c.certPEM...)
}

// Certificate returns the parsed CA certificate. Callers must not modify it.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

func (c *CA) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Leaf mints a server certificate for host, a DNS name or an IP literal
// (IPv6 with or without brackets; a zone is dropped). Every leaf has a fresh
// P-256 key and a random serial, is valid from Backdate before now until
// LeafValidity after it or the CA's own expiry, whichever is first, and
// carries ExtKeyUsageServerAuth. The returned certificate's Leaf is set.
func (c *CA) Leaf(host string) (*tls.Certificate, error) {
	dnsName, ip, err := normalizeHost(host)
	if err != nil {
		return nil, fmt.Errorf("ca: leaf for %q: %w", host, err)
	}
	now := c.now()
	if now.Before(c.cert.NotBefore) || now.After(c.cert.NotAfter) {
		return nil, fmt.Errorf("ca: leaf for %q: %w (valid %s to %s)", host, ErrCAExpired,
			c.cert.NotBefore.UTC().Format(time.RFC3339), c.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	notBefore := now.Add(-Backdate)
	if notBefore.Before(c.cert.NotBefore) {
		notBefore = c.cert.NotBefore
	}
	notAfter := now.Add(LeafValidity)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("ca: leaf for %q: %w", host, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	name := dnsName
	if ip.IsValid() {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
		name = ip.String()
	} else {
		tmpl.DNSNames = []string{dnsName}
	}
	// The common name is ignored by modern clients but still shown by tools;
	// X.509 caps it at 64 characters.
	if len(name) <= 64 {
		tmpl.Subject.CommonName = name
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("ca: sign leaf for %q: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: sign leaf for %q: %w", host, err)
	}
	// The chain holds the leaf only: clients already hold the CA as their
	// trust anchor, and sending it would just cost bytes.
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ServerConfig returns the TLS configuration to present to an agent whose
// CONNECT named host (host or host:port). The certificate is chosen by the
// client's SNI; a client that sends none (it connected to an IP literal)
// gets a leaf for host. Leaves come from cache, or are minted per handshake
// when cache is nil.
//
// NextProtos offers only http/1.1: goproxy reads the intercepted requests
// with its HTTP/1.1 loop, where every inner request passes the proxy's
// handlers. Go's TLS server picks ALPN in its own order of preference, so a
// caller that turns on goproxy's AllowHTTP2 must also put "h2" first here.
func (c *CA) ServerConfig(cache *LeafCache, host string) *tls.Config {
	fallback := stripPort(host)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := hello.ServerName
			if name == "" {
				name = fallback
			}
			if name == "" {
				return nil, fmt.Errorf("ca: no SNI and no CONNECT host: %w", ErrInvalidHost)
			}
			if cache == nil {
				return c.Leaf(name)
			}
			return cache.Fetch(name, func() (*tls.Certificate, error) { return c.Leaf(name) })
		},
	}
}

// stripPort turns "host:port", "[v6]:port", "[v6]" or "host" into the host.
func stripPort(hostport string) string {
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
		h := hostport[:i]
		// A bare IPv6 literal has colons but no port.
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			return h[1 : len(h)-1]
		}
		if !strings.Contains(h, ":") {
			return h
		}
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

// normalizeHost returns host as a lower-case DNS name without a trailing
// dot, or as an IP address (zone dropped, IPv4-mapped unmapped).
func normalizeHost(host string) (string, netip.Addr, error) {
	h := host
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		return "", ip.WithZone("").Unmap(), nil
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if !validDNSName(h) {
		return "", netip.Addr{}, ErrInvalidHost
	}
	return h, netip.Addr{}, nil
}

// validDNSName accepts host names as clients send them in SNI: labels of
// letters, digits, '-' and '_' (seen in real service names), each 1 to 63
// bytes, 253 bytes in all. Wildcards are refused: leaves name exact hosts.
func validDNSName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			switch {
			case b >= 'a' && b <= 'z', b >= '0' && b <= '9', b == '-', b == '_':
			default:
				return false
			}
		}
	}
	return true
}

// randomSerial returns a non-zero serial of 128 bits from crypto/rand.
func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// subjectKeyID is RFC 7093 method 1: the leftmost 160 bits of the SHA-256
// of the subjectPublicKey bit string.
func subjectKeyID(pub *ecdsa.PublicKey) ([]byte, error) {
	raw, err := pub.Bytes()
	if err != nil {
		return nil, fmt.Errorf("subject key id: %w", err)
	}
	sum := sha256.Sum256(raw)
	return sum[:20], nil
}
