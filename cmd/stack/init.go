package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackctl/stack/config"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/proxy/ca"
	"github.com/stackctl/stack/vault/kms"
)

func newInitCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the data directory: KMS key, issuer keys and a commented stack.yaml",
		Long: `init creates the data directory (mode 0700) with:

  stack.yaml        every setting at its default, each explained
  kms.key           the local KMS key: 32 random bytes, mode 0600, used when
                    kms.uri is local:// (the default; for development only)
  issuer-keys.json  the passport issuer's Ed25519 key, wrapped by the KMS
  ca.pem            the interception CA agents trust (stack ca export)
  ca-key.json       its ECDSA P-256 private key, wrapped by the KMS

With --control, for a control plane (stack control), also:

  control-ca.pem    the CA of the control plane's TLS certificates, which
                    sidecars and CLIs trust (stack control ca export)
  control-ca-key.json  its private key, wrapped by the KMS
  control.token     the operator token CLIs send (mode 0600)

Running it again never overwrites anything: it says what already exists and
creates only what is missing. With kms.uri set to gcpkms:// or awskms://
(in stack.yaml or STACK_KMS_URI) no local key is created and the issuer key
is wrapped by that KMS.`,
		Example: `  stack init
  stack init --dir /var/lib/stack
  STACK_KMS_URI=awskms://alias/stack stack init --dir ./prod`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runInit(cmd) },
	}
	// --dir is --home under the name users expect for init.
	cmd.Flags().StringVar(&a.homeFlag, "dir", "", "data directory to create (default $STACK_HOME or ~/.stack)")
	cmd.Flags().BoolVar(&a.initControl, "control", false, "also make the control plane's TLS CA and operator token (for `stack control`)")
	return cmd
}

func (a *app) runInit(cmd *cobra.Command) error {
	ctx := cmd.Context()
	home := a.home()
	out := a.stdout
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("init: create data directory: %w", err)
	}
	fmt.Fprintf(out, "data directory %s\n", home)

	cfgPath := filepath.Join(home, config.FileName)
	switch err := writeNew(cfgPath, config.DefaultFile(), 0o600); {
	case errors.Is(err, fs.ErrExist):
		fmt.Fprintf(out, "  kept     %s (exists)\n", cfgPath)
	case err != nil:
		return fmt.Errorf("init: %w", err)
	default:
		fmt.Fprintf(out, "  created  %s\n", cfgPath)
	}

	if keyPath, ok := strings.CutPrefix(a.cfg.KMS.URI, "local://"); ok {
		switch err := kms.CreateLocalKey(keyPath); {
		case errors.Is(err, fs.ErrExist):
			fmt.Fprintf(out, "  kept     %s (exists; never overwritten)\n", keyPath)
		case err != nil:
			return fmt.Errorf("init: %w", err)
		default:
			fmt.Fprintf(out, "  created  %s (local KMS key, mode 0600: for development, not production)\n", keyPath)
		}
	} else {
		fmt.Fprintf(out, "  using    %s for key wrapping\n", a.cfg.KMS.URI)
	}

	keysPath := a.cfg.Passport.KeysPath
	if _, err := os.Stat(keysPath); err == nil {
		fmt.Fprintf(out, "  kept     %s (exists; never overwritten)\n", keysPath)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("init: %w", err)
	} else {
		k, err := a.openKMS(ctx)
		if err != nil {
			return fmt.Errorf("init: %w", err)
		}
		ks, err := passport.GenerateKeySet(time.Now())
		if err != nil {
			return fmt.Errorf("init: issuer key: %w", err)
		}
		if err := ks.Save(ctx, keysPath, k); err != nil {
			return fmt.Errorf("init: issuer key: %w", err)
		}
		kid, _ := ks.Current(time.Now())
		fmt.Fprintf(out, "  created  %s (issuer key %s, wrapped by %s)\n", keysPath, kid, k.URI())
	}
	if err := a.initCA(ctx, a.caCertPath(), a.caKeyPath(), "STACK interception CA", "interception CA; agents trust it: stack ca export"); err != nil {
		return err
	}
	if a.initControl {
		return a.initControlFiles(ctx)
	}
	fmt.Fprintln(out, "next: stack passport issue --agent my-agent --role billing-reporter")
	return nil
}

// initControlFiles makes the control plane's TLS CA and operator token,
// keeping whatever exists.
func (a *app) initControlFiles(ctx context.Context) error {
	out := a.stdout
	if err := a.initCA(ctx, a.controlCACertPath(), a.controlCAKeyPath(), "STACK control plane CA", "control plane TLS CA; sidecars trust it: stack control ca export"); err != nil {
		return err
	}
	path := a.cfg.Control.TokenFile
	if _, err := os.Stat(path); err == nil {
		fmt.Fprintf(out, "  kept     %s (exists; never overwritten)\n", path)
	} else if _, err := ensureAdminToken(path); err != nil {
		return fmt.Errorf("init: operator token: %w", err)
	} else {
		fmt.Fprintf(out, "  created  %s (operator token for the CLI, mode 0600)\n", path)
	}
	fmt.Fprintln(out, "next: stack control, then stack agent register my-agent --role billing-reporter")
	return nil
}

// writeNew writes data to a file that must not exist yet, durably.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// initCA makes a CA (its key wrapped by the KMS) at certPath and keyPath
// unless it exists: init never overwrites.
func (a *app) initCA(ctx context.Context, certPath, keyPath, name, what string) error {
	out := a.stdout
	if _, err := os.Stat(certPath); err == nil {
		fmt.Fprintf(out, "  kept     %s (exists; never overwritten)\n", certPath)
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("init: %w", err)
	}
	k, err := a.openKMS(ctx)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	authority, err := ca.Generate(time.Now(), name+" ("+filepath.Base(a.home())+")")
	if err != nil {
		return fmt.Errorf("init: %s: %w", name, err)
	}
	if err := authority.Save(ctx, certPath, keyPath, k); err != nil {
		return fmt.Errorf("init: %s: %w", name, err)
	}
	fmt.Fprintf(out, "  created  %s (%s)\n", certPath, what)
	return nil
}
