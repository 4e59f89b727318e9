package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/proxy"
)

// maxTokenInput bounds what the passport commands read as a token.
const maxTokenInput = passport.MaxTokenSize + 2

func newPassportCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "passport",
		Short: "Issue, verify and revoke agent passports; publish and rotate the issuer's keys",
		Long: `A passport is a short-lived signed token (JWS, EdDSA) that says what one
agent may do through the proxy: which hosts, methods, paths and credentials,
with optional parameter constraints. The proxy verifies it offline against
the issuer's JWKS; any standard JOSE library can verify it too.

Roles (passport.roles in stack.yaml) are named least-privilege templates:
billing-reporter, deploy-assistant and content-publisher ship by default.`,
		Example: `  stack passport issue --agent billing-bot --role billing-reporter
  stack passport verify "$TOKEN"
  stack passport jwks > jwks.json
  stack passport revoke --agent billing-bot --reason "credential burst"
  stack passport rotate-key`,
	}
	cmd.AddCommand(
		newPassportIssueCmd(a),
		newPassportVerifyCmd(a),
		newPassportJWKSCmd(a),
		newPassportRevokeCmd(a),
		newPassportRotateKeyCmd(a),
	)
	return cmd
}

func newPassportIssueCmd(a *app) *cobra.Command {
	var (
		agent, role, scopeFile, mode, parent, audience string
		grants                                         []string
		ttl                                            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "issue --agent ID (--role NAME | --grant SPEC ... | --scope FILE)",
		Short: "Issue a passport and print the token",
		Long: `issue signs a passport for an agent with the issuer's current key and
prints the token alone on stdout.

The scope comes from exactly one of:
  --role NAME    a role of passport.roles (its ttl and mode apply unless
                 --ttl or --mode say otherwise)
  --grant SPEC   one grant per flag, repeatable (syntax below)
  --scope FILE   a YAML or JSON list of grants ("-" reads stdin)

Grant syntax: comma-separated KEY=VALUE pairs, lists separated by "|":
  host=H|H...          exact host or *.example.com (required)
  methods=GET|POST     HTTP methods (default any)
  paths=/v1/x/**|...   path patterns: * within a segment, final /** any rest
                       (default any)
  credentials=C|C...   vault credentials the proxy may inject (default none)
  param=FROM:NAME:OP:VALUE
                       FROM is query or body, OP is eq, in, prefix or regex;
                       in takes VALUE|VALUE...; repeatable
Narrowing the minted credentials the grant names (docs/credentials.md):
  scopes=S|S...        OAuth2 scopes (oauth2-client-credentials, gcp-service-account)
  permissions=N:L|...  GitHub App permissions, L is read, write or admin
  repositories=R|...   GitHub repositories (names without the owner)
  actions=A|A...       AWS IAM actions (s3:GetObject, s3:List*); aws-sts needs them
  resources=ARN|...    AWS resources (default any)
  regions=R|R...       AWS regions (default any)
A handoff grant (docs/handoffs.md) names no host:
  handoff-to=A|A...    agents it may hand off to (* matches any run)
  handoff-schemas=S|.. payload schemas it may send them (findings/*)
Values containing "," need --scope FILE.

--ttl defaults to passport.default_ttl and may not exceed passport.max_ttl.
With --parent the new passport is delegated: its scope must be a subset of
the parent's, it expires no later than the parent, and revoking the parent
revokes it.`,
		Example: `  stack passport issue --agent billing-bot --role billing-reporter
  stack passport issue --agent reporter --ttl 5m \
      --grant 'host=api.stripe.com,methods=GET,paths=/v1/charges/**|/v1/balance,credentials=stripe'
  stack passport issue --agent writer \
      --grant 'host=api.cms.example.com,methods=POST,paths=/v1/posts,credentials=cms,param=body:status:in:draft|scheduled'
  stack passport issue --agent helper --parent @parent.jwt --grant 'host=api.stripe.com,methods=GET,paths=/v1/balance'
  stack passport issue --agent deployer --scope scope.yaml --mode alert`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if role == "" && len(grants) == 0 && scopeFile == "" {
				return usageError(errors.New("passport issue: one of --role, --grant or --scope is required"))
			}
			req := passport.IssueRequest{Agent: agent, Audience: audience}
			switch {
			case role != "":
				r, ok := a.cfg.Passport.Roles[role]
				if !ok {
					return usageError(fmt.Errorf("passport issue: no role %q (roles: %s)", role, strings.Join(roleNames(a.cfg.Passport.Roles), ", ")))
				}
				req.Scope, req.TTL, req.Mode = r.Scope, r.TTL, passport.Mode(r.Mode)
			case len(grants) > 0:
				for _, spec := range grants {
					g, err := parseGrant(spec)
					if err != nil {
						return usageError(fmt.Errorf("passport issue: --grant %q: %w", spec, err))
					}
					req.Scope = append(req.Scope, g)
				}
			default:
				b, err := readArg(a.stdin, scopeFile, passport.MaxScopeSize+1)
				if err != nil {
					return usageError(fmt.Errorf("passport issue: --scope: %w", err))
				}
				s, err := passport.ParseScope(b)
				if err != nil {
					return usageError(fmt.Errorf("passport issue: --scope %s: %w", scopeFile, err))
				}
				req.Scope = s
			}
			if cmd.Flags().Changed("ttl") {
				req.TTL = ttl
			}
			if cmd.Flags().Changed("mode") {
				req.Mode = passport.Mode(mode)
			}
			if err := req.Scope.Validate(); err != nil {
				return usageError(fmt.Errorf("passport issue: %w", err))
			}
			if parent != "" {
				tok, err := readToken(a.stdin, strings.TrimPrefix(parent, "@"), strings.HasPrefix(parent, "@"))
				if err != nil {
					return usageError(fmt.Errorf("passport issue: --parent: %w", err))
				}
				req.Parent = tok
			}

			keys, err := a.fleetIssuerKeys(ctx)
			if err != nil {
				return fmt.Errorf("passport issue: %w", err)
			}
			is := &passport.Issuer{
				Keys:       keys,
				Name:       a.cfg.Passport.Issuer,
				Audience:   a.cfg.Passport.Audience,
				DefaultTTL: a.cfg.Passport.DefaultTTL,
				MaxTTL:     a.cfg.Passport.MaxTTL,
			}
			if req.Parent != "" {
				// The parent must not be revoked: check it against the store.
				v, err := a.passportVerifier(keys.JWKS(time.Now()), true)
				if err != nil {
					return fmt.Errorf("passport issue: %w", err)
				}
				is.Parents = v
			}
			token, claims, err := is.Issue(ctx, req)
			if err != nil {
				if errors.Is(err, passport.ErrInvalidRequest) || errors.Is(err, passport.ErrTTLTooLong) ||
					errors.Is(err, passport.ErrInvalidScope) {
					return usageError(err)
				}
				return err
			}
			a.log.Info("passport issued", zap.String("agent", claims.Subject), zap.String("jti", claims.ID),
				zap.Time("exp", claims.Expiry), zap.Int("delegation_depth", len(claims.Delegation)))
			fmt.Fprintln(a.stdout, token)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&agent, "agent", "", "agent id: the passport's subject (required)")
	f.StringVar(&role, "role", "", "role template from passport.roles")
	f.StringArrayVar(&grants, "grant", nil, "a grant (see syntax above); repeatable")
	f.StringVar(&scopeFile, "scope", "", `YAML or JSON file with a list of grants ("-" for stdin)`)
	f.DurationVar(&ttl, "ttl", 0, "lifetime (default passport.default_ttl, at most passport.max_ttl)")
	f.StringVar(&mode, "mode", "enforce", "enforce, alert or shadow")
	f.StringVar(&parent, "parent", "", "delegate from this parent token (TOKEN, @FILE, or - for stdin)")
	f.StringVar(&audience, "audience", "", "aud claim (default passport.audience)")
	_ = cmd.MarkFlagRequired("agent")
	cmd.MarkFlagsMutuallyExclusive("role", "grant", "scope")
	return cmd
}

