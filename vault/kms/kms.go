// Package kms wraps and unwraps small secrets (data keys, signing keys)
// under a key held by a key management service: a local key file, GCP
// Cloud KMS or AWS KMS, chosen by URI.
package kms

import "context"

// KMS wraps small secrets under a key it holds. Implementations are safe
// for concurrent use.
type KMS interface {
	// URI names the key, e.g. "local:///home/u/.stack/kms.key" or
	// "awskms://alias/stack".
	URI() string
	// Wrap encrypts plaintext bound to aad (additional authenticated data);
	// Unwrap with different aad fails.
	Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	// Unwrap reverses Wrap.
	Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error)
	// Close releases clients and connections; it is idempotent.
	Close() error
}
