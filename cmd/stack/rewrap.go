package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/stackctl/stack/config"
	"github.com/stackctl/stack/internal/swap"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/proxy/ca"
	"github.com/stackctl/stack/vault/kms"
)

// rewrapJournalFile records a decided move between KMS keys until every
// file is switched; while it exists no command uses the KMS.
const rewrapJournalFile = "rewrap.journal"

// rewrapFailpoint, when set, runs before each file of a move is switched
// into place; an error stops the move there, as a crash would. It is nil
// except in crash tests.
var rewrapFailpoint func(path string) error

func (a *app) rewrapJournal() string { return filepath.Join(a.home(), rewrapJournalFile) }

// noPendingRewrap refuses to go on while a move between KMS keys is half
// switched: some files are wrapped under the old key, some under the new.
func (a *app) noPendingRewrap() error {
	rec, err := swap.Pending(a.rewrapJournal())
	if err != nil {
		return err
	}
	if rec != nil {
		return fmt.Errorf("a move from %s to %s was interrupted (%s): run `stack vault rewrap --to %s` to finish it",
			rec.Meta["from"], rec.Meta["to"], a.rewrapJournal(), rec.Meta["to"])
	}
	return nil
}

func newVaultRewrapCmd(a *app) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "rewrap --to KMS-URI",
		Short: "Move everything the KMS wraps to another KMS key, and kms.uri with it",
		Long: `Unwrap everything the current KMS key (kms.uri) wraps and wrap it under the
key named by --to, then point kms.uri at that key, as one change:

  vault.db          every credential's data key and the fingerprint salt
  issuer-keys.json  the passport issuer's private keys
  fleet-log.keys    the fleet audit log's signing key (control plane)
  ca-key.json       the interception CA's private key
  stack.yaml        kms.uri (comments and the other keys are kept)

Each file is first written beside the old one under the new key and read
back through it; only when every file is are they switched into place.
A failure before that (the new KMS unreachable or refusing, a full disk,
an interrupt) changes nothing. If the command is killed while switching,
the other commands refuse to run until it is run again, which finishes the
switch. Secrets' ciphertexts are not touched.

Both keys must be usable while it runs. Stop the sidecar first: the
command refuses to run while one serves this data directory. With --to
local://PATH, PATH (relative to the data directory) is created with a new
random key when it does not exist.`,
		Example: `  stack vault rewrap --to awskms://alias/stack
  stack vault rewrap --to gcpkms://projects/p/locations/global/keyRings/stack/cryptoKeys/vault
  stack vault rewrap --to local://kms-2026.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runRewrap(cmd.Context(), to) },
	}
	cmd.Flags().StringVar(&to, "to", "", "URI of the KMS key to move to (local://, gcpkms:// or awskms://)")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func (a *app) runRewrap(ctx context.Context, to string) error {
	if c, err := a.runningSidecar(ctx); err != nil {
		return err
	} else if c != nil {
		return fmt.Errorf("vault rewrap: a sidecar serves %s (admin API %s) and holds its files: stop it (SIGTERM), run the command again, then start it", a.home(), c.base)
	}
	if a.cfg.Control.OnEtcd() {
		// The files would move to the new key and kms.uri with them, while
		// the credentials in etcd stayed under the old one.
		return errors.New("vault rewrap moves the files of a data directory; with control.store etcd the vault lives in etcd, which it cannot move yet: keep kms.uri")
	}
	if done, err := a.finishRewrap(to); done || err != nil {
		return err
	}
	from := a.cfg.KMS.URI
	kopts := kms.Options{BaseDir: a.home(), Timeout: a.cfg.KMS.Timeout}
	if a.sameKey(from, to) {
		return usageError(fmt.Errorf("--to %s is the key already in use (kms.uri): nothing to move", to))
	}
	cfgPath, newCfg, cfgMode, err := a.configWithKMS(to)
	if err != nil {
		return err
	}
	keysPath := a.cfg.Passport.KeysPath
	hasKeys, err := present(keysPath)
	if err != nil {
		return err
	}
	hasCA, err := present(a.caKeyPath())
	if err != nil {
		return err
	}
	fleetKeys := filepath.Join(a.home(), fleetKeysFile)
	hasFleetKeys, err := present(fleetKeys)
	if err != nil {
		return err
	}

	createdKey, err := createLocalKey(to, kopts)
	if err != nil {
		return err
	}
	target, err := kms.Open(ctx, to, kopts)
	if err != nil {
		removeCreated(createdKey)
		if errors.Is(err, kms.ErrUnknownScheme) || errors.Is(err, kms.ErrInvalidURI) {
			return usageError(fmt.Errorf("--to: %w", err))
		}
		return err
	}
	a.onClose(target.Close)
	// The vault stays open, and its file locked, until the move is done:
	// no sidecar starts on it meanwhile.
	v, err := a.openVault(ctx, false)
	if err != nil {
		removeCreated(createdKey)
		return ownedByOther(err, a.cfg.Vault.Path)
	}
	source := v.KMS()

	var creds int
	files := []swap.File{{Path: v.Path(), Stage: func(ctx context.Context, staged string) (err error) {
		creds, err = v.RewrapCopy(ctx, staged, target)
		return err
	}}}
	if hasKeys {
		files = append(files, swap.File{Path: keysPath, Stage: func(ctx context.Context, staged string) error {
			return passport.RewrapKeyFile(ctx, keysPath, staged, source, target)
		}})
	}
	if hasFleetKeys {
		files = append(files, swap.File{Path: fleetKeys, Stage: func(ctx context.Context, staged string) error {
			return passport.RewrapKeyFile(ctx, fleetKeys, staged, source, target)
		}})
	}
	if hasCA {
		files = append(files, swap.File{Path: a.caKeyPath(), Stage: func(ctx context.Context, staged string) error {
			return ca.RewrapKey(ctx, a.caCertPath(), a.caKeyPath(), staged, source, target)
		}})
	}
	files = append(files, swap.File{Path: cfgPath, Stage: func(_ context.Context, staged string) error {
		if err := swap.WriteStaged(staged, newCfg, cfgMode); err != nil {
			return err
		}
		if _, err := config.Load(config.LoadOptions{Home: a.home(), File: staged}); err != nil {
			return fmt.Errorf("%s with kms.uri set to %s: %w", cfgPath, to, err)
		}
		return nil
	}})

	err = swap.Run(ctx, swap.Plan{
		Journal:      a.rewrapJournal(),
		Meta:         map[string]string{"from": from, "to": to},
		Files:        files,
		BeforeSwitch: rewrapFailpoint,
	})
	if err != nil {
		if rec, perr := swap.Pending(a.rewrapJournal()); perr == nil && rec != nil {
			return fmt.Errorf("vault rewrap: the move to %s is decided but was not finished (%w): run `stack vault rewrap --to %s` again to finish it", to, err, to)
		}
		removeCreated(createdKey)
		return fmt.Errorf("vault rewrap: nothing was changed, everything is still wrapped under %s and kms.uri names it: %w", from, err)
	}
	a.log.Info("moved to another KMS key", zap.String("from", from), zap.String("to", to), zap.Int("credentials", creds))
	out := a.stdout
	if createdKey != "" {
		fmt.Fprintf(out, "created %s (local KMS key, mode 0600: for development, not production)\n", createdKey)
	}
	fmt.Fprintf(out, "moved from %s to %s:\n", from, to)
	for _, f := range files {
		what := fmt.Sprintf("kms.uri: %q", to)
		switch f.Path {
		case v.Path():
			what = fmt.Sprintf("%d credential(s)", creds)
		case keysPath:
			what = "issuer keys"
		case fleetKeys:
			what = "fleet audit log key"
		case a.caKeyPath():
			what = "interception CA key"
		}
		fmt.Fprintf(out, "  %-40s %s\n", f.Path, what)
	}
	fmt.Fprintf(out, "nothing in %s is wrapped under %s any more; keep that key as long as backups made before now may be restored\n", a.home(), from)
	a.warnKMSOverride(to)
	return nil
}

// finishRewrap finishes a move that was interrupted while it was being
// switched into place; done reports that one was pending.
func (a *app) finishRewrap(to string) (done bool, err error) {
	rec, err := swap.Finish(a.rewrapJournal())
	if err != nil {
		return true, fmt.Errorf("vault rewrap: finish the interrupted move: %w", err)
	}
	if rec == nil {
		return false, nil
	}
	pending := rec.Meta["to"]
	fmt.Fprintf(a.stdout, "finished the interrupted move from %s to %s\n", rec.Meta["from"], pending)
	a.warnKMSOverride(pending)
	if !a.sameKey(pending, to) {
		return true, fmt.Errorf("vault rewrap: kms.uri is now %s, not %s: run the command again to move to %s", pending, to, to)
	}
	return true, nil
}

// warnKMSOverride reports an environment variable that overrides the
// kms.uri the move just wrote.
func (a *app) warnKMSOverride(to string) {
	env := config.EnvVar("kms.uri")
	if v := os.Getenv(env); v != "" && !a.sameKey(v, to) {
		fmt.Fprintf(a.stderr, "warning: %s=%s overrides kms.uri: set it to %s (or unset it), or every command keeps using a key that no longer unwraps anything here\n", env, v, to)
	}
}

// sameKey reports whether two KMS URIs name the same key file or key
// name; a relative local path is relative to the data directory.
func (a *app) sameKey(x, y string) bool {
	opts := kms.Options{BaseDir: a.home()}
	px, okx := kms.LocalKeyPath(x, opts)
	py, oky := kms.LocalKeyPath(y, opts)
	if okx && oky {
		return filepath.Clean(px) == filepath.Clean(py)
	}
	return x == y
}

// configWithKMS returns the config file to write, its content with
// kms.uri set to uri, and its mode. With no file, it is a new stack.yaml
// in the data directory holding only kms.uri.
func (a *app) configWithKMS(uri string) (path string, data []byte, mode fs.FileMode, err error) {
	path, mode = a.cfg.File, 0o600
	if path == "" {
		path = filepath.Join(a.home(), config.FileName)
	} else {
		fi, err := os.Stat(path)
		if err != nil {
			return "", nil, 0, err
		}
		mode = fi.Mode().Perm()
		if data, err = os.ReadFile(path); err != nil {
			return "", nil, 0, err
		}
	}
	data, err = config.SetFileKey(data, "kms.uri", uri)
	if err != nil {
		return "", nil, 0, fmt.Errorf("vault rewrap: nothing was changed: %s: %w", path, err)
	}
	return path, data, mode, nil
}

// createLocalKey creates the key file of a local:// uri that does not
// exist yet, and returns its path ("" when nothing was created).
func createLocalKey(uri string, opts kms.Options) (string, error) {
	path, ok := kms.LocalKeyPath(uri, opts)
	if !ok {
		return "", nil
	}
	if there, err := present(path); there || err != nil {
		return "", err
	}
	if err := kms.CreateLocalKey(path); err != nil {
		return "", fmt.Errorf("vault rewrap: %w", err)
	}
	return path, nil
}

// removeCreated removes a key file made for a move that did not happen.
func removeCreated(path string) {
	if path != "" {
		_ = os.Remove(path)
	}
}

// present reports whether path exists; an error other than its absence
// is returned, never taken for it.
func present(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
