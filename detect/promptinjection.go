package detect

import (
	"fmt"
	"strings"

	"github.com/stackctl/stack/detect/injection"
)

// InjectionName is the prompt-injection detector's config name.
const InjectionName = "prompt_injection"

// Prompt-injection defaults (see package injection).
const (
	DefaultInjectionThreshold = injection.DefaultThreshold
	DefaultInjectionCritical  = injection.DefaultCritical
	DefaultHiddenBonus        = injection.DefaultHiddenBonus
	DefaultMentionFactor      = injection.DefaultMentionFactor
	// DefaultScanWindow is the most content a scan looks at; the proxy
	// passes at most this much of a body.
	DefaultScanWindow = injection.DefaultWindow
	// DefaultMaxDepth bounds nested decoding (base64 inside percent
	// encoding, entities inside base64, ...).
	DefaultMaxDepth = injection.DefaultMaxDepth
)

// Category groups injection patterns by what they try to achieve.
type Category = injection.Category

// Pattern categories.
const (
	CategoryOverride   = injection.CategoryOverride
	CategoryRolePlay   = injection.CategoryRolePlay
	CategoryExtraction = injection.CategoryExtraction
	CategoryToolHijack = injection.CategoryToolHijack
	CategoryExfil      = injection.CategoryExfil
	CategoryMarkdown   = injection.CategoryMarkdown
	CategoryAddress    = injection.CategoryAddress
)

// Pattern is one entry of the prompt-injection catalogue.
type Pattern = injection.Pattern

// Patterns returns a copy of the prompt-injection catalogue.
func Patterns() []Pattern { return injection.Patterns() }

// PromptInjectionOptions configure the prompt_injection detector and
// Scan. The zero value means the defaults; see injection.Options for
// what each field does.
type PromptInjectionOptions = injection.Options

// Match is one catalogue pattern found in scanned content; detect's
// excerpts have secret-shaped strings redacted.
type Match = injection.Match

// Result is the verdict of Scan (see injection.Result: a scan stops once
// the score is critical).
type Result struct {
	Flagged  bool     `json:"flagged"`
	Score    float64  `json:"score"`
	Severity Severity `json:"severity,omitempty"`
	// Matches are ordered by weight, strongest first.
	Matches []Match `json:"matches,omitempty"`
}

// Scan scores text for prompt injection with package injection's
// scanner. It does no I/O and never fails; invalid options fall back to
// the defaults.
func Scan(text []byte, opts PromptInjectionOptions) Result {
	return result(injection.Scan(text, opts))
}

// result turns the scanner's verdict into detect's, redacting secrets
// from the excerpts: evidence never quotes a secret.
func result(r injection.Result) Result {
	out := Result{Flagged: r.Flagged, Score: r.Score}
	if r.Flagged {
		out.Severity = Warning
		if r.Critical {
			out.Severity = Critical
		}
	}
	out.Matches = r.Matches
	for i := range out.Matches {
		out.Matches[i].Span.Excerpt = redactSecrets(out.Matches[i].Span.Excerpt)
	}
	return out
}

// PromptInjection is the prompt_injection detector: it scans request
// bodies (tool output on its way to a model) and response bodies
// (fetched content coming back) with Scan.
type PromptInjection struct {
	opts PromptInjectionOptions
	// judge, when set (WithJudge), is asked about the content it selects.
	judge *JudgeOptions
}

// NewPromptInjection returns the detector. Options out of range are an
// error wrapping ErrInvalidOptions.
func NewPromptInjection(opts PromptInjectionOptions) (*PromptInjection, error) {
	o, err := opts.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("prompt injection options: %w: %v", ErrInvalidOptions, err)
	}
	return &PromptInjection{opts: o}, nil
}

// Name returns "prompt_injection".
func (p *PromptInjection) Name() string { return InjectionName }

// Inspect scans ev.Body, in either direction, and asks the judge (if
// any) about the content it selects. Media and archives are not text and
// are skipped.
func (p *PromptInjection) Inspect(ev *Event) []Signal {
	if len(ev.Body) == 0 || binaryContent(ev.ContentType) {
		return nil
	}
	r := result(injection.Scan(ev.Body, p.opts))
	var sigs []Signal
	if r.Flagged {
		top := r.Matches[0]
		span := top.Span
		dir := "request"
		if ev.Direction == Response {
			dir = "response"
		}
		sigs = append(sigs, Signal{
			Detector: InjectionName,
			Severity: r.Severity,
			Score:    r.Score,
			Rule:     top.Pattern,
			Span:     &span,
			Evidence: fmt.Sprintf("prompt injection in %s body, score %.2f: %s; matched %q", dir, r.Score, summarize(r.Matches), span.Excerpt),
		})
	}
	if p.judge != nil && p.judge.selects(ev, r) {
		window := p.opts.Window
		if window <= 0 {
			window = DefaultScanWindow
		}
		if s, ok := p.judge.judged(ev, ev.Body[:min(len(ev.Body), window)], p.opts.Critical); ok {
			sigs = append(sigs, s)
		}
	}
	return sigs
}

// binaryContent reports content types that cannot carry readable
// instructions.
func binaryContent(ct string) bool {
	ct = strings.ToLower(ct)
	for _, p := range binaryTypes {
		if strings.HasPrefix(ct, p) {
			return true
		}
	}
	return false
}

// binaryTypes are the media type prefixes binaryContent reports.
var binaryTypes = []string{"image/", "audio/", "video/", "font/", "application/octet-stream", "application/zip", "application/gzip", "application/x-tar", "application/pdf"}

func summarize(ms []Match) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		s := m.Pattern
		if m.Obfuscated {
			s += " (in " + m.View + ")"
		}
		if m.Mention {
			s += " (quoted)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}
