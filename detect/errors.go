package detect

import "errors"

// Sentinel errors returned (wrapped, with the operation named) by this
// package. Check them with errors.Is.
var (
	// ErrInvalidPolicy is returned by NewGrid, SetPolicy and
	// Policy.Validate for a policy that cannot be applied as written: an
	// unknown mode or action, a rule without detectors or window, a
	// suppression that names nothing, or a detector name the grid does not
	// run.
	ErrInvalidPolicy = errors.New("detect: invalid policy")
	// ErrInvalidOptions is returned by constructors for options that make
	// no sense (a negative window, a detector registered twice, a webhook
	// URL that is not http or https).
	ErrInvalidOptions = errors.New("detect: invalid options")
	// ErrStoreLocked is returned by OpenStore when another process holds
	// the state file and did not release it within StoreOptions.Timeout.
	ErrStoreLocked = errors.New("detect: state store is locked by another process")
	// ErrNotStore is returned by OpenStore for a bbolt file that is not a
	// detector state store (for instance the audit log or the vault).
	ErrNotStore = errors.New("detect: not a detector state store")
	// ErrStoreClosed is returned by Save and Load after Close.
	ErrStoreClosed = errors.New("detect: state store closed")
	// ErrBadState is returned by UnmarshalState (and so by Store.Load) for
	// saved state that does not decode, is of an unknown version, or was
	// learned with options that differ from the detector's (another
	// learning window, for instance). The detector's state is left as it
	// was.
	ErrBadState = errors.New("detect: saved state unusable")
	// ErrWebhookClosed is returned by Webhook.Start after Close, and when
	// Start is called twice.
	ErrWebhookClosed = errors.New("detect: webhook closed or already started")
)
