package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/stackctl/stack/vault"
)

// onExisting says what `vault put` does with a name already in the vault.
type onExisting int

const (
	existingFails  onExisting = iota // the default: an error saying what to do
	existingUpdate                   // --update: replace it
	existingKept                     // --if-absent: leave it, exit 0
)

// putCredential stores name, and deals with a name already in the vault
// as when says.
func (a *app) putCredential(ctx context.Context, name string, secret []byte, opts vault.PutOptions, when onExisting) error {
	w, err := a.vaultForWrite(ctx)
	if err != nil {
		return err
	}
	c, err := w.Put(ctx, name, secret, opts)
	replaced := false
	if errors.Is(err, vault.ErrExists) {
		switch when {
		case existingKept:
			fmt.Fprintf(a.stderr, "%s already exists in the vault; left unchanged (--if-absent)\n", name)
			return nil
		case existingUpdate:
			c, err = a.replaceCredential(ctx, w, name, secret, opts)
			replaced = true
		default:
			return fmt.Errorf("vault put: credential %s already exists: pass --update to replace its secret, hosts and render form, or --if-absent to leave it as it is (`stack vault rotate %s` replaces the secret alone)", name, name)
		}
	}
	if err != nil {
		return vaultError(err)
	}
	msg, verb := "credential stored", "stored"
	if replaced {
		msg, verb = "credential replaced", "replaced"
	}
	a.log.Info(msg, zap.String("credential", c.Name), zap.Int("version", c.Version), zap.String("fingerprint", c.Fingerprint))
	fmt.Fprintf(a.stdout, "%s %s version %d for %s (fingerprint %s)\nagents use the placeholder stk_ph_%s\n",
		verb, c.Name, c.Version, strings.Join(c.Hosts, ", "), c.Fingerprint, c.Name)
	return nil
}

// replaceCredential gives an existing credential a new version with the
// secret, hosts and render form given. A running sidecar's admin API can
// rotate a secret but not change the rest, so through it only a
// replacement that keeps hosts and render form is possible.
func (a *app) replaceCredential(ctx context.Context, w vaultWriter, name string, secret []byte, opts vault.PutOptions) (*vault.Credential, error) {
	if v, ok := w.(*vault.Vault); ok {
		return v.Replace(ctx, name, secret, opts)
	}
	v, err := a.openVault(ctx, true) // the sidecar's snapshot
	if err != nil {
		return nil, err
	}
	creds, err := v.List()
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(creds, func(c *vault.Credential) bool { return c.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("vault put: credential %s was removed meanwhile: %w", name, vault.ErrNotFound)
	}
	cur := creds[i]
	hosts, err := vault.NormalizeHosts(opts.Hosts)
	if err != nil {
		return nil, usageError(fmt.Errorf("--host: %w", err))
	}
	if !slices.Equal(hosts, cur.Hosts) || opts.Render.String() != cur.Render.String() {
		return nil, fmt.Errorf("vault put --update: the running sidecar can replace the secret of %s but not its hosts (%s) or render form (%s): stop it, run this again, and start it",
			name, strings.Join(cur.Hosts, ", "), cur.Render)
	}
	return w.Rotate(ctx, name, secret)
}
