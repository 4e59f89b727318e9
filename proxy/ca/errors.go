package ca

import "errors"

var (
	// ErrInvalidHost is returned when a leaf is asked for a host that is
	// neither a DNS name nor an IP literal.
	ErrInvalidHost = errors.New("ca: invalid host name")

	// ErrCAExpired is returned when the CA is not valid at the current time,
	// so no leaf it signs could be trusted.
	ErrCAExpired = errors.New("ca: CA certificate not valid now")

	// ErrNotCA is returned by Load when the certificate is not a CA
	// certificate allowed to sign leaves, or is not an ECDSA P-256 one.
	ErrNotCA = errors.New("ca: certificate is not a usable ECDSA P-256 CA")

	// ErrCertFormat is returned by Load when the certificate file holds no
	// parseable PEM certificate.
	ErrCertFormat = errors.New("ca: malformed certificate file")

	// ErrKeyFormat is returned by Load when the key file is not a wrapped key
	// file this package wrote, or the unwrapped key is not ECDSA P-256.
	ErrKeyFormat = errors.New("ca: malformed key file")

	// ErrUnwrap is returned by Load when the KMS cannot unwrap the private
	// key: a different KMS key, or a key file that was tampered with.
	ErrUnwrap = errors.New("ca: cannot unwrap CA private key")

	// ErrKeyMismatch is returned by Load when the private key does not
	// belong to the certificate.
	ErrKeyMismatch = errors.New("ca: private key does not match certificate")
)
