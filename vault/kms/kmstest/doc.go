// Package kmstest runs real KMS servers on loopback for tests: an
// in-process Cloud KMS gRPC server, moto's AWS KMS server, and the
// conformance suite every kms backend must pass.
//
// Typical use:
//
//	ep := kmstest.StartGCP(t)
//	kmstest.SetGCPEnv(t, ep)
//	k, err := kms.Open(ctx, "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", kms.Options{})
package kmstest
