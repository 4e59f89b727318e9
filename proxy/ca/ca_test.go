package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/testclock"
)

func TestGenerate(t *testing.T) {
	c := mustGenerate(t, epoch)
	cert := c.Certificate()
	if !cert.IsCA || !cert.BasicConstraintsValid {
		t.Error("not a CA certificate")
	}
	if cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
		t.Errorf("MaxPathLen = %d, MaxPathLenZero = %v; want 0, true", cert.MaxPathLen, cert.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; cert.KeyUsage != want {
		t.Errorf("KeyUsage = %v, want %v", cert.KeyUsage, want)
	}
	if len(cert.SubjectKeyId) != 20 {
		t.Errorf("SubjectKeyId has %d bytes, want 20", len(cert.SubjectKeyId))
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T is not ECDSA P-256", cert.PublicKey)
	}
	if cert.Subject.CommonName != "STACK test CA" {
		t.Errorf("CommonName = %q", cert.Subject.CommonName)
	}
	if got, want := cert.NotAfter.Sub(epoch), DefaultValidity; got != want {
		t.Errorf("valid for %v after now, want %v", got, want)
	}
	if !cert.NotBefore.Before(epoch) {
		t.Errorf("NotBefore %v is not backdated from %v", cert.NotBefore, epoch)
	}
	if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v is not a positive 128-bit number", cert.SerialNumber)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("not self-signed: %v", err)
	}

	block, rest := pem.Decode(c.CertPEM())
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("CertPEM is not exactly one PEM certificate")
	}
	if strings.Contains(string(c.CertPEM()), "PRIVATE") {
		t.Error("CertPEM contains a private key")
	}

	other := mustGenerate(t, epoch)
	if other.Certificate().SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Error("two CAs share a serial")
	}
}

func TestGenerateWithValidity(t *testing.T) {
	c, err := GenerateWith(epoch, "short", GenerateOptions{Validity: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Certificate().NotAfter; !got.Equal(epoch.Add(48 * time.Hour)) {
		t.Errorf("NotAfter = %v", got)
	}
	if _, err := GenerateWith(epoch, "bad", GenerateOptions{Validity: -time.Hour}); err == nil {
		t.Error("negative validity accepted")
	}
	if _, err := Generate(epoch, " "); err == nil {
		t.Error("empty common name accepted")
	}
}

// A client that trusts only the CA completes a real handshake for a DNS
// name (chosen by SNI) and for IP literals (no SNI: the CONNECT host is
// used).
func TestServerConfigHandshake(t *testing.T) {
	c := mustGenerate(t, time.Now())
	tests := []struct {
		name        string
		connectHost string // what the agent's CONNECT named
		serverName  string // what the client verifies (and sends as SNI if a name)
		wantDNS     string
		wantIP      string
	}{
		{name: "dns name by SNI", connectHost: "api.example.test:443", serverName: "api.example.test", wantDNS: "api.example.test"},
		{name: "SNI wins over CONNECT host", connectHost: "203.0.113.7:443", serverName: "api.example.test", wantDNS: "api.example.test"},
		{name: "ipv4 without SNI", connectHost: "127.0.0.1:443", serverName: "127.0.0.1", wantIP: "127.0.0.1"},
		{name: "ipv6 without SNI", connectHost: "[2001:db8::5]:8443", serverName: "2001:db8::5", wantIP: "2001:db8::5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := NewLeafCache(CacheOptions{})
			addr := serveTLS(t, c.ServerConfig(cache, tt.connectHost))
			state, err := dialTLS(addr, tt.serverName, pool(c))
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if state.NegotiatedProtocol != "http/1.1" {
				t.Errorf("ALPN = %q, want http/1.1", state.NegotiatedProtocol)
			}
			if state.Version < tls.VersionTLS12 {
				t.Errorf("TLS version %x below 1.2", state.Version)
			}
			leaf := state.PeerCertificates[0]
			if tt.wantDNS != "" && (len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != tt.wantDNS || len(leaf.IPAddresses) != 0) {
				t.Errorf("SANs = %v %v, want DNS %s", leaf.DNSNames, leaf.IPAddresses, tt.wantDNS)
			}
			if tt.wantIP != "" && (len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP(tt.wantIP)) || len(leaf.DNSNames) != 0) {
				t.Errorf("SANs = %v %v, want IP %s", leaf.DNSNames, leaf.IPAddresses, tt.wantIP)
			}
			if cache.Len() != 1 {
				t.Errorf("cache holds %d leaves, want 1", cache.Len())
			}
		})
	}
}

