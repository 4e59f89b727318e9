package vault

import "context"

// Replace stores a new version (version+1) of an existing credential with
// a new secret, hosts and render form, checked as Put checks them. As with
// Rotate, the previous version's data key and ciphertext are deleted in
// the same transaction. A missing name is ErrNotFound.
func (v *Vault) Replace(ctx context.Context, name string, secret []byte, opts PutOptions) (*Credential, error) {
	const op = "replace"
	if err := v.usable(true); err != nil {
		return nil, vaultErr(op, name, err)
	}
	hosts, err := NormalizeHosts(opts.Hosts)
	if err != nil {
		return nil, vaultErr(op, name, err)
	}
	if err := opts.Render.Validate(); err != nil {
		return nil, vaultErr(op, name, err)
	}
	if err := validateSecret(secret, opts.Render); err != nil {
		return nil, vaultErr(op, name, err)
	}
	return v.nextVersion(ctx, op, name, secret, func(old *record) (*record, error) {
		return &record{Name: name, Version: old.Version + 1, Hosts: hosts, Render: opts.Render.String()}, nil
	})
}