func newPassportVerifyCmd(a *app) *cobra.Command {
	var jwksFile string
	cmd := &cobra.Command{
		Use:   "verify TOKEN|-",
		Short: "Verify a passport and print its claims as JSON",
		Long: `verify checks a passport as the proxy does: size, algorithm (EdDSA only),
signature against the issuer's JWKS, dates (with passport.leeway), lifetime
(exp - iat at most passport.max_ttl), audience, issuer and the revocation set. It prints the claims as JSON and exits 0, or
prints the reason (passport_invalid, passport_expired, passport_revoked) and
exits 1.

With --jwks FILE it verifies against that JWKS instead of the local issuer
keys, and without revocation checks unless the local revocation file exists.`,
		Example: `  stack passport verify "$TOKEN"
  stack passport issue --agent a --role billing-reporter | stack passport verify -
  stack passport verify --jwks jwks.json "$TOKEN"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			token, err := readToken(a.stdin, args[0], false)
			if err != nil {
				return usageError(fmt.Errorf("passport verify: %w", err))
			}
			set, err := a.jwksFor(cmd, jwksFile)
			if err != nil {
				return err
			}
			v, err := a.passportVerifier(set, false)
			if err != nil {
				return fmt.Errorf("passport verify: %w", err)
			}
			claims, err := v.Verify(token)
			if err != nil {
				fmt.Fprintln(a.stdout, passport.Reason(err))
				return exitWith(exitFailure, err.Error())
			}
			return writeJSON(a.stdout, claims)
		},
	}
	cmd.Flags().StringVar(&jwksFile, "jwks", "", "verify against this JWKS file instead of the local issuer keys")
	return cmd
}

func newPassportJWKSCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "jwks",
		Short: "Print the issuer's public keys as a JWKS",
		Long: `jwks prints the JSON Web Key Set that verifies passports: the current key
and any rotated-out key still inside its overlap window. It holds public
keys only; publish it wherever verifiers fetch it. With control.store etcd
it is the set the control plane's replicas share, read from etcd.`,
		Example: `  stack passport jwks > jwks.json
  stack passport jwks | jq -r '.keys[].kid'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, err := a.fleetIssuerKeys(cmd.Context())
			if err != nil {
				return fmt.Errorf("passport jwks: %w", err)
			}
			return writeJSON(a.stdout, keys.JWKS(time.Now()))
		},
	}
}

func newPassportRevokeCmd(a *app) *cobra.Command {
	var jti, agent, reason string
	cmd := &cobra.Command{
		Use:   "revoke (--jti ID | --agent ID) [--reason TEXT]",
		Short: "Revoke one passport or every passport of an agent, with their delegates",
		Long: `revoke adds an entry to the revocation set (passport.revocations_path).

  --jti ID     revokes that passport and every passport delegated from it
  --agent ID   revokes every passport issued to the agent up to now, and
               every passport delegated from one of them (whoever holds
               it); new passports issued afterwards are valid

Entries expire on their own once no passport they cover can still be valid
(passport.max_ttl plus passport.leeway). While a sidecar runs with this data
directory, the revocation goes through its admin API and applies to its very
next request.

With a control plane (control.url, or run in its data directory), the
revocation goes to it and it pushes it to every sidecar; revoking an agent
there also disables it, so it gets no new passport until
"stack agent enable".`,
		Example: `  stack passport revoke --agent billing-bot --reason "credential burst"
  stack passport revoke --jti 3q2-7w9XQmW3cYbq5tKx1A`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if jti == "" && agent == "" {
				return usageError(errors.New("passport revoke: one of --jti or --agent is required"))
			}
			if c, err := a.controlAPI(cmd.Context(), false); err != nil {
				return fmt.Errorf("passport revoke: %w", err)
			} else if c != nil {
				// The control plane pushes it to every sidecar.
				var r passport.Revocation
				if err := c.do(cmd.Context(), http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: jti, Agent: agent, Reason: reason}, &r); err != nil {
					return fmt.Errorf("passport revoke: %w", controlUsage(err))
				}
				fmt.Fprintf(a.stdout, "revoked %s %s on the control plane; every sidecar applies it (entry kept until %s)\n", r.Kind, r.ID, r.ExpiresAt.Format(time.RFC3339))
				if agent != "" {
					fmt.Fprintf(a.stdout, "agent %s is disabled: `stack agent enable %s` lets it have new passports\n", agent, agent)
				}
				return nil
			}
			if c, err := a.runningSidecar(cmd.Context()); err != nil {
				return fmt.Errorf("passport revoke: %w", err)
			} else if c != nil {
				// The sidecar holds the store: it revokes, and the very next
				// request sees it.
				var r passport.Revocation
				if err := c.do(cmd.Context(), http.MethodPost, proxy.AdminRevoke, proxy.RevokeRequest{JTI: jti, Agent: agent, Reason: reason}, &r); err != nil {
					return fmt.Errorf("passport revoke: %w", err)
				}
				fmt.Fprintf(a.stdout, "revoked %s %s in the running sidecar (entry kept until %s)\n", r.Kind, r.ID, r.ExpiresAt.Format(time.RFC3339))
				return nil
			}
			store, err := a.openRevocations()
			if err != nil {
				return fmt.Errorf("passport revoke: %w", err)
			}
			var r passport.Revocation
			if jti != "" {
				r, err = store.RevokeJTI(jti, time.Time{}, reason)
			} else {
				r, err = store.RevokeAgent(agent, reason)
			}
			if err != nil {
				return fmt.Errorf("passport revoke: %w", err)
			}
			a.log.Info("passport revoked", zap.String("kind", string(r.Kind)), zap.String("id", r.ID), zap.String("reason", r.Reason))
			fmt.Fprintf(a.stdout, "revoked %s %s (entry kept until %s)\n", r.Kind, r.ID, r.ExpiresAt.Format(time.RFC3339))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&jti, "jti", "", "passport id (jti) to revoke")
	f.StringVar(&agent, "agent", "", "agent id whose passports to revoke")
	f.StringVar(&reason, "reason", "", "why, for people and the audit log")
	cmd.MarkFlagsMutuallyExclusive("jti", "agent")
	return cmd
}

func newPassportRotateKeyCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-key",
		Short: "Start signing with a new issuer key; keep the old one published until its passports expire",
		Long: `rotate-key generates a new Ed25519 issuer key, makes it current and saves
the key set (wrapped by the KMS). The previous key stays in the JWKS for
passport.max_ttl plus passport.leeway, so passports it signed keep verifying
until they expire; keys past that window are dropped. Verifiers pick up the
new key from the JWKS.

With control.store etcd the key set lives in etcd, shared by every replica
of the control plane: rotate-key asks the control plane (control.url, or the
one running with this data directory) to rotate it there. Every replica
publishes the new key at once, and it signs only after
control.key_activation_delay; the previous key signs until then. The keys
file in the data directory is not changed.`,
		Example: `  stack passport rotate-key
  stack passport rotate-key && stack passport jwks > jwks.json
  STACK_CONTROL_URL=https://stack-control:9443 stack passport rotate-key   # control.store: etcd`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if a.cfg.Control.OnEtcd() {
				return a.rotateSharedKey(ctx)
			}
			keys, err := a.issuerKeys(ctx)
			if err != nil {
				return fmt.Errorf("passport rotate-key: %w", err)
			}
			now := time.Now()
			oldKid, _ := keys.Current(now)
			keepFor := a.cfg.Passport.MaxTTL + a.cfg.Passport.Leeway
			newKid, err := keys.Rotate(now, keepFor)
			if err != nil {
				return fmt.Errorf("passport rotate-key: %w", err)
			}
			k, err := a.openKMS(ctx)
			if err != nil {
				return fmt.Errorf("passport rotate-key: %w", err)
			}
			if err := keys.Save(ctx, a.cfg.Passport.KeysPath, k); err != nil {
				return fmt.Errorf("passport rotate-key: %w", err)
			}
			a.log.Info("issuer key rotated", zap.String("kid", newKid), zap.String("previous_kid", oldKid))
			if c, err := a.runningSidecar(ctx); err != nil {
				return fmt.Errorf("passport rotate-key: saved, but the running sidecar cannot be told: %w", err)
			} else if c != nil {
				if err := c.do(ctx, http.MethodPost, proxy.AdminReload, nil, nil); err != nil {
					return fmt.Errorf("passport rotate-key: saved, but the running sidecar did not reload: %w", err)
				}
				fmt.Fprintln(a.stdout, "the running sidecar reloaded the key set")
			}
			if c, err := a.localControl(ctx); err != nil {
				return fmt.Errorf("passport rotate-key: saved, but the running control plane cannot be told: %w", err)
			} else if c != nil {
				if err := c.do(ctx, http.MethodPost, control.PathReload, nil, nil); err != nil {
					return fmt.Errorf("passport rotate-key: saved, but the running control plane did not reload: %w", err)
				}
				fmt.Fprintln(a.stdout, "the running control plane reloaded the key set; sidecars fetch the new key when they meet it")
			}
			fmt.Fprintf(a.stdout, "current key %s\nprevious key %s published until %s\n",
				newKid, oldKid, now.Add(keepFor).UTC().Format(time.RFC3339))
			return nil
		},
	}
}