func TestServerConfigRefusesOldTLS(t *testing.T) {
	c := mustGenerate(t, time.Now())
	addr := serveTLS(t, c.ServerConfig(nil, "api.example.test"))
	conn, err := tls.Dial("tcp", addr, &tls.Config{
		RootCAs: pool(c), ServerName: "api.example.test", MaxVersion: tls.VersionTLS11,
	})
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
}

func TestServerConfigNoName(t *testing.T) {
	c := mustGenerate(t, time.Now())
	cfg := c.ServerConfig(nil, "")
	if _, err := cfg.GetCertificate(&tls.ClientHelloInfo{}); !errors.Is(err, ErrInvalidHost) {
		t.Errorf("err = %v, want ErrInvalidHost", err)
	}
}

// The leaf is only as good as the client's checks: another CA, or another
// host name, must fail verification.
func TestHandshakeFailsVerification(t *testing.T) {
	c := mustGenerate(t, time.Now())
	t.Run("client trusts another CA", func(t *testing.T) {
		addr := serveTLS(t, c.ServerConfig(nil, "api.example.test"))
		_, err := dialTLS(addr, "api.example.test", pool(mustGenerate(t, time.Now())))
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Errorf("err = %v, want x509.UnknownAuthorityError", err)
		}
	})
	t.Run("leaf for another host", func(t *testing.T) {
		leaf, err := c.Leaf("other.example.test")
		if err != nil {
			t.Fatal(err)
		}
		addr := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{*leaf}})
		_, err = dialTLS(addr, "api.example.test", pool(c))
		var hostErr x509.HostnameError
		if !errors.As(err, &hostErr) {
			t.Errorf("err = %v, want x509.HostnameError", err)
		}
	})
}

