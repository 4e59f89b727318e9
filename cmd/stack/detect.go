package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/detect/injection"
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

// lineVerdict is what `detect scan --jsonl` prints for each line.
type lineVerdict struct {
	Line int             `json:"line"`
	ID   json.RawMessage `json:"id,omitempty"`
	scanVerdict
}

func newDetectScanCmd(a *app) *cobra.Command {
	var threshold float64
	var verbose, jsonl, learned bool
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
[...]}. Evidence never quotes a secret.

With --jsonl the input is many documents, one JSON value a line: a string,
or an object with a "text" string and an optional "id" (any JSON value,
echoed back). It prints one verdict a line, in order, each with its line
number and id; a line of at most 10 MiB. With --learned the
prompt_injection detector also runs its learned layer (off by default; see
docs/detectors.md for what it catches and what it flags by mistake).

Exit status: 0 clean, 3 flagged (any document, with --jsonl), 2 usage
error (a line that is not a string or an object with "text" included),
1 failure.`,
		Example: `  curl -s https://example.com/page.html | stack detect scan -
  stack detect scan tool-output.json
  stack detect scan --threshold 0.7 --matches mail.eml
  stack detect scan --jsonl --learned documents.jsonl > verdicts.jsonl`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if threshold < 0 || threshold > 1 {
				return usageError(fmt.Errorf("--threshold %v: want a score between 0 and 1", threshold))
			}
			name := "-"
			if len(args) == 1 {
				name = args[0]
			}
			learnedThreshold := 0.0
			if learned {
				learnedThreshold = injection.RecommendedLearnedThreshold
			}
			if jsonl {
				return scanLines(a, name, threshold, learnedThreshold, verbose)
			}
			data, err := readScanInput(a, name)
			if err != nil {
				return err
			}
			v, err := scanContentLearned(data, threshold, learnedThreshold)
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
	cmd.Flags().BoolVar(&jsonl, "jsonl", false, "read one document a line (a JSON string or {\"id\": ..., \"text\": ...}) and print one verdict a line")
	cmd.Flags().BoolVar(&learned, "learned", false, "also run the prompt_injection detector's learned layer")
	return cmd
}

// scanLines is `detect scan --jsonl`: a verdict per line of name.
func scanLines(a *app, name string, threshold, learned float64, verbose bool) error {
	var r io.Reader = a.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return usageError(fmt.Errorf("detect scan: %w", err))
		}
		defer f.Close()
		r = f
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxScanInput+1)
	w := bufio.NewWriter(a.stdout)
	enc := json.NewEncoder(w)
	flagged := false
	line := 0
	for sc.Scan() {
		line++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		text, id, err := parseScanLine(raw)
		if err != nil {
			w.Flush()
			return usageError(fmt.Errorf("detect scan: %s line %d: %w", name, line, err))
		}
		v, err := scanContentLearned([]byte(text), threshold, learned)
		if err != nil {
			return usageError(err)
		}
		if !verbose {
			v.Matches = nil
		}
		flagged = flagged || v.Flagged
		if err := enc.Encode(lineVerdict{Line: line, ID: id, scanVerdict: v}); err != nil {
			return fmt.Errorf("detect scan: write verdict: %w", err)
		}
	}
	if err := sc.Err(); err != nil {
		w.Flush()
		if errors.Is(err, bufio.ErrTooLong) {
			return usageError(fmt.Errorf("detect scan: %s line %d is larger than %d MiB", name, line+1, maxScanInput>>20))
		}
		return fmt.Errorf("detect scan: read %s: %w", name, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("detect scan: write verdict: %w", err)
	}
	if flagged {
		return exitWith(exitFlagged, "")
	}
	return nil
}

// parseScanLine reads one --jsonl line: a JSON string, or an object with
// a "text" string and an optional "id".
func parseScanLine(raw []byte) (text string, id json.RawMessage, err error) {
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return "", nil, fmt.Errorf("not a JSON string: %w", err)
		}
		return text, nil, nil
	}
	var doc struct {
		ID   json.RawMessage `json:"id"`
		Text *string         `json:"text"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return "", nil, fmt.Errorf("not a JSON string or object: %w", err)
	}
	if doc.Text == nil {
		return "", nil, errors.New(`the object has no "text" string`)
	}
	return *doc.Text, doc.ID, nil
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
	return scanContentLearned(data, threshold, 0)
}

// scanContentLearned is scanContent with the prompt_injection detector's
// learned layer at threshold learned (0: off).
func scanContentLearned(data []byte, threshold, learned float64) (scanVerdict, error) {
	opts := detect.PromptInjectionOptions{Threshold: threshold, Window: max(len(data), 1), LearnedThreshold: learned}
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