// rotateSharedKey rotates the issuer key a control plane on etcd shares
// with its replicas.
func (a *app) rotateSharedKey(ctx context.Context) error {
	c, err := a.controlAPI(ctx, true)
	if err != nil {
		return fmt.Errorf("passport rotate-key: the keys are in etcd (control.store): %w", err)
	}
	var r control.KeyRotation
	if err := c.do(ctx, http.MethodPost, control.PathKeysRotate, nil, &r); err != nil {
		return fmt.Errorf("passport rotate-key: %w", err)
	}
	a.log.Info("issuer key rotated in the store", zap.String("kid", r.KID), zap.String("previous_kid", r.PreviousKID))
	fmt.Fprintf(a.stdout, "new key %s published by every replica, signing from %s\nprevious key %s signs until then, published until %s\n",
		r.KID, r.ActiveAt.UTC().Format(time.RFC3339), r.PreviousKID, r.PreviousRetireAfter.UTC().Format(time.RFC3339))
	return nil
}

// passportVerifier builds a verifier over set with the configured audience,
// issuer, leeway and max_ttl. The revocation store is consulted when its file
// exists; required makes it open (creating it) regardless.
func (a *app) passportVerifier(set jose.JSONWebKeySet, required bool) (*passport.Verifier, error) {
	opts := passport.VerifierOptions{
		Keys:      set,
		Audience:  a.cfg.Passport.Audience,
		Issuer:    a.cfg.Passport.Issuer,
		Leeway:    a.cfg.Passport.Leeway,
		MaxTTL:    a.cfg.Passport.MaxTTL,
		CacheSize: -1, // one verification per process
	}
	if a.cfg.Passport.Leeway == 0 {
		opts.Leeway = -1
	}
	_, statErr := os.Stat(a.cfg.Passport.RevocationsPath)
	if required || statErr == nil {
		store, err := a.openRevocations()
		if err != nil {
			return nil, err
		}
		opts.Revocations = store
	} else if !errors.Is(statErr, fs.ErrNotExist) {
		return nil, statErr
	}
	return passport.NewVerifier(opts)
}

