package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/term"

	"github.com/stackctl/stack/config"
	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/vault/kms"
)

// app is what every command shares: the streams, the loaded config and
// the logger, and the resources opened on demand that close on exit.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	// Set by global flags.
	homeFlag string
	// initControl: `stack init --control`.
	initControl bool
	configFlag  string
	logLevel    string

	// flagKeys maps, per command, config keys to the flag names that
	// override them: two commands may give one flag name to different
	// keys (--listen).
	flagKeys map[*cobra.Command]map[string]string

	cfg *config.Config
	log *zap.Logger

	// mu guards kms and closers: a server's reloads run beside each
	// other and its start-up.
	mu      sync.Mutex
	kms     kms.KMS
	closers []func() error
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	return &app{stdin: stdin, stdout: stdout, stderr: stderr, flagKeys: map[*cobra.Command]map[string]string{}, log: zap.NewNop()}
}

// annotationServer marks a long-running command (stack proxy), whose log
// follows log.level; every other command logs at commandLogLevel unless
// --log-level says otherwise.
const annotationServer = "stack.server"

// commandLogLevel is the log level of one-shot commands.
const commandLogLevel = "warn"

// fileFlags are the flags bound to config keys that name files.
var fileFlags = []string{"upstream-ca", "passport-file", "control-ca", "oidc-token-file", "join-token-file", "tls-cert", "tls-key"}

// bindFlag makes flag name override config key when it is set.
func (a *app) bindFlag(cmd *cobra.Command, key, name string) {
	if a.flagKeys[cmd] == nil {
		a.flagKeys[cmd] = map[string]string{}
	}
	a.flagKeys[cmd][key] = name
}

// load reads the configuration for cmd, builds the logger and checks that
// the data directory is initialised when cmd needs it to be. It runs
// before every command.
func (a *app) load(cmd *cobra.Command) error {
	// A relative path in a flag is the user's, from where they stand; in
	// stack.yaml it is relative to the data directory.
	for _, name := range fileFlags {
		if f := cmd.Flags().Lookup(name); f != nil && f.Changed && f.Value.String() != "" && !filepath.IsAbs(f.Value.String()) {
			abs, err := filepath.Abs(f.Value.String())
			if err != nil {
				return usageError(fmt.Errorf("--%s: %w", name, err))
			}
			if err := f.Value.Set(abs); err != nil {
				return usageError(fmt.Errorf("--%s: %w", name, err))
			}
		}
	}
	flags := map[string]*pflag.Flag{}
	for key, name := range a.flagKeys[cmd] {
		if f := cmd.Flags().Lookup(name); f != nil {
			flags[key] = f
		}
	}
	if a.logLevel != "" {
		flags["log.level"] = cmd.Flags().Lookup("log-level")
	}
	cfg, err := config.Load(config.LoadOptions{Home: a.homeFlag, File: a.configFlag, Flags: flags})
	if err != nil {
		return usageError(err)
	}
	a.cfg = cfg
	logCfg := cfg.Log
	if a.logLevel == "" && cmd.Annotations[annotationServer] == "" {
		// A one-shot command prints its result; its logs are for when
		// something goes wrong. log.level is the server's level.
		logCfg.Level = commandLogLevel
	}
	log, err := newLogger(logCfg, a.stderr)
	if err != nil {
		return usageError(err)
	}
	a.log = log
	if needsInit(cmd) {
		return a.requireInit()
	}
	return nil
}

// home is the data directory.
func (a *app) home() string { return a.cfg.Home }

// onClose registers f to run when the command ends, last registered first.
func (a *app) onClose(f func() error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closers = append(a.closers, f)
}

func (a *app) close() {
	a.mu.Lock()
	closers := a.closers
	a.closers, a.kms = nil, nil
	a.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		_ = closers[i]()
	}
	_ = a.log.Sync()
}

// openKMS returns the configured KMS, opened on the first call and closed
// when the command ends: a command, and a server over its whole life
// (reloads included), holds one client. It refuses to open while a move
// to another KMS key is half done.
func (a *app) openKMS(ctx context.Context) (kms.KMS, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kms != nil {
		return a.kms, nil
	}
	if err := a.noPendingRewrap(); err != nil {
		return nil, err
	}
	k, err := kms.Open(ctx, a.cfg.KMS.URI, kms.Options{BaseDir: a.home(), Timeout: a.cfg.KMS.Timeout})
	if err != nil {
		return nil, err
	}
	a.kms = k
	a.closers = append(a.closers, k.Close)
	return k, nil
}

