// Package ca is the sidecar's own certificate authority for TLS
// interception: it creates and stores the CA, and mints the per-host leaf
// certificates the proxy presents to agents.
//
// # Basics
//
// Generate creates an ECDSA P-256 CA that may sign leaves but no further
// CAs (MaxPathLen 0). Save writes its certificate in PEM (mode 0644) and its
// private key wrapped by a KMS (see Wrapper) in a small JSON file (mode
// 0600); Load reads both back and checks that the key belongs to the
// certificate. CertPEM is what agents install as a trust anchor.
//
//	c, err := ca.Generate(time.Now(), "STACK sidecar CA")
//	err = c.Save(ctx, "mitm-ca.pem", "mitm-ca.key.json", kms)
//	c, err = ca.Load(ctx, "mitm-ca.pem", "mitm-ca.key.json", kms)
//
// Leaf mints a certificate for one host name or IP literal, with a fresh
// key every time and a random 128-bit serial. A LeafCache keeps recently
// used leaves (bounded, least recently used first out, renewed before they
// expire) and lets concurrent first requests for one host share a single
// mint. ServerConfig ties them together into the *tls.Config presented to
// an agent's TLS client:
//
//	cache := ca.NewLeafCache(ca.CacheOptions{})
//	cfg := c.ServerConfig(cache, connectHost)
//
// # Caveats
//
// The package never uses goproxy's bundled CA or its way of deriving leaf
// keys from the CA key and the host name: every leaf key comes from
// crypto/rand and lives only in memory. A LeafCache belongs to one CA; use a
// new cache after loading a different CA. Leaves last at most LeafValidity
// and never outlive the CA.
package ca
