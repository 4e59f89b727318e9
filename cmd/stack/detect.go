package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/stackctl/stack/detect"
)

// maxScanInput is the most content `detect scan` reads.
const maxScanInput = 10 << 20

// exitFlagged is the status of `detect scan` for flagged content.
const exitFlagged = 3

func newDetectCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "detect",
		Short: "Run the detectors on content outside the proxy",
	}
	cmd.AddCommand(newDetectScanCmd(a))
	return cmd
}

// scanVerdict is what `detect scan` prints.
type scanVerdict struct {
	Flagged bool            `json:"flagged"`
	Score   float64         `json:"score"`
	Signals []detect.Signal `json:"signals"`
	Matches []detect.Match  `json:"matches,omitempty"`
}

func newDetectScanCmd(a *app) *cobra.Command {
	var threshold float64
	var verbose bool
	cmd := &cobra.Command{
		Use:   "scan [FILE|-]",
		Short: "Score content for prompt injection and credential exfiltration",
		Long: `Scan reads content (a file, or standard input when FILE is "-" or absent;
at most 10 MiB) that an agent retrieved outside the proxy, and scores it
with the prompt_injection detector (patterns, after decoding base64, hex,
percent and entity encodings, hidden HTML, Unicode tricks, leetspeak,
ROT13, reversed and padded text) and the credential_exfiltration detector
(placeholders and secret-shaped strings; the vault is not opened).

It prints the verdict as JSON: {"flagged": ..., "score": ..., "signals":
[...]}. Evidence never quotes a secret. Exit status: 0 clean, 3 flagged,
2 usage error, 1 failure.`,
		Example: `  curl -s https://example.com/page.html | stack detect scan -
  stack detect scan tool-output.json
  stack detect scan --threshold 0.7 --matches mail.eml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if threshold < 0 || threshold > 1 {
				return usageError(fmt.Errorf("--threshold %v: want a score between 0 and 1", threshold))
			}
			name := "-"
			if len(args) == 1 {
				name = args[0]
			}
			data, err := readScanInput(a, name)
			if err != nil {
				return err
			}
			v, err := scanContent(data, threshold)
			if err != nil {
				return usageError(err)
			}
			if !verbose {
				v.Matches = nil
			}
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(v); err != nil {
				return fmt.Errorf("detect scan: write verdict: %w", err)
			}
			if v.Flagged {
				return exitWith(exitFlagged, "")
			}
			return nil
		},
	}
	cmd.Flags().Float64Var(&threshold, "threshold", 0, fmt.Sprintf("prompt-injection score at or above which content is flagged (default %v)", detect.DefaultInjectionThreshold))
	cmd.Flags().BoolVar(&verbose, "matches", false, "also print every pattern match with the view it was found in")
	return cmd
}

// readScanInput reads at most maxScanInput bytes of name ("-" is stdin).
func readScanInput(a *app, name string) ([]byte, error) {
	var r io.Reader = a.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, usageError(fmt.Errorf("detect scan: %w", err))
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxScanInput+1))
	if err != nil {
		return nil, fmt.Errorf("detect scan: read %s: %w", name, err)
	}
	if len(data) > maxScanInput {
		return nil, usageError(fmt.Errorf("detect scan: %s is larger than %d MiB; scan a part of it", name, maxScanInput>>20))
	}
	return data, nil
}

// scanContent runs prompt_injection and credential_exfiltration on data.
func scanContent(data []byte, threshold float64) (scanVerdict, error) {
	opts := detect.PromptInjectionOptions{Threshold: threshold, Window: max(len(data), 1)}
	pi, err := detect.NewPromptInjection(opts)
	if err != nil {
		return scanVerdict{}, err
	}
	ex, err := detect.NewExfiltration(detect.ExfiltrationOptions{Window: max(len(data), 1)})
	if err != nil {
		return scanVerdict{}, err
	}
	ev := &detect.Event{Direction: detect.Request, Body: data}
	v := scanVerdict{Signals: []detect.Signal{}}
	r := detect.Scan(data, opts)
	v.Score, v.Matches = r.Score, r.Matches
	v.Signals = append(v.Signals, pi.Inspect(ev)...)
	v.Signals = append(v.Signals, ex.Inspect(ev)...)
	v.Flagged = len(v.Signals) > 0
	return v, nil
}
