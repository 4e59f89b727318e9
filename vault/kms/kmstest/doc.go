// Package kmstest gives tests real KMS backends: a local key of their
// own, an in-process Cloud KMS gRPC server, moto's AWS KMS server on
// loopback, the conformance suite every kms backend must pass, and
// Failing, a switch that makes a working KMS refuse to unwrap.
//
// Typical use:
//
//	ep := kmstest.StartGCP(t)
//	kmstest.SetGCPEnv(t, ep)
//	k, err := kms.Open(ctx, "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", kms.Options{})
//
// A test that needs a KMS but is not about one takes kmstest.Local(t).
package kmstest
