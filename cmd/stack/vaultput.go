package main

import (
	"context"
	"errors"
	"fmt"
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
			c, err = w.Replace(ctx, name, secret, opts)
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