// issuerKeys loads the issuer key set, unwrapping it through the KMS.
func (a *app) issuerKeys(ctx context.Context) (*passport.KeySet, error) {
	if _, err := os.Stat(a.cfg.Passport.KeysPath); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no issuer keys at %s: run `stack init` first", a.cfg.Passport.KeysPath)
	}
	k, err := a.openKMS(ctx)
	if err != nil {
		return nil, err
	}
	return passport.LoadKeySet(ctx, a.cfg.Passport.KeysPath, k)
}

// auditKeyName names the issuer's key in signed audit checkpoints.
const auditKeyName = "stack-audit"

// fleetIssuerKeys returns the keys the issuer signs with: on etcd the set
// the control plane's replicas share (once one has imported it), else the
// keys file's.
func (a *app) fleetIssuerKeys(ctx context.Context) (*passport.KeySet, error) {
	ks, err := a.sharedIssuerKeys(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return a.issuerKeys(ctx)
	}
	return ks, err
}

// auditSigner signs audit checkpoints with the issuer's current key.
func (a *app) auditSigner(ctx context.Context) (note.Signer, error) {
	ks, err := a.fleetIssuerKeys(ctx)
	if err != nil {
		return nil, err
	}
	_, priv := ks.Current(time.Now())
	return newNoteSigner(auditKeyName, priv)
}

// sharedIssuerKeys reads the issuer keys that a control plane on etcd
// shares with its replicas and signs its audit checkpoints with; the
// error wraps store.ErrNotFound when control.store is not etcd or etcd
// holds none yet.
func (a *app) sharedIssuerKeys(ctx context.Context) (*passport.KeySet, error) {
	if !a.cfg.Control.OnEtcd() {
		return nil, fmt.Errorf("issuer keys: control.store is %s: %w", a.cfg.Control.Store, store.ErrNotFound)
	}
	k, err := a.openKMS(ctx)
	if err != nil {
		return nil, err
	}
	st, err := openControlStore(ctx, a.cfg.Control, a.log)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	ks, _, err := control.ReadSharedKeys(ctx, st, k)
	return ks, err
}

// auditVerifiers verifies checkpoints signed by any issuer key still known:
// the keys file's and, on etcd, the shared set's.
func (a *app) auditVerifiers(ctx context.Context) (note.Verifiers, error) {
	shared, sharedErr := a.sharedIssuerKeys(ctx)
	if sharedErr != nil && !errors.Is(sharedErr, store.ErrNotFound) {
		return nil, sharedErr
	}
	ks, err := a.issuerKeys(ctx)
	if err != nil {
		return nil, err
	}
	pubs := map[string]ed25519.PublicKey{}
	for _, set := range []*passport.KeySet{ks, shared} {
		if set != nil {
			maps.Copy(pubs, set.AllPublicKeys())
		}
	}
	var vs []note.Verifier
	// Retired keys too: old checkpoints stay verifiable after rotations.
	for _, pub := range pubs {
		vkey, err := note.NewEd25519VerifierKey(auditKeyName, pub)
		if err != nil {
			return nil, err
		}
		v, err := note.NewVerifier(vkey)
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return note.VerifierList(vs...), nil
}

// noteSigner signs notes with an Ed25519 key held in memory; the note
// package only builds signers from its own encoded private-key strings.
type noteSigner struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func newNoteSigner(name string, key ed25519.PrivateKey) (*noteSigner, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("audit signer: not an Ed25519 private key")
	}
	pub := key.Public().(ed25519.PublicKey)
	// Key hash as sumdb/note computes it: SHA-256(name "\n" alg-byte pubkey)[:4].
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{1})
	h.Write(pub)
	return &noteSigner{name: name, hash: binary.BigEndian.Uint32(h.Sum(nil)), key: key}, nil
}

func (s *noteSigner) Name() string                    { return s.name }
func (s *noteSigner) KeyHash() uint32                 { return s.hash }
func (s *noteSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// VerifierKey is the signer's public key in the signed-note verifier
// format ("name+hash+base64(alg pubkey)") that note.NewVerifier reads.
func (s *noteSigner) VerifierKey() (string, error) {
	return note.NewEd25519VerifierKey(s.name, s.key.Public().(ed25519.PublicKey))
}

// newLogger builds the process logger: console on a terminal, JSON
// otherwise, unless the config says which.
func newLogger(c config.LogConfig, w io.Writer) (*zap.Logger, error) {
	var level zapcore.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %q: must be one of %s", c.Level, strings.Join(config.LogLevels, ", "))
	}
	format := c.Format
	if format == "auto" {
		format = "json"
		tw := w
		if lw, ok := w.(*lockedWriter); ok {
			tw = lw.w
		}
		if f, ok := tw.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "console"
		}
	}
	var enc zapcore.Encoder
	if format == "console" {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core), nil
}
