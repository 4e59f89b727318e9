package detect

import (
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Defaults of SummarizerOptions.
const (
	DefaultSummaryWindow  = time.Minute
	DefaultSummaryMaxKeys = 10000
)

// summaryShards spreads keys over locks, so that storms of different keys
// do not wait on one another.
const summaryShards = 32

// SignalKey names a stream of repeated signals: one detector finding the
// same thing (its rule) for one agent on requests carrying the same
// credentials. A new rule is news, reported at once: a burst that passes
// from its pre-baseline cap to its baseline, another kind of secret, an
// injection pattern not seen yet.
type SignalKey struct {
	Detector string
	// Rule is the signal's rule (the pattern or threshold it matched),
	// empty when it has none.
	Rule  string
	Agent string
	// Credential is the event's credential names (CredentialKey); empty
	// when there are none.
	Credential string
}

// CredentialKey is the Credential of a SignalKey for an event's
// credentials: their names joined with ",", empty when there are none.
// One name is returned as it is, without allocating.
func CredentialKey(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names, ",")
}

// Occurrence is one signal of a key as a Summarizer counts it.
type Occurrence struct {
	Time     time.Time
	Severity Severity
	Score    float64
	// Action is the decision's action on the event.
	Action      Action
	PassportJTI string
	Method      string
	Host        string
	Path        string
}

// Summary stands for the signals of one key that a Summarizer folded
// since the key's previous summary (or its first signal).
type Summary struct {
	SignalKey
	// Count is how many signals were folded.
	Count int
	// From and To are the earliest and latest times of those signals.
	From, To time.Time
	// First and Last are the first and last of them to arrive.
	First, Last Occurrence
	// Severity, Score and Action are the highest among them.
	Severity Severity
	Score    float64
	Action   Action
	// PeakPerSecond is the most of them in one second (of Unix time).
	PeakPerSecond int
}

// Span is how long the folded signals lasted, from the earliest to the
// latest.
func (s Summary) Span() time.Duration { return s.To.Sub(s.From) }

// summaryTime is how summaries write times: UTC, milliseconds.
const summaryTime = "2006-01-02T15:04:05.000Z07:00"

// maxSummaryDetail bounds Detail: an audit record's detail is at most 300
// bytes.
const maxSummaryDetail = 300

// Detail is the summary in one line, for an audit record's detail and an
// alert's evidence:
//
//	summary: 1234 more signals 2026-12-03T16:00:01.123Z..2026-12-03T16:01:00.980Z, peak 250/s, first GET api.example.test/v1/x
//
// "signal" is singular for a count of 1. The first request's host and
// path end the line and are cut so that it stays within 300 bytes.
func (s Summary) Detail() string {
	b := make([]byte, 0, 160)
	b = append(b, "summary: "...)
	b = strconv.AppendInt(b, int64(s.Count), 10)
	if s.Count == 1 {
		b = append(b, " more signal "...)
	} else {
		b = append(b, " more signals "...)
	}
	b = s.From.UTC().AppendFormat(b, summaryTime)
	b = append(b, ".."...)
	b = s.To.UTC().AppendFormat(b, summaryTime)
	b = append(b, ", peak "...)
	b = strconv.AppendInt(b, int64(s.PeakPerSecond), 10)
	b = append(b, "/s, first "...)
	b = append(b, s.First.Method...)
	b = append(b, ' ')
	b = append(b, s.First.Host...)
	b = append(b, s.First.Path...)
	if len(b) > maxSummaryDetail {
		n := maxSummaryDetail
		for n > 0 && !utf8.RuneStart(b[n]) {
			n--
		}
		b = b[:n]
	}
	return string(b)
}

// Alert is the summary as a webhook alert: Summary set, the counts and
// times filled, the last folded request's agent, passport and target.
func (s Summary) Alert() Alert {
	return Alert{
		Time: s.To, Agent: s.Agent, PassportJTI: s.Last.PassportJTI, Credential: s.Credential,
		Host: s.Last.Host, Method: s.Last.Method, Path: s.Last.Path,
		Detector: s.Detector, Rule: s.Rule, Severity: s.Severity, Score: s.Score, Evidence: s.Detail(), Action: s.Action,
		Summary: true, Count: s.Count, First: s.From, Last: s.To, PeakPerSecond: s.PeakPerSecond,
	}
}

// SummarizerOptions configure a Summarizer. The zero value means every
// default.
type SummarizerOptions struct {
	// Window is how often a key that keeps firing is summarized, and how
	// long a key must stay quiet to be forgotten (DefaultSummaryWindow,
	// 1 minute).
	Window time.Duration
	// MaxKeys bounds the keys followed at once (DefaultSummaryMaxKeys,
	// 10,000). Past it, the signals of a new key are not folded.
	MaxKeys int
}

// Summarizer decides which detector signals go out on their own and
// which are folded into a summary, so that a storm of one signal costs
// about as much as a single one:
//
//   - the first signal of a key (Fold returns false) goes out at once;
//   - while the key keeps firing, its signals are folded (Fold returns
//     true) and counted;
//   - once a Window has passed since the key's first signal or its last
//     summary, Due returns one Summary of what was folded;
//   - a key that folded nothing during a whole Window is forgotten, so
//     that its next signal goes out at once again.
//
// It keeps at most MaxKeys keys; the signals of keys past that are never
// folded, so that nothing is hidden when memory runs out. It is safe for
// concurrent use, and Fold does not allocate for a key it already
// follows. A Summarizer has no goroutine: its owner calls Due
// periodically and Close at the end.
type Summarizer struct {
	window  time.Duration
	maxKeys int64
	keys    atomic.Int64
	closed  atomic.Bool
	seed    maphash.Seed
	shards  [summaryShards]summaryShard
}

