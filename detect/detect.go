package detect

import (
	"net/http"
	"net/url"
	"time"

	"github.com/stackctl/stack/detect/injection"
)

// Severity ranks a signal.
type Severity string

// Severities, in rising order.
const (
	Info     Severity = "info"
	Warning  Severity = "warning"
	Critical Severity = "critical"
)

// Rank orders severities: info 1, warning 2, critical 3, unknown 0.
func (s Severity) Rank() int {
	switch s {
	case Info:
		return 1
	case Warning:
		return 2
	case Critical:
		return 3
	}
	return 0
}

// Direction says which way the content of an event flows.
type Direction int

const (
	// Request is traffic from the agent to an upstream (tool output going
	// to an LLM API, data going to a tool).
	Request Direction = iota
	// Response is traffic from an upstream back to the agent (fetched
	// content an LLM will read).
	Response
)

// Event is what a detector sees of one request or response. The proxy
// fills it; detect.scan fills it for content read outside the proxy.
type Event struct {
	Time        time.Time
	Direction   Direction
	Agent       string // passport subject
	PassportJTI string
	// Mode is the passport's mode claim: enforce, alert or shadow.
	Mode   string
	Host   string // as hostmatch.Normalize writes it; one it refuses, as sent
	Method string
	Path   string
	Query  url.Values
	// Headers are a request's headers as the agent sent them, before any
	// credential is injected; a Proxy-Authorization among them (the
	// proxy's own, consumed) is ignored. Nil for responses.
	Headers http.Header
	// Credentials are the vault credentials this request would have
	// injected (granted and bound), by name.
	Credentials []string
	// Placeholders are credential names of placeholders seen anywhere in
	// the request (URL, headers, body), bound to Host or not.
	Placeholders []string
	// ScopeDenied is set, with ScopeReason, when the passport's scope
	// refused the request: a hard signal for scope drift.
	ScopeDenied bool
	ScopeReason string
	// Handoff marks a handoff sent or received through the sidecar's own
	// endpoint: its grant, not the agent's habits, decides whether it
	// may happen, so scope drift does not score it; what it carries is
	// scanned like any body.
	Handoff bool
	// Body is a bounded window of the body (the proxy passes at most the
	// configured scan window), nil when none.
	Body        []byte
	ContentType string
	// Status is the upstream's status, for responses.
	Status int
}

// Signal is one detector's finding about one event.
type Signal struct {
	Detector string   `json:"detector"`
	Severity Severity `json:"severity"`
	// Score is the detector's confidence or magnitude, from 0 to 1 for
	// classifiers; rate detectors may report the ratio itself.
	Score float64 `json:"score"`
	// Evidence says what was seen, for people: never a secret; matched
	// text is quoted in a short excerpt.
	Evidence string `json:"evidence"`
	// Rule names the pattern or rule that matched, when there is one.
	Rule string `json:"rule,omitempty"`
	// Span locates matched text in the event's (normalized) body, when
	// there is one.
	Span *Span `json:"span,omitempty"`
}

// Span is a byte range [Start, End) of the content a signal refers to,
// and an excerpt of it: the scanner's span, so a match's span is a
// signal's as it is.
type Span = injection.Span

// Detector inspects events. Implementations are safe for concurrent use
// and fast: they run inline on the request path.
type Detector interface {
	// Name is the detector's config name, e.g. "credential_burst".
	Name() string
	// Inspect returns the signals an event raises, none when it is clean.
	Inspect(ev *Event) []Signal
}