// jwksFor returns the JWKS in file, or the local issuer keys' JWKS.
func (a *app) jwksFor(cmd *cobra.Command, file string) (jose.JSONWebKeySet, error) {
	if file == "" {
		keys, err := a.fleetIssuerKeys(cmd.Context())
		if err != nil {
			return jose.JSONWebKeySet{}, fmt.Errorf("passport verify: %w", err)
		}
		return keys.JWKS(time.Now()), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return jose.JSONWebKeySet{}, usageError(fmt.Errorf("passport verify: --jwks: %w", err))
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return jose.JSONWebKeySet{}, usageError(fmt.Errorf("passport verify: --jwks %s: %w", file, err))
	}
	return set, nil
}

// openRevocations opens the revocation store; it closes when the command
// ends.
func (a *app) openRevocations() (*passport.RevocationStore, error) {
	path := a.cfg.Passport.RevocationsPath
	// While a sidecar runs it holds the file: read its snapshot.
	if c, err := a.runningSidecar(context.Background()); err != nil {
		return nil, err
	} else if c != nil {
		if path, err = a.snapshot(context.Background(), c, proxy.AdminRevocations, "revocations"); err != nil {
			return nil, err
		}
	}
	s, err := passport.OpenRevocationStore(path, passport.RevocationOptions{
		Timeout: time.Second,
		MaxTTL:  a.cfg.Passport.MaxTTL,
		Leeway:  a.cfg.Passport.Leeway,
	})
	if errors.Is(err, passport.ErrStoreLocked) {
		return nil, fmt.Errorf("%w (is a sidecar running? it holds the file)", err)
	}
	if err != nil {
		return nil, err
	}
	a.onClose(s.Close)
	return s, nil
}

