package handoff

import "errors"

// Why a handoff is refused; every error of Seal and Open wraps one.
var (
	// ErrMalformed: not a handoff (bad JOSE, bad claims, not JSON).
	ErrMalformed = errors.New("handoff: malformed")
	// ErrTooLarge: larger than the size limit.
	ErrTooLarge = errors.New("handoff: too large")
	// ErrDecrypt: it does not decrypt with the recipient's key: sealed to
	// another key, or its ciphertext was changed.
	ErrDecrypt = errors.New("handoff: does not decrypt")
	// ErrSignature: the sender's signature does not verify.
	ErrSignature = errors.New("handoff: bad signature")
	// ErrSender: the sender's passport is not valid, or does not confirm
	// the key that signed, or names another agent.
	ErrSender = errors.New("handoff: sender not proven")
	// ErrWrongRecipient: sealed for another agent.
	ErrWrongRecipient = errors.New("handoff: wrong recipient")
	// ErrSchema: a schema that does not compile, or a bad schema name.
	ErrSchema = errors.New("handoff: bad schema")
	// ErrSchemaViolation: a payload that does not match its schema.
	ErrSchemaViolation = errors.New("handoff: payload does not match its schema")
	// ErrExpired: past its expiry.
	ErrExpired = errors.New("handoff: expired")
)
