package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/passport"
)

func newAgentCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Register and manage the agents a control plane issues passports to",
		Long: `An agent is a name, the scope its passports carry (a role of the control
plane's passport.roles, or grants), their lifetime and mode, and who may act
as it: a sidecar that joined with a join token for it, or a workload whose
OIDC token a rule of control.oidc_issuers maps to it.

These commands talk to the control plane: control.url (STACK_CONTROL_URL)
with the operator token in control.token_file, or the control plane running
with this data directory.`,
	}
	cmd.AddCommand(newAgentRegisterCmd(a), newAgentListCmd(a), newAgentShowCmd(a),
		newAgentDisableCmd(a, true), newAgentDisableCmd(a, false), newAgentDetectorsCmd(a))
	return cmd
}

func newAgentRegisterCmd(a *app) *cobra.Command {
	var (
		role, mode     string
		grants, labels []string
		ttl            time.Duration
		update         bool
	)
	cmd := &cobra.Command{
		Use:   "register NAME (--role R | --grant SPEC ...) [--ttl 15m] [--mode enforce] [--label k=v ...]",
		Short: "Register an agent (or change one with --update)",
		Long: `register adds an agent to the control plane. Its passports carry the
role's scope (resolved now, from the control plane's passport.roles) or the
grants given, with the --grant syntax of "stack passport issue". --ttl is
the passports' lifetime (default: the role's, else passport.default_ttl);
sidecars refresh them at 2/3 of it.`,
		Example: `  stack agent register billing-bot --role billing-reporter
  stack agent register deploy-bot --ttl 10m \
      --grant 'host=api.github.com,methods=GET|POST,paths=/repos/acme/**,credentials=github' --label team=platform
  stack agent register billing-bot --role billing-refunds --update`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (role == "") == (len(grants) == 0) {
				return usageError(errors.New("agent register: give --role or --grant (one or more), not both"))
			}
			req := control.AgentRequest{Agent: control.Agent{Name: args[0], Role: role, TTL: control.Duration(ttl), Mode: passport.Mode(mode)}, Update: update}
			for _, spec := range grants {
				g, err := parseGrant(spec)
				if err != nil {
					return usageError(fmt.Errorf("agent register: --grant %q: %w", spec, err))
				}
				req.Scope = append(req.Scope, g)
			}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return usageError(fmt.Errorf("agent register: --label %q: want KEY=VALUE", l))
				}
				if req.Labels == nil {
					req.Labels = map[string]string{}
				}
				req.Labels[k] = v
			}
			c, err := a.controlAPI(cmd.Context(), true)
			if err != nil {
				return err
			}
			var out control.Agent
			if err := c.do(cmd.Context(), http.MethodPost, control.PathAgents, req, &out); err != nil {
				return fmt.Errorf("agent register: %w", controlUsage(err))
			}
			verb := "registered"
			if update {
				verb = "updated"
			}
			fmt.Fprintf(a.stdout, "%s agent %s (%d grants, passports for %s)\n", verb, out.Name, len(out.Scope), agentTTL(out))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&role, "role", "", "a role of the control plane's passport.roles")
	f.StringArrayVar(&grants, "grant", nil, "a grant, as for `stack passport issue --grant`; repeatable")
	f.DurationVar(&ttl, "ttl", 0, "passport lifetime (default: the role's, else passport.default_ttl)")
	f.StringVar(&mode, "mode", "", "enforce (default), alert or shadow")
	f.StringArrayVar(&labels, "label", nil, "KEY=VALUE, repeatable")
	f.BoolVar(&update, "update", false, "replace the definition of an agent registered already")
	return cmd
}

func agentTTL(ag control.Agent) string {
	if ag.TTL == 0 {
		return "the default TTL"
	}
	return time.Duration(ag.TTL).String()
}

// controlUsage marks the control plane's refusals of input as usage
// errors (exit status 2).
func controlUsage(err error) error {
	var ae *adminError
	if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
		return usageError(err)
	}
	return err
}

func newAgentListCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List registered agents",
		Example: `  stack agent list
  stack agent list --json | jq -r '.[] | select(.disabled) | .name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.controlAPI(cmd.Context(), true)
			if err != nil {
				return err
			}
			var agents []control.Agent
			if err := c.do(cmd.Context(), http.MethodGet, control.PathAgents, nil, &agents); err != nil {
				return fmt.Errorf("agent list: %w", err)
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(agents)
			}
			if len(agents) == 0 {
				fmt.Fprintln(a.stdout, "no agents (add one with `stack agent register`)")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATUS\tROLE\tGRANTS\tTTL\tLABELS")
			for _, ag := range agents {
				status := "enabled"
				if ag.Disabled {
					status = "disabled"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", ag.Name, status, orDash(ag.Role), len(ag.Scope), agentTTL(ag), labelText(ag.Labels))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func newAgentShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME",
		Short:   "Show an agent's definition as JSON: scope, TTL, mode, labels, status",
		Example: `  stack agent show billing-bot | jq .scope`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.controlAPI(cmd.Context(), true)
			if err != nil {
				return err
			}
			var ag control.Agent
			if err := c.do(cmd.Context(), http.MethodGet, control.PathAgents+"/"+url.PathEscape(args[0]), nil, &ag); err != nil {
				return fmt.Errorf("agent show: %w", err)
			}
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(ag)
		},
	}
}

func newAgentDisableCmd(a *app, disable bool) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "disable NAME [--reason TEXT]",
		Short: "Disable an agent: revoke its passports on every sidecar and issue it no more",
		Long: `disable stops the control plane from issuing, renewing or leasing anything
for the agent, and revokes every passport it holds: every sidecar refuses
the agent's next request (passport_revoked). "stack agent enable" lets it
have passports again.`,
		Example: `  stack agent disable billing-bot --reason "credential burst"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.controlAPI(cmd.Context(), true)
			if err != nil {
				return err
			}
			verb := "disable"
			if !disable {
				verb = "enable"
			}
			var ag control.Agent
			if err := c.do(cmd.Context(), http.MethodPost, control.PathAgents+"/"+url.PathEscape(args[0])+"/"+verb, control.DisableRequest{Reason: reason}, &ag); err != nil {
				return fmt.Errorf("agent %s: %w", verb, err)
			}
			fmt.Fprintf(a.stdout, "%sd agent %s\n", verb, ag.Name)
			return nil
		},
	}
	if disable {
		cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	} else {
		cmd.Use = "enable NAME"
		cmd.Short = "Let a disabled agent have passports again"
		cmd.Long = `enable lets the control plane issue passports to the agent again. Passports
revoked while it was disabled stay revoked.`
		cmd.Example = "  stack agent enable billing-bot"
	}
	return cmd
}

func labelText(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return strings.Join(keys, ",")
}
