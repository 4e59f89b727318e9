package vault

import (
	"context"

	bolt "go.etcd.io/bbolt"
)

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
	old, err := v.readRecord(name)
	if err != nil {
		return nil, vaultErr(op, name, err)
	}

	v.mu.RLock()
	defer v.mu.RUnlock()
	r := &record{Name: name, Version: old.Version + 1, Hosts: hosts, Render: opts.Render.String()}
	if err := v.build(ctx, r, secret); err != nil {
		return nil, vaultErr(op, name, err)
	}
	err = v.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCreds)
		cur := b.Get([]byte(name))
		if cur == nil {
			return ErrNotFound
		}
		now, err := decodeRecord(name, cur)
		if err != nil {
			return err
		}
		if now.Version != old.Version {
			return ErrConflict
		}
		return putRecord(b, r)
	})
	if err != nil {
		return nil, vaultErr(op, name, err)
	}
	v.cache.remove(name)
	return r.credential(), nil
}
