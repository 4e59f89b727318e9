package detect

import (
	"context"
	"errors"
	"fmt"

	"github.com/stackctl/stack/detect/judge"
)

// InjectionJudge is a model that judges content for prompt injection,
// the prompt_injection detector's optional last layer; *judge.Judge is
// one. It enforces its own time budget.
type InjectionJudge interface {
	Judge(ctx context.Context, args judge.Args) (judge.Verdict, error)
}

// JudgeWhen selects the content prompt_injection sends to its judge.
type JudgeWhen string

// The content a judge sees. Content the other layers already find
// critical is never sent: a judge can add a signal, not raise one.
const (
	// JudgeUncertain sends content the other layers scored above 0 but
	// below critical: some evidence, not enough to be sure. Content
	// nothing matched is not sent.
	JudgeUncertain JudgeWhen = "uncertain"
	// JudgeUntrusted sends every response body (content from upstreams,
	// which an LLM will read), whatever it scored, and request bodies
	// as JudgeUncertain does.
	JudgeUntrusted JudgeWhen = "untrusted"
	// JudgeAlways sends every text body in both directions.
	JudgeAlways JudgeWhen = "always"
)

// Rules of the judge's signals.
const (
	// RuleModelJudge is a judge's verdict of injection.
	RuleModelJudge = "model_judge"
	// RuleModelJudgeFailed is a judgement that failed (timeout, transport
	// error, malformed answer) under JudgeOptions.FailClosed.
	RuleModelJudgeFailed = "model_judge_failed"
)

// JudgeOptions add a model judge to the prompt_injection detector.
type JudgeOptions struct {
	// Judge is called on the content When selects.
	Judge InjectionJudge
	// Name says which judge it is in evidence ("chat", "classifier").
	Name string
	// When selects the content judged (default JudgeUncertain).
	When JudgeWhen
	// FailClosed makes a failed judgement a critical signal
	// (RuleModelJudgeFailed), as if the judge had found an injection;
	// otherwise a failure raises nothing and the other layers' verdict
	// stands.
	FailClosed bool
}

// WithJudge returns a copy of p that also asks o.Judge about the content
// o.When selects. A verdict of injection is a signal of its own
// (RuleModelJudge, the judge's score and reason), beside the patterns'.
func (p *PromptInjection) WithJudge(o JudgeOptions) (*PromptInjection, error) {
	if o.Judge == nil {
		return nil, fmt.Errorf("prompt injection judge: %w: no judge", ErrInvalidOptions)
	}
	switch o.When {
	case "":
		o.When = JudgeUncertain
	case JudgeUncertain, JudgeUntrusted, JudgeAlways:
	default:
		return nil, fmt.Errorf("prompt injection judge: %w: when %q (want uncertain, untrusted or always)", ErrInvalidOptions, o.When)
	}
	if o.Name == "" {
		o.Name = "model"
	}
	q := *p
	q.judge = &o
	return &q, nil
}

// selects reports whether the judge sees ev, whose content the other
// layers found r.
func (o *JudgeOptions) selects(ev *Event, r Result) bool {
	if r.Severity == Critical {
		return false
	}
	switch o.When {
	case JudgeAlways:
		return true
	case JudgeUntrusted:
		if ev.Direction == Response {
			return true
		}
	}
	return r.Score > 0
}

// judged asks the judge about body, the scan window of ev: what leaves
// the process is that window with secret-shaped strings redacted (a
// response body reaches the detectors after the proxy's own redaction of
// injected credentials; a request body before any is injected). It
// returns the signal the verdict raises, if any: critical from a score of
// critical on.
func (o *JudgeOptions) judged(ev *Event, body []byte, critical float64) (Signal, bool) {
	content := []byte(redactSecrets(string(body)))
	v, err := o.Judge.Judge(context.Background(), judge.Args{Content: content})
	dir := "request"
	if ev.Direction == Response {
		dir = "response"
	}
	if err != nil {
		if !o.FailClosed {
			return Signal{}, false
		}
		return Signal{
			Detector: InjectionName, Severity: Critical, Score: 1, Rule: RuleModelJudgeFailed,
			Evidence: fmt.Sprintf("%s judge failed on %s body (%s); on_error closed counts it as an injection", o.Name, dir, judgeFailure(err)),
		}, true
	}
	if !v.Injection {
		return Signal{}, false
	}
	sev := Warning
	if v.Score >= critical {
		sev = Critical
	}
	cost := fmt.Sprintf("judged in %dms", v.Took.Milliseconds())
	if v.Cached {
		cost = "cached verdict"
	}
	reason := redactSecrets(v.Reason)
	if reason == "" {
		reason = "no reason given"
	}
	return Signal{
		Detector: InjectionName, Severity: sev, Score: v.Score, Rule: RuleModelJudge,
		Evidence: fmt.Sprintf("%s judge: prompt injection in %s body, score %.2f: %s (%s)", o.Name, dir, v.Score, reason, cost),
	}, true
}

// judgeFailure names a judge's failure for evidence, without the
// endpoint's words.
func judgeFailure(err error) string {
	var se *judge.StatusError
	switch {
	case errors.Is(err, judge.ErrTimeout):
		return "timeout"
	case errors.Is(err, judge.ErrSuspended):
		return "suspended after failures in a row"
	case errors.As(err, &se):
		return fmt.Sprintf("HTTP %d", se.Status)
	case errors.Is(err, judge.ErrMalformed):
		return "malformed answer"
	case errors.Is(err, judge.ErrUnavailable):
		return "endpoint unreachable"
	}
	return "error"
}
