package main

import (
	"github.com/spf13/cobra"
)

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "stack",
		Short: "A runtime control plane for AI agents: passports, injected credentials, detectors, audit",
		Long: `STACK runs beside an AI agent as an HTTPS proxy. The agent holds only a
placeholder such as stk_ph_stripe; the proxy checks the agent's passport,
swaps the placeholder for the real credential (decrypted through a KMS) on
the way to the hosts it is bound to, runs detectors on every request, and
writes a hash-chained audit log.

The data directory is ~/.stack unless STACK_HOME or --home says otherwise;
its stack.yaml holds the configuration (see "stack init").

Commands print their result on stdout and errors on stderr, nothing else:
they log only warnings and errors unless --log-level says otherwise, so
TOKEN=$(stack passport issue ...) holds the token alone. "stack proxy", a
server, logs at log.level (stack.yaml or STACK_LOG_LEVEL; info by default).`,
		Example: `  stack init
  stack passport issue --agent billing-bot --role billing-reporter
  stack audit verify`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return a.load(cmd) },
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	pf := root.PersistentFlags()
	pf.StringVar(&a.homeFlag, "home", "", "data directory (default $STACK_HOME or ~/.stack)")
	pf.StringVar(&a.configFlag, "config", "", "config file (default DATA-DIR/stack.yaml)")
	pf.StringVar(&a.logLevel, "log-level", "", "log level: debug, info, warn or error (default warn; for stack proxy, log.level from the config: info)")
	root.CompletionOptions.DisableDefaultCmd = true

	root.AddCommand(
		newInitCmd(a),
		newConfigCmd(a),
		newPassportCmd(a),
		newVaultCmd(a),
		newAuditCmd(a),
		newCACmd(a),
		newProxyCmd(a),
		newDemoCmd(a),
		newDetectCmd(a),
		newControlCmd(a),
		newAgentCmd(a),
		newHandoffCmd(a),
		newMCPCmd(a),
	)
	return root
}
