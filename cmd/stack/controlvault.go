package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"go.uber.org/zap"

	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/vault"
	"github.com/stackctl/stack/vault/kms"
)

// openControlVault opens the control plane's vault: the vault.path file,
// or with control.store etcd the records in the store, which every
// replica shares. A vault.path file found then is imported into the store
// once (the first replica to start with one wins), so that moving a
// control plane from bbolt to etcd keeps its credentials.
func (a *app) openControlVault(ctx context.Context, st store.Store, k kms.KMS, log *zap.Logger) (*vault.Vault, error) {
	opts := vault.Options{CacheTTL: a.cfg.Vault.CacheTTL, CacheSize: a.cfg.Vault.CacheSize}
	path := a.cfg.Vault.Path
	if !a.cfg.Control.OnEtcd() {
		v, err := vault.Open(path, k, opts)
		if err != nil {
			return nil, ownedByOther(err, path)
		}
		return v, nil
	}
	v, err := vault.OpenStore(ctx, st, k, opts)
	if err != nil {
		return nil, err
	}
	if err := importVaultFile(ctx, v, path, k, log); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

// importVaultFile imports the vault file at path, if there is one, into v.
func importVaultFile(ctx context.Context, v *vault.Vault, path string, k kms.KMS, log *zap.Logger) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	file, err := vault.Open(path, k, vault.Options{ReadOnly: true, CacheTTL: -1, CacheSize: -1})
	if err != nil {
		return ownedByOther(err, path)
	}
	defer file.Close()
	names, err := v.Import(ctx, file)
	switch {
	case errors.Is(err, vault.ErrExists):
		log.Warn("the vault in etcd is not the one in vault.path, which is left unused", zap.String("file", path))
	case err != nil:
		return fmt.Errorf("importing %s into etcd: %w", path, err)
	case len(names) > 0:
		log.Info("imported credentials from vault.path into etcd; the file is no longer used",
			zap.String("file", path), zap.Strings("credentials", names))
	}
	return nil
}
