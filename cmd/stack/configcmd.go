package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

func newConfigCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check or show the effective configuration",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and exit: 0 valid, 2 invalid (every problem listed)",
		Long: `check loads stack.yaml, STACK_* environment variables and flags exactly as
every other command does and changes nothing. It reports every problem at
once: unknown keys, values that do not parse, and values that are not
allowed, each naming the key, what is allowed, and where the value came
from when that is not the file (an environment variable or a flag). Use it
before restarting a sidecar with a new stack.yaml.`,
		Example: `  stack config check
  STACK_PROXY_LISTEN=0.0.0.0:8080 stack config check --config ./stack.yaml`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			// load has already validated; reaching here means valid.
			src := a.cfg.File
			if src == "" {
				src = "defaults (no stack.yaml in " + a.home() + ")"
			}
			fmt.Fprintf(a.stdout, "configuration ok: %s\n", src)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "show",
		Short:   "Print the effective configuration as YAML, paths resolved",
		Example: `  stack config show`,
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			b, err := yaml.Marshal(a.cfg)
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(b)
			return err
		},
	})
	return cmd
}
