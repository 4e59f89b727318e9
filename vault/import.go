package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// Import copies every record of from (a vault file) into v (a vault in a
// control store), as they are: the data keys stay wrapped under the KMS
// key both share, and the fingerprint salt comes along so that
// fingerprints do not change. It is for moving a control plane from its
// vault file to a store that replicas share, and is safe to run from
// several replicas at once and again after an interruption: the first to
// copy the salt wins, each record is created only where the store has
// none. Once an import has run to the end, later ones copy nothing, so a
// credential deleted or replaced through the store does not come back
// from the file. It returns the names it copied. When the store already holds a vault of its own (another salt)
// it copies nothing and returns ErrExists.
func (v *Vault) Import(ctx context.Context, from *Vault) ([]string, error) {
	const op = "import"
	if err := v.usable(true); err != nil {
		return nil, vaultErr(op, "", err)
	}
	if err := from.usable(false); err != nil {
		return nil, vaultErr(op, "", err)
	}
	if !v.shared {
		return nil, vaultErr(op, "", errors.New("the target is not a vault in a control store"))
	}
	if done, _, err := v.recs.meta(ctx, metaImported); err != nil {
		return nil, vaultErr(op, "", err)
	} else if done != nil {
		return nil, nil // imported to the end once: the store is the vault now
	}
	recs, meta, err := from.recs.list(ctx)
	if err != nil {
		return nil, vaultErr(op, "", fmt.Errorf("%s: %w", from.recs.where(), err))
	}
	salt, ok := meta[metaSalt]
	if !ok {
		if len(recs) > 0 {
			return nil, vaultErr(op, "", corrupt("%s has records but no fingerprint salt", from.recs.where()))
		}
		return nil, nil // an empty vault: nothing to copy
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	err = v.recs.apply(ctx, []change{{meta: true, name: metaSalt, rev: 0, data: salt.data}})
	if errors.Is(err, ErrConflict) {
		have, _, merr := v.recs.meta(ctx, metaSalt)
		if merr != nil {
			return nil, vaultErr(op, "", merr)
		}
		if !bytes.Equal(have, salt.data) {
			return nil, vaultErr(op, "", fmt.Errorf("%w: %s already holds a vault of its own", ErrExists, v.recs.where()))
		}
		err = nil // copied by an earlier or concurrent import of the same file
	}
	if err != nil {
		return nil, vaultErr(op, "", err)
	}
	var names []string
	for _, s := range recs {
		if _, err := decodeRecord(s.name, s.data); err != nil {
			return names, vaultErr(op, s.name, err)
		}
		err := v.recs.apply(ctx, []change{{name: s.name, rev: 0, data: s.data}})
		if errors.Is(err, ErrConflict) {
			continue // there already
		}
		if err != nil {
			return names, vaultErr(op, s.name, err)
		}
		names = append(names, s.name)
	}
	err = v.recs.apply(ctx, []change{{meta: true, name: metaImported, rev: 0, data: []byte("1")}})
	if err != nil && !errors.Is(err, ErrConflict) {
		return names, vaultErr(op, "", err)
	}
	v.saltMu.Lock()
	clear(v.salt)
	v.salt = nil // read again: it may be the imported one
	v.saltMu.Unlock()
	return names, nil
}
