package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/proxy"
	"github.com/stackctl/stack/vault"
)

// maxSecretInput bounds what `vault put` and `vault rotate` read from
// stdin: credentials are tokens, not files.
const maxSecretInput = 64<<10 + 2

func newVaultCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vault",
		Short: "Manage credentials encrypted under the KMS",
		Long: `The vault holds the real credentials the proxy swaps in for placeholders
(stk_ph_NAME). Each secret is encrypted under its own data key, wrapped by
the KMS named by kms.uri. Secrets are read from stdin or an environment
variable, never from the command line, and are never printed.

A running sidecar ("stack proxy" with this data directory) owns the vault
file. While it runs, put, rotate and rm go through its admin API, so the
change applies to it at once, and list and check read a consistent snapshot
it serves; with no sidecar running they open the file directly. With a
control plane (control.url, or one running with this data directory) they
all go through it, wherever it keeps the vault (vault.path, or etcd).`,
		Example: `  printf %s "$STRIPE_KEY" | stack vault put stripe --host api.stripe.com --render bearer
  stack vault list
  stack vault check`,
	}
	cmd.AddCommand(
		newVaultPutCmd(a),
		newVaultListCmd(a),
		newVaultRmCmd(a),
		newVaultRotateCmd(a),
		newVaultRewrapCmd(a),
		newVaultCheckCmd(a),
	)
	return cmd
}

// openVault opens the configured vault with the configured KMS; both close
// when the command ends.
func (a *app) openVault(ctx context.Context, readOnly bool) (*vault.Vault, error) {
	k, err := a.openKMS(ctx)
	if err != nil {
		return nil, err
	}
	path := a.cfg.Vault.Path
	if readOnly {
		// A control plane keeps the vault (in etcd, or in a file it
		// holds), and while a sidecar runs it holds the file: read a
		// snapshot of theirs.
		c, err := a.controlAPI(ctx, false)
		if err == nil && c == nil {
			c, err = a.runningSidecar(ctx)
		}
		if err != nil {
			return nil, err
		}
		if c != nil {
			if path, err = a.snapshot(ctx, c, proxy.AdminVaultSnapshot, "vault"); err != nil {
				return nil, err
			}
		}
	}
	v, err := vault.Open(path, k, vault.Options{
		CacheTTL:  a.cfg.Vault.CacheTTL,
		CacheSize: a.cfg.Vault.CacheSize,
		ReadOnly:  readOnly,
	})
	if err != nil {
		return nil, err
	}
	a.onClose(v.Close)
	return v, nil
}