func TestLeaf(t *testing.T) {
	clock := testclock.New(epoch.Add(24 * time.Hour))
	c := mustGenerate(t, epoch)
	c.Now = clock.Now
	tests := []struct {
		host    string
		wantDNS string
		wantIP  string
	}{
		{host: "api.example.test", wantDNS: "api.example.test"},
		{host: "API.Example.TEST.", wantDNS: "api.example.test"},
		{host: "_svc.example.test", wantDNS: "_svc.example.test"},
		{host: "127.0.0.1", wantIP: "127.0.0.1"},
		{host: "[::1]", wantIP: "::1"},
		{host: "fe80::1%eth0", wantIP: "fe80::1"},
		{host: "::ffff:127.0.0.1", wantIP: "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			tc, err := c.Leaf(tt.host)
			if err != nil {
				t.Fatal(err)
			}
			leaf := tc.Leaf
			if leaf == nil {
				t.Fatal("Leaf field not populated")
			}
			if _, ok := tc.PrivateKey.(*ecdsa.PrivateKey); !ok {
				t.Errorf("private key is %T", tc.PrivateKey)
			}
			if leaf.IsCA {
				t.Error("leaf is a CA")
			}
			if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
				t.Errorf("ExtKeyUsage = %v", leaf.ExtKeyUsage)
			}
			if !leaf.NotBefore.Equal(clock.Now().Add(-Backdate)) || !leaf.NotAfter.Equal(clock.Now().Add(LeafValidity)) {
				t.Errorf("valid %v to %v", leaf.NotBefore, leaf.NotAfter)
			}
			name := tt.wantDNS
			if tt.wantIP != "" {
				name = tt.wantIP
				if len(leaf.DNSNames) != 0 || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP(tt.wantIP)) {
					t.Errorf("SANs = %v %v", leaf.DNSNames, leaf.IPAddresses)
				}
			} else if len(leaf.IPAddresses) != 0 || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != tt.wantDNS {
				t.Errorf("SANs = %v %v", leaf.DNSNames, leaf.IPAddresses)
			}
			_, err = leaf.Verify(x509.VerifyOptions{
				DNSName:     name,
				Roots:       pool(c),
				CurrentTime: clock.Now(),
				KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}
}

// Leaves never share a serial or a key, even for the same host.
func TestLeafFreshSerialAndKey(t *testing.T) {
	c := mustGenerate(t, time.Now())
	serials := map[string]bool{}
	keys := map[string]bool{}
	for i := range 20 {
		tc, err := c.Leaf("api.example.test")
		if err != nil {
			t.Fatal(err)
		}
		s := tc.Leaf.SerialNumber
		if s.Sign() <= 0 || s.BitLen() > 128 {
			t.Errorf("serial %v is not a positive 128-bit number", s)
		}
		if serials[s.String()] {
			t.Fatalf("serial repeated after %d leaves", i)
		}
		serials[s.String()] = true
		pub, err := tc.PrivateKey.(*ecdsa.PrivateKey).PublicKey.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if keys[string(pub)] {
			t.Fatalf("key repeated after %d leaves", i)
		}
		keys[string(pub)] = true
	}
}

func TestLeafValidityClampedToCA(t *testing.T) {
	c, err := GenerateWith(epoch, "short", GenerateOptions{Validity: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	clock := testclock.New(epoch.Add(-30 * time.Minute)) // just inside the CA's backdated start
	c.Now = clock.Now

	tc, err := c.Leaf("api.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if !tc.Leaf.NotBefore.Equal(c.Certificate().NotBefore) {
		t.Errorf("NotBefore %v earlier than the CA's %v", tc.Leaf.NotBefore, c.Certificate().NotBefore)
	}
	if !tc.Leaf.NotAfter.Equal(c.Certificate().NotAfter) {
		t.Errorf("NotAfter %v, want the CA's %v", tc.Leaf.NotAfter, c.Certificate().NotAfter)
	}

	for _, at := range []time.Time{epoch.Add(3 * time.Hour), epoch.Add(-2 * time.Hour)} {
		clock.Set(at)
		if _, err := c.Leaf("api.example.test"); !errors.Is(err, ErrCAExpired) {
			t.Errorf("at %v: err = %v, want ErrCAExpired", at, err)
		}
	}
}

func TestLeafInvalidHost(t *testing.T) {
	c := mustGenerate(t, time.Now())
	for _, host := range []string{
		"", ".", "a b", "*.example.test", "api.example.test:443", "a..b", "exa/mple",
		strings.Repeat("a", 64) + ".test", strings.Repeat("abcdefghi.", 26) + "test", "ünï.test",
	} {
		if _, err := c.Leaf(host); !errors.Is(err, ErrInvalidHost) {
			t.Errorf("Leaf(%q) err = %v, want ErrInvalidHost", host, err)
		}
	}
}

func TestStripPort(t *testing.T) {
	for in, want := range map[string]string{
		"api.example.test:443": "api.example.test",
		"api.example.test":     "api.example.test",
		"127.0.0.1:8443":       "127.0.0.1",
		"[::1]:443":            "::1",
		"[::1]":                "::1",
		"::1":                  "::1",
		"fe80::1%eth0":         "fe80::1%eth0",
		"":                     "",
	} {
		if got := stripPort(in); got != want {
			t.Errorf("stripPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func ExampleGenerate() {
	c, err := Generate(time.Now(), "STACK sidecar CA")
	if err != nil {
		panic(err)
	}
	leaf, err := c.Leaf("api.stripe.com")
	if err != nil {
		panic(err)
	}
	fmt.Println(c.Certificate().IsCA, leaf.Leaf.DNSNames, leaf.Leaf.CheckSignatureFrom(c.Certificate()) == nil)
	// Output: true [api.stripe.com] true
}
