// Package handofftest changes sealed handoffs as an attacker on the way
// would, for tests that check they are refused.
package handofftest

import "strings"

// FlipCiphertext changes one character of a compact JWE's ciphertext.
func FlipCiphertext(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 5 || parts[3] == "" {
		return tok + "x"
	}
	c := []byte(parts[3])
	if c[0] == 'A' {
		c[0] = 'B'
	} else {
		c[0] = 'A'
	}
	parts[3] = string(c)
	return strings.Join(parts, ".")
}