// vaultExists reports whether the vault file exists, for read commands
// that treat a missing vault as an empty one.
func (a *app) vaultExists() (bool, error) {
	_, err := os.Stat(a.cfg.Vault.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// vaultError marks refused input as a usage error (exit status 2).
func vaultError(err error) error {
	if errors.Is(err, vault.ErrInvalid) {
		return usageError(err)
	}
	return err
}

// readSecret reads a secret from the environment variable envVar, or else
// from stdin (without echo on a terminal), stripping one trailing newline.
func (a *app) readSecret(envVar string) ([]byte, error) {
	if envVar != "" {
		s, ok := os.LookupEnv(envVar)
		if !ok {
			return nil, usageError(fmt.Errorf("--from-env %s: the variable is not set", envVar))
		}
		if s == "" {
			return nil, usageError(fmt.Errorf("--from-env %s: the variable is empty", envVar))
		}
		return []byte(s), nil
	}
	var secret []byte
	if f, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(a.stderr, "secret (input hidden): ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return nil, fmt.Errorf("read secret: %w", err)
		}
		secret = b
	} else {
		b, err := io.ReadAll(io.LimitReader(a.stdin, maxSecretInput+1))
		if err != nil {
			return nil, fmt.Errorf("read secret from stdin: %w", err)
		}
		if len(b) > maxSecretInput {
			return nil, usageError(errors.New("secret on stdin is longer than 64 KiB"))
		}
		secret = b
	}
	if rest, ok := bytes.CutSuffix(secret, []byte("\n")); ok {
		secret = rest
		if rest, ok := bytes.CutSuffix(secret, []byte("\r")); ok {
			secret = rest
		}
	}
	if len(secret) == 0 {
		return nil, usageError(errors.New("empty secret: pipe it on stdin or name a variable with --from-env"))
	}
	return secret, nil
}

func newVaultPutCmd(a *app) *cobra.Command {
	var hosts []string
	var render, fromEnv, fromFile string
	var update, ifAbsent bool
	var kf kindFlags
	cmd := &cobra.Command{
		Use:   "put NAME --host HOST [--host HOST...] [--kind KIND ...] [--render FORM] [--from-env VAR | --from-file FILE] [--update | --if-absent]",
		Short: "Store a credential (secret from stdin, an environment variable or a file)",
		Long: `Store a credential. The secret is read from stdin (one trailing newline
is dropped; on a terminal the input is hidden), from the environment
variable named by --from-env, or whole from the file named by --from-file
(a key file). It is never taken as an argument, which other users could
see in the process list.

--kind says what the secret is (docs/credentials.md has an example of each):
  static (default)            the secret itself is injected
  oauth2-client-credentials   a client secret; tokens from --token-url for
                              --client-id, with --scope (and --audience)
  gcp-service-account         a service-account key file (--from-file);
                              access tokens for --scope
  github-app                  the app's private key (--from-file); tokens
                              for --app-id, --installation-id, at most
                              --permission NAME=LEVEL and --repository
  aws-sts                     a base secret access key for --access-key-id;
                              per-agent sessions of --role-arn in --region
                              (render sigv4: the agent signs with the
                              placeholder stk_ph_NAME as its access key id)
The minting kinds inject short-lived credentials minted from the secret,
narrowed by each passport grant's "narrow" (scopes, permissions, AWS
actions), and renewed before they expire.

--render says how the proxy puts the secret into a request:
  bearer                 Authorization: Bearer SECRET
  basic                  Authorization: Basic base64(SECRET), SECRET being user:password
  header:NAME=TEMPLATE   header NAME set to TEMPLATE with {secret} replaced
  query:NAME             query parameter NAME set to SECRET

--host binds the secret to the hosts it may be sent to (repeatable;
*.example.com matches one more label). Agents use the placeholder
stk_ph_NAME wherever the secret would go.

A NAME already in the vault is an error, unless one of these says what to do:
  --update     replace it with a new version: this secret, these hosts and
               this render form (the secret is needed too: the vault never
               gives it back). A NAME not in the vault is stored as new.
  --if-absent  leave it as it is and exit 0, saying so on stderr: for init
               containers and scripts that may run more than once.
"stack vault rotate NAME" replaces the secret alone.

While a sidecar runs with this data directory, the change goes through its
admin API and applies at once.`,
		Example: `  printf %s "$STRIPE_KEY" | stack vault put stripe --host api.stripe.com --render bearer
  stack vault put openai --host api.openai.com --render bearer --from-env OPENAI_API_KEY
  stack vault put anthropic --host api.anthropic.com --render 'header:x-api-key={secret}' --from-env ANTHROPIC_API_KEY
  stack vault put stripe --host api.stripe.com --render bearer --from-env STRIPE_KEY --if-absent
  stack vault put stripe --host api.stripe.com --host files.stripe.com --render bearer --from-env STRIPE_KEY --update
  stack vault put crm --kind oauth2-client-credentials --host api.crm.example --token-url https://auth.crm.example/oauth/token --client-id stack --scope contacts.read --from-env CRM_CLIENT_SECRET
  stack vault put gcp --kind gcp-service-account --host '*.googleapis.com' --scope https://www.googleapis.com/auth/cloud-platform --from-file sa-key.json
  stack vault put github --kind github-app --host api.github.com --app-id 123456 --installation-id 7890 --permission contents=read --from-file app.private-key.pem
  stack vault put aws --kind aws-sts --host s3.us-east-1.amazonaws.com --host '*.s3.us-east-1.amazonaws.com' --role-arn arn:aws:iam::111122223333:role/agents --region us-east-1 --access-key-id AKIA... --from-env AWS_BASE_SECRET`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			params, err := kf.params(cmd.Flags())
			if err != nil {
				return usageError(err)
			}
			var r vault.Render
			if render != "" {
				if r, err = vault.ParseRender(render); err != nil {
					return usageError(fmt.Errorf("--render: %w", err))
				}
			} else if !mint.Minted(kf.kind) {
				return usageError(errors.New("--render is required for a static credential: bearer, basic, header:NAME=TEMPLATE or query:NAME"))
			}
			if len(hosts) == 0 {
				return usageError(errors.New("at least one --host is required"))
			}
			if _, err := vault.NormalizeHosts(hosts); err != nil {
				return usageError(fmt.Errorf("--host: %w", err))
			}
			if err := vault.ValidateName(name); err != nil {
				return usageError(err)
			}
			var secret []byte
			if fromFile != "" {
				secret, err = readSecretFile(fromFile)
			} else {
				secret, err = a.readSecret(fromEnv)
			}
			if err != nil {
				return err
			}
			defer clear(secret)
			when := existingFails
			switch {
			case update:
				when = existingUpdate
			case ifAbsent:
				when = existingKept
			}
			return a.putCredential(cmd.Context(), name, secret, vault.PutOptions{Hosts: hosts, Render: r, Kind: kf.kind, Params: params}, when)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&hosts, "host", nil, "host the secret may be sent to (repeatable; *.example.com allowed)")
	f.StringVar(&render, "render", "", "how the secret goes into a request: bearer, basic, header:NAME=TEMPLATE, query:NAME or sigv4 (required for static; minting kinds default to bearer, aws-sts to sigv4)")
	f.StringVar(&fromEnv, "from-env", "", "read the secret from this environment variable instead of stdin")
	f.StringVar(&fromFile, "from-file", "", "read the secret whole from this file (a key file) instead of stdin")
	f.BoolVar(&update, "update", false, "if NAME exists, replace its secret, hosts and render form (a new version)")
	f.BoolVar(&ifAbsent, "if-absent", false, "if NAME exists, leave it unchanged and exit 0")
	kf.register(f)
	cmd.MarkFlagsMutuallyExclusive("update", "if-absent")
	cmd.MarkFlagsMutuallyExclusive("from-env", "from-file")
	return cmd
}

func newVaultListCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List credentials (never their secrets)",
		Example: `  stack vault list
  stack vault list --json | jq -r '.[].name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var creds []*vault.Credential
			exists, err := a.vaultExists()
			if err != nil {
				return err
			}
			fleet, err := a.controlAPI(cmd.Context(), false)
			if err != nil {
				return err
			}
			if fleet != nil {
				if err := fleet.do(cmd.Context(), http.MethodGet, control.PathVaultList, nil, &creds); err != nil {
					return fmt.Errorf("vault list: %w", err)
				}
			} else if exists {
				v, err := a.openVault(cmd.Context(), true)
				if err != nil {
					return err
				}
				if creds, err = v.List(); err != nil {
					return fmt.Errorf("%w (run `stack vault check`; `stack vault rm NAME` removes a damaged record)", err)
				}
			}
			if asJSON {
				if creds == nil {
					creds = []*vault.Credential{}
				}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(creds)
			}
			if len(creds) == 0 {
				fmt.Fprintln(a.stdout, "no credentials (add one with `stack vault put`)")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tTTL\tHOSTS\tRENDER\tVERSION\tCREATED\tFINGERPRINT")
			for _, c := range creds {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", c.Name, c.Kind, mintedTTL(c), strings.Join(c.Hosts, ","), c.Render, c.Version, c.Created.UTC().Format(time.RFC3339), c.Fingerprint)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

// mintedTTL is the TTL column of `vault list`: how long a minted
// credential lives, "issuer" when its issuer decides, "-" for static.
func mintedTTL(c *vault.Credential) string {
	if !c.Minted() {
		return "-"
	}
	if d := mint.TTL(c.Kind, c.Params); d > 0 {
		return d.String()
	}
	return "issuer"
}

func newVaultRmCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Short:   "Remove a credential",
		Example: `  stack vault rm stripe`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.vaultForWrite(cmd.Context())
			if err != nil {
				return err
			}
			if err := v.Delete(args[0]); err != nil {
				return vaultError(err)
			}
			a.log.Info("credential removed", zap.String("credential", args[0]))
			fmt.Fprintf(a.stdout, "removed %s\n", args[0])
			return nil
		},
	}
}

func newVaultRotateCmd(a *app) *cobra.Command {
	var fromEnv, fromFile string
	cmd := &cobra.Command{
		Use:   "rotate NAME [--from-env VAR | --from-file FILE]",
		Short: "Replace a credential's secret with a new version",
		Long: `Store a new version of a credential's secret, read like "vault put" does
(stdin, --from-env, or whole from --from-file): never from the command line.
Hosts, render form, kind and parameters are kept. The previous version is
dropped from the vault.

An aws-sts credential's base key is a pair: a new secret access key comes
with a new access key id, which is a parameter. Rotate it with
"stack vault put NAME --kind aws-sts --update --access-key-id NEW ..." and
the entry's other flags, not with rotate.`,
		Example: `  printf %s "$NEW_STRIPE_KEY" | stack vault rotate stripe
  stack vault rotate openai --from-env OPENAI_API_KEY
  stack vault rotate github --from-file app.2027-01-01.private-key.pem`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var secret []byte
			var err error
			if fromFile != "" {
				secret, err = readSecretFile(fromFile)
			} else {
				secret, err = a.readSecret(fromEnv)
			}
			if err != nil {
				return err
			}
			defer clear(secret)
			v, err := a.vaultForWrite(cmd.Context())
			if err != nil {
				return err
			}
			c, err := v.Rotate(cmd.Context(), args[0], secret)
			if err != nil {
				return vaultError(err)
			}
			a.log.Info("credential rotated", zap.String("credential", c.Name), zap.Int("version", c.Version), zap.String("fingerprint", c.Fingerprint))
			fmt.Fprintf(a.stdout, "rotated %s to version %d (fingerprint %s)\n", c.Name, c.Version, c.Fingerprint)
			return nil
		},
	}
	cmd.Flags().StringVar(&fromEnv, "from-env", "", "read the new secret from this environment variable instead of stdin")
	cmd.Flags().StringVar(&fromFile, "from-file", "", "read the new secret whole from this file (a key file) instead of stdin")
	cmd.MarkFlagsMutuallyExclusive("from-env", "from-file")
	return cmd
}

func newVaultCheckCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Unwrap every record and report those that fail (exit 1 if any)",
		Long: `Unwrap every credential's data key through the KMS and authenticate its
secret, printing one line per record. Secrets are discarded, never
printed. Exits 1 when any record fails.`,
		Example: `  stack vault check`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exists, err := a.vaultExists()
			if err != nil {
				return err
			}
			fleet, err := a.controlAPI(cmd.Context(), false)
			if err != nil {
				return err
			}
			if !exists && fleet == nil {
				fmt.Fprintln(a.stdout, "no vault yet: nothing to check")
				return nil
			}
			v, err := a.openVault(cmd.Context(), true)
			if err != nil {
				return err
			}
			results := v.Check(cmd.Context())
			failed, creds := 0, 0
			for _, r := range results {
				if r.Name != vault.FingerprintSaltName {
					creds++
				}
				if r.Err != nil {
					failed++
					fmt.Fprintf(a.stdout, "FAIL  %s: %v\n", r.Name, r.Err)
					continue
				}
				fmt.Fprintf(a.stdout, "ok    %s v%d\n", r.Name, r.Version)
			}
			if failed > 0 {
				return exitWith(exitFailure, fmt.Sprintf("vault check: %d of %d record(s) failed", failed, len(results)))
			}
			fmt.Fprintf(a.stdout, "%d credential(s) ok under %s\n", creds, v.KMS().URI())
			return nil
		},
	}
}