// parseGrant reads the --grant syntax described in `passport issue --help`.
func parseGrant(spec string) (passport.Grant, error) {
	var g passport.Grant
	for _, field := range strings.Split(spec, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(field), "=")
		if !ok || val == "" {
			return g, fmt.Errorf("%q: want KEY=VALUE", field)
		}
		list := strings.Split(val, "|")
		switch key {
		case "host", "hosts":
			g.Hosts = append(g.Hosts, list...)
		case "method", "methods":
			g.Methods = append(g.Methods, list...)
		case "path", "paths":
			g.Paths = append(g.Paths, list...)
		case "credential", "credentials":
			g.Credentials = append(g.Credentials, list...)
		case "param", "params":
			parts := strings.SplitN(val, ":", 4)
			if len(parts) != 4 {
				return g, fmt.Errorf("param %q: want FROM:NAME:OP:VALUE", val)
			}
			pc := passport.ParamConstraint{From: parts[0], Name: parts[1], Op: parts[2]}
			if pc.Op == passport.OpIn {
				pc.Values = strings.Split(parts[3], "|")
			} else {
				pc.Value = parts[3]
			}
			g.Params = append(g.Params, pc)
		case "handoff-to", "handoff-schemas":
			if g.Handoff == nil {
				g.Handoff = &passport.HandoffGrant{}
			}
			if key == "handoff-to" {
				g.Handoff.To = append(g.Handoff.To, list...)
			} else {
				g.Handoff.Schemas = append(g.Handoff.Schemas, list...)
			}
		case "scopes", "repositories", "actions", "resources", "regions", "permissions":
			if g.Narrow == nil {
				g.Narrow = &passport.Narrowing{}
			}
			if err := narrowField(g.Narrow, key, list); err != nil {
				return g, err
			}
		default:
			return g, fmt.Errorf("unknown key %q (want host, methods, paths, credentials, param, a narrowing: scopes, permissions, repositories, actions, resources, regions, or handoff-to and handoff-schemas)", key)
		}
	}
	return g, nil
}

