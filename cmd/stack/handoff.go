package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/handoff"
)

func newHandoffCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "handoff",
		Short: "Operate encrypted handoffs between agents: payload schemas, what waits",
		Long: `A handoff is JSON one agent passes to another through their sidecars:
validated against a named schema, signed by the sender's key, encrypted to
the recipient's, kept by the control plane (wrapped again by its KMS) until
the recipient fetches it, once.

These commands talk to the control plane (control.url and the operator
token, as for stack agent). They show metadata only: the control plane
cannot read a handoff.`,
	}
	schema := &cobra.Command{Use: "schema", Short: "Put and list the JSON Schemas (2020-12) handoff payloads are checked against"}
	schema.AddCommand(newHandoffSchemaPutCmd(a), newHandoffSchemaListCmd(a))
	cmd.AddCommand(schema, newHandoffListCmd(a))
	return cmd
}

func newHandoffSchemaPutCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "put NAME FILE",
		Short: "Store (or replace) a payload schema; FILE - reads standard input",
		Long: `put checks FILE as a JSON Schema (draft 2020-12 unless its $schema says
otherwise; formats asserted; $ref only inside the document) and stores it
as NAME (lowercase letters, digits and . _ / -, such as findings/v1).
Passports grant handing off per schema name.`,
		Example: `  stack handoff schema put findings/v1 findings.schema.json`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var doc []byte
			var err error
			if args[1] == "-" {
				doc, err = io.ReadAll(io.LimitReader(a.stdin, handoff.MaxSchemaSize+1))
			} else {
				doc, err = os.ReadFile(args[1])
			}
			if err != nil {
				return err
			}
			// The same check the control plane makes, before the call:
			// the error names the file.
			if _, err := handoff.CompileSchema(args[0], doc); err != nil {
				return usageError(fmt.Errorf("%s: %w", args[1], err))
			}
			c, err := a.controlAPI(cmd.Context(), true)
			if err != nil {
				return err
			}
			var hs control.HandoffSchema
			if err := c.do(cmd.Context(), http.MethodPost, control.PathHandoffSchemas, control.HandoffSchema{Name: args[0], Schema: doc}, &hs); err != nil {
				return fmt.Errorf("handoff schema put: %w", err)
			}
			fmt.Fprintf(a.stdout, "stored schema %s\n", hs.Name)
			return nil
		},
	}
}

func newHandoffSchemaListCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the payload schemas",
		Example: `  stack handoff schema list
  stack handoff schema list --json | jq '.[] | select(.name == "findings/v1") | .schema'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.controlAPI(cmd.Context(), true)
			if err != nil {
				return err
			}
			var list []control.HandoffSchema
			if err := c.do(cmd.Context(), http.MethodGet, control.PathHandoffSchemas, nil, &list); err != nil {
				return fmt.Errorf("handoff schema list: %w", err)
			}
			if asJSON {
				return printJSON(a.stdout, list)
			}
			if len(list) == 0 {
				fmt.Fprintln(a.stdout, "no schemas (add one with `stack handoff schema put`)")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tBYTES\tUPDATED")
			for _, hs := range list {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", hs.Name, len(hs.Schema), hs.Updated.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array, schemas included")
	return cmd
}

func newHandoffListCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the handoffs waiting for their recipients (metadata only)",
		Example: `  stack handoff list
  stack handoff list --json | jq -r '.[] | select(.to == "drafter") | .id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.controlAPI(cmd.Context(), true)
			if err != nil {
				return err
			}
			var list []control.HandoffMeta
			if err := c.do(cmd.Context(), http.MethodGet, control.PathHandoffsAll, nil, &list); err != nil {
				return fmt.Errorf("handoff list: %w", err)
			}
			if asJSON {
				return printJSON(a.stdout, list)
			}
			if len(list) == 0 {
				fmt.Fprintln(a.stdout, "no handoffs waiting")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tFROM\tTO\tSCHEMA\tBYTES\tDEPOSITED\tEXPIRES")
			for _, m := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", m.ID, m.From, m.To, m.Schema, m.Size, m.Deposited.Format(time.RFC3339), m.Expires.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