// vaultWriter changes credentials: the vault file itself, or the running
// sidecar's vault through its admin API.
type vaultWriter interface {
	Put(ctx context.Context, name string, secret []byte, opts vault.PutOptions) (*vault.Credential, error)
	Rotate(ctx context.Context, name string, secret []byte) (*vault.Credential, error)
	Replace(ctx context.Context, name string, secret []byte, opts vault.PutOptions) (*vault.Credential, error)
	Delete(name string) error
}

// vaultForWrite returns the running sidecar's vault when one runs (so the
// change applies to it at once), else the vault file.
func (a *app) vaultForWrite(ctx context.Context) (vaultWriter, error) {
	if c, err := a.controlAPI(ctx, false); err != nil || c != nil {
		if err != nil {
			return nil, err
		}
		return &adminVault{c: c, ctx: ctx}, nil
	}
	c, err := a.runningSidecar(ctx)
	if err != nil {
		return nil, err
	}
	if c != nil {
		return &adminVault{c: c, ctx: ctx}, nil
	}
	return a.openVault(ctx, false)
}

// adminVault is a vaultWriter over the admin API.
type adminVault struct {
	c   *adminClient
	ctx context.Context
}

func (v *adminVault) Put(ctx context.Context, name string, secret []byte, opts vault.PutOptions) (*vault.Credential, error) {
	var out vault.Credential
	err := v.c.do(ctx, http.MethodPost, proxy.AdminVaultPut, proxy.VaultWriteRequest{Name: name, Secret: secret, Hosts: opts.Hosts, Render: opts.Render.String(), Kind: opts.Kind, Params: opts.Params}, &out)
	return &out, adminVaultErr(err)
}