// narrowField sets one narrowing field of the --grant syntax.
func narrowField(n *passport.Narrowing, key string, list []string) error {
	switch key {
	case "scopes":
		n.Scopes = append(n.Scopes, list...)
	case "repositories":
		n.Repositories = append(n.Repositories, list...)
	case "actions":
		n.Actions = append(n.Actions, list...)
	case "resources":
		n.Resources = append(n.Resources, list...)
	case "regions":
		n.Regions = append(n.Regions, list...)
	case "permissions":
		if n.Permissions == nil {
			n.Permissions = map[string]string{}
		}
		for _, p := range list {
			name, level, ok := strings.Cut(p, ":")
			if !ok {
				return fmt.Errorf("permissions %q: want NAME:LEVEL, such as contents:read", p)
			}
			n.Permissions[name] = level
		}
	}
	return nil
}

// readToken reads a token given as an argument, "-" (stdin) or, when
// fromFile, a file name.
func readToken(stdin io.Reader, arg string, fromFile bool) (string, error) {
	if arg != "-" && !fromFile {
		return strings.TrimSpace(arg), nil
	}
	b, err := readArg(stdin, arg, maxTokenInput)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readArg reads the file name, or stdin for "-", up to limit bytes (more
// is an error).
func readArg(stdin io.Reader, name string, limit int64) ([]byte, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes", name, limit)
	}
	return b, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func roleNames(roles map[string]passport.Role) []string {
	names := make([]string, 0, len(roles))
	for n := range roles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
