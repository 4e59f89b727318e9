package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackctl/stack/control"
)

func newAgentDetectorsCmd(a *app) *cobra.Command {
	var (
		set, reason string
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "detectors NAME [--set DETECTOR=MODE --reason TEXT] [--json]",
		Short: "Show or set an agent's detector modes, with the rollout gate",
		Long: `detectors shows the mode of each detector for one agent, as the control
plane sets it, and the rollout gate: how long the detector has been clean
(no detector_fired record shipped by the agent's sidecars) since its mode
was set, against control.detector_gate (48h by default). A detector in
alert that has been clean for the whole gate is ready for block.

A mode set here replaces, for this agent only, the mode in its sidecars'
config (detect.<detector>.mode), within a second and without a restart:
off, shadow, alert, block or revoke. "default" removes it, and the
configured mode applies again. The passport's mode claim and
detect.alert_only still cap what the agent's mode asks for.

The gate is advice: a mode can be set before the gate is met (to stop an
incident at once); the command then says so. Every change is written to
the control plane's audit log (detector_mode_changed) with the reason.

The detectors: credential_burst, scope_drift, prompt_injection,
credential_exfiltration.`,
		Example: `  stack agent detectors billing-bot
  stack agent detectors billing-bot --set credential_burst=alert --reason "start the rollout"
  stack agent detectors billing-bot --set credential_burst=block --reason "clean for 48h in alert"
  stack agent detectors billing-bot --set credential_burst=default --reason "back to the config's mode"
  stack agent detectors billing-bot --json | jq '.detectors[] | select(.gate_met) | .detector'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name := args[0]
			var req control.DetectorModeRequest
			if set != "" {
				d, m, ok := strings.Cut(set, "=")
				if !ok || d == "" || m == "" {
					return usageError(fmt.Errorf("agent detectors: --set %q: want DETECTOR=MODE, such as credential_burst=block", set))
				}
				if strings.TrimSpace(reason) == "" {
					return usageError(errors.New("agent detectors: --set needs --reason: say why, for the audit log"))
				}
				req = control.DetectorModeRequest{Detector: d, Mode: m, Reason: reason}
			} else if reason != "" {
				return usageError(errors.New("agent detectors: --reason goes with --set"))
			}
			c, err := a.controlAPI(ctx, true)
			if err != nil {
				return err
			}
			var ad control.AgentDetectors
			if err := c.do(ctx, http.MethodGet, control.DetectorsPath(name), nil, &ad); err != nil {
				return fmt.Errorf("agent detectors: %w", err)
			}
			if set != "" {
				before := ad
				ad = control.AgentDetectors{}
				if err := c.do(ctx, http.MethodPost, control.DetectorsPath(name), req, &ad); err != nil {
					return fmt.Errorf("agent detectors: %w", controlUsage(err))
				}
				now := stateIn(ad, req.Detector)
				fmt.Fprintf(a.stdout, "agent %s: %s is %s\n", name, req.Detector, modeText(now))
				if was := stateIn(before, req.Detector); control.GateStandsBefore(now.Mode) && !was.GateMet {
					fmt.Fprintf(a.stderr, "note: the rollout gate was not met: %s was %s and %s\n", req.Detector, modeText(was), gateText(was, before.Gate))
				}
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(ad)
			}
			return printDetectors(a.stdout, ad)
		},
	}
	f := cmd.Flags()
	f.StringVar(&set, "set", "", "DETECTOR=MODE: off, shadow, alert, block, revoke, or default to remove the agent's mode")
	f.StringVar(&reason, "reason", "", "why, for the audit log (required with --set)")
	f.BoolVar(&asJSON, "json", false, "print the modes as JSON")
	return cmd
}

// printDetectors writes the table of an agent's detector modes.
func printDetectors(w io.Writer, ad control.AgentDetectors) error {
	fmt.Fprintf(w, "agent %s, rollout gate %s (a detector in alert clean this long is ready for block)\n", ad.Agent, shortDuration(time.Duration(ad.Gate)))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DETECTOR\tMODE\tGATE\tLAST SIGNAL\tSET")
	for _, d := range ad.Detectors {
		last := "-"
		if !d.LastSignal.IsZero() {
			last = d.LastSignal.UTC().Format(time.RFC3339)
		}
		setBy := "-"
		if d.By != "" {
			setBy = d.Since.UTC().Format(time.RFC3339) + " by " + d.By
			if d.Reason != "" {
				setBy += ": " + d.Reason
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Detector, d.Mode, gateText(d, ad.Gate), last, setBy)
	}
	return tw.Flush()
}

// stateIn is detector's entry in ad (the zero entry if it has none).
func stateIn(ad control.AgentDetectors, detector string) control.DetectorState {
	for _, d := range ad.Detectors {
		if d.Detector == detector {
			return d
		}
	}
	return control.DetectorState{Detector: detector}
}

func modeText(d control.DetectorState) string {
	if !d.Override {
		return "default (the sidecars' configured mode)"
	}
	return d.Mode
}

// gateText is "clean for 31h of 48h" for a detector in alert, the gate
// counting only there, and "clean for 31h" otherwise.
func gateText(d control.DetectorState, gate control.Duration) string {
	s := "clean for " + shortDuration(time.Duration(d.CleanFor))
	if d.Mode != "alert" {
		return s
	}
	s += " of " + shortDuration(time.Duration(gate))
	if d.GateMet {
		s += ", ready for block"
	}
	return s
}

// shortDuration rounds down to the largest whole unit: 31h, 12m, 5s.
func shortDuration(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", max(d, 0)/time.Second)
}