type summaryShard struct {
	mu sync.Mutex
	m  map[SignalKey]*summaryEntry
	_  [48]byte // keeps neighbouring shards' locks off one cache line
}

// summaryEntry is one key's state since its first signal or last summary.
type summaryEntry struct {
	since time.Time // the start of the current window
	n     int
	from  time.Time
	to    time.Time
	first Occurrence
	last  Occurrence
	sev   Severity
	score float64
	act   Action
	sec   int64 // the Unix second being counted
	secN  int   // signals in it
	peak  int
}

// NewSummarizer checks opts and returns a Summarizer.
func NewSummarizer(opts SummarizerOptions) (*Summarizer, error) {
	if opts.Window < 0 || opts.MaxKeys < 0 {
		return nil, fmt.Errorf("detect: new summarizer: negative window or max keys: %w", ErrInvalidOptions)
	}
	if opts.Window == 0 {
		opts.Window = DefaultSummaryWindow
	}
	if opts.MaxKeys == 0 {
		opts.MaxKeys = DefaultSummaryMaxKeys
	}
	s := &Summarizer{window: opts.Window, maxKeys: int64(opts.MaxKeys), seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].m = map[SignalKey]*summaryEntry{}
	}
	return s, nil
}

// Window returns the summarizer's window.
func (s *Summarizer) Window() time.Duration { return s.window }

// Keys returns how many keys are followed now.
func (s *Summarizer) Keys() int { return int(s.keys.Load()) }

func (s *Summarizer) shard(k *SignalKey) *summaryShard {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(k.Detector)
	h.WriteByte(0)
	h.WriteString(k.Rule)
	h.WriteByte(0)
	h.WriteString(k.Agent)
	h.WriteByte(0)
	h.WriteString(k.Credential)
	return &s.shards[h.Sum64()%summaryShards]
}

// Fold reports whether the signal o of key k is folded into k's next
// summary. When it is not (the first signal of a storm, a key past
// MaxKeys, a closed summarizer), the caller sends the signal on as usual.
func (s *Summarizer) Fold(k SignalKey, o Occurrence) bool {
	sh := s.shard(&k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	e := sh.m[k]
	if e == nil {
		if s.keys.Add(1) > s.maxKeys {
			s.keys.Add(-1)
			return false
		}
		sh.m[k] = &summaryEntry{since: o.Time}
		return false
	}
	if e.n == 0 && o.Time.Sub(e.since) >= s.window {
		// Quiet for a whole window, and not yet forgotten by Due: this
		// signal starts a storm of its own.
		e.since = o.Time
		return false
	}
	e.add(&o)
	return true
}

func (e *summaryEntry) add(o *Occurrence) {
	if e.n == 0 {
		e.from, e.to, e.first = o.Time, o.Time, *o
		e.sev, e.score, e.act = o.Severity, o.Score, o.Action
	}
	e.n++
	e.last = *o
	if o.Time.Before(e.from) {
		e.from = o.Time
	}
	if o.Time.After(e.to) {
		e.to = o.Time
	}
	if o.Severity.Rank() > e.sev.Rank() {
		e.sev = o.Severity
	}
	e.score = max(e.score, o.Score)
	if o.Action.Rank() > e.act.Rank() {
		e.act = o.Action
	}
	// Signals of an earlier second, arriving late, count in the current
	// one: the peak is an estimate, never an undercount of a second.
	if sec := o.Time.Unix(); sec > e.sec {
		e.sec, e.secN = sec, 1
	} else {
		e.secN++
	}
	e.peak = max(e.peak, e.secN)
}

func (e *summaryEntry) summary(k SignalKey) Summary {
	return Summary{
		SignalKey: k, Count: e.n, From: e.from, To: e.to, First: e.first, Last: e.last,
		Severity: e.sev, Score: e.score, Action: e.act, PeakPerSecond: e.peak,
	}
}

// reset starts a new window at t, with nothing folded.
func (e *summaryEntry) reset(t time.Time) { *e = summaryEntry{since: t} }

// Due returns a summary of every key whose window has ended by now and
// that folded at least one signal in it, and starts the key's next
// window; it forgets keys that folded nothing in a whole window.
func (s *Summarizer) Due(now time.Time) []Summary {
	var out []Summary
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if now.Sub(e.since) < s.window {
				continue
			}
			if e.n == 0 {
				delete(sh.m, k)
				s.keys.Add(-1)
				continue
			}
			out = append(out, e.summary(k))
			e.reset(now)
		}
		sh.mu.Unlock()
	}
	return out
}

// Close makes every later Fold return false and returns a summary of
// every key that folded signals since its last summary, so that nothing
// counted is lost. It may be called more than once; later calls return
// nothing.
func (s *Summarizer) Close() []Summary {
	s.closed.Store(true)
	var out []Summary
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.n > 0 {
				out = append(out, e.summary(k))
			}
			delete(sh.m, k)
			s.keys.Add(-1)
		}
		sh.mu.Unlock()
	}
	return out
}