func (v *adminVault) Replace(ctx context.Context, name string, secret []byte, opts vault.PutOptions) (*vault.Credential, error) {
	var out vault.Credential
	err := v.c.do(ctx, http.MethodPost, proxy.AdminVaultReplace, proxy.VaultWriteRequest{Name: name, Secret: secret, Hosts: opts.Hosts, Render: opts.Render.String(), Kind: opts.Kind, Params: opts.Params}, &out)
	return &out, adminVaultErr(err)
}

func (v *adminVault) Rotate(ctx context.Context, name string, secret []byte) (*vault.Credential, error) {
	var out vault.Credential
	err := v.c.do(ctx, http.MethodPost, proxy.AdminVaultRotate, proxy.VaultWriteRequest{Name: name, Secret: secret}, &out)
	return &out, adminVaultErr(err)
}

func (v *adminVault) Delete(name string) error {
	return adminVaultErr(v.c.do(v.ctx, http.MethodPost, proxy.AdminVaultRemove, proxy.VaultWriteRequest{Name: name}, nil))
}

// adminVaultErr maps admin API statuses back to the vault's errors, so
// the CLI reports them the same way either path.
func adminVaultErr(err error) error {
	var ae *adminError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Status {
	case http.StatusNotFound:
		return fmt.Errorf("%s: %w", ae.Msg, vault.ErrNotFound)
	case http.StatusConflict:
		return fmt.Errorf("%s: %w", ae.Msg, vault.ErrExists)
	case http.StatusServiceUnavailable:
		return fmt.Errorf("%s: %w", ae.Msg, vault.ErrKMSUnavailable)
	case http.StatusBadRequest:
		return fmt.Errorf("%s: %w", ae.Msg, vault.ErrInvalid)
	}
	return err
}
