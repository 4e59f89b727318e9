package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/inject"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// DefaultScanWindow bounds the body bytes detectors see per request and
// per response.
const DefaultScanWindow = 64 << 10

// Revoker revokes passports; *passport.RevocationStore is one.
type Revoker interface {
	RevokeJTI(jti string, exp time.Time, reason string) (passport.Revocation, error)
}

// AlertFunc receives every alert the detectors ask for: one per outcome
// of a decision that asks for an alert or more, and one per summary of
// folded signals. It is called on the request path (or the summarizing
// goroutine) and must not block; (*detect.Webhook).Notify is one.
type AlertFunc func(a detect.Alert)

// sentHeader returns req's headers as the agent sent them, for the
// detectors to judge after the injector has rendered credentials into the
// request: a shallow copy, as the injector replaces header values and
// never changes one in place. Without detectors there is nothing to copy.
func (p *Proxy) sentHeader(req *http.Request) http.Header {
	if p.opts.Grid == nil {
		return nil
	}
	return maps.Clone(req.Header)
}

// runDetectors evaluates the grid on ev and carries out its decision:
// every signal is counted and audited, alerts are sent, a block refuses
// the request and a revoke also revokes the passport (and so every
// passport delegated from it). With a summarizer, a signal that repeats
// one already reported (same detector, rule, agent and credential) is
// folded into the next summary instead of audited, logged and alerted on
// its own; it is still counted, and the decision still acts. It returns
// the refusal, or nil.
func (p *Proxy) runDetectors(ctx context.Context, ev *detect.Event, claims *passport.Claims) *denial {
	if p.opts.Grid == nil {
		return nil
	}
	d := p.opts.Grid.Evaluate(ev)
	if len(d.Signals) == 0 && d.Action == detect.ActionNone {
		return nil
	}
	cred := detect.CredentialKey(ev.Credentials)
	var folded uint64 // bit i: d.Signals[i] was folded
	out := 0
	for i, s := range d.Signals {
		p.metrics.signal(s.Detector, string(s.Severity)).Inc()
		if p.fold(ev, &d, i, cred, folded) {
			folded |= 1 << i
			continue
		}
		out++
		p.record(ctx, audit.Record{
			Action: audit.ActionDetectorFired, AgentID: ev.Agent, PassportJTI: ev.PassportJTI, CredentialID: cred,
			Host: ev.Host, Method: ev.Method, Path: ev.Path, Detector: s.Detector, Severity: string(s.Severity),
			Reason: string(d.Action), Detail: truncateDetail(s.Evidence),
		})
	}
	if out > 0 || len(d.Signals) == 0 {
		p.log.Info("detector signals", zap.String("agent", ev.Agent), zap.String("host", ev.Host),
			zap.String("action", string(d.Action)), zap.Int("signals", out))
		if d.Action.Alerts() && p.opts.Alerts != nil {
			for _, a := range detect.AlertsFor(ev, unfolded(d, folded)) {
				p.opts.Alerts(a)
			}
		}
	}
	switch d.Action {
	case detect.ActionBlock:
		return &denial{Status: http.StatusForbidden, Reason: reason.DetectorBlocked, Detail: blockDetail(d, "blocked")}
	case detect.ActionRevoke:
		if claims != nil && p.opts.Revoker != nil {
			why := "revoked by " + firedDetectors(d)
			if _, err := p.opts.Revoker.RevokeJTI(claims.ID, claims.Expiry, why); err != nil {
				// Fail closed: the request is blocked either way.
				p.log.Error("revocation failed", zap.String("jti", claims.ID), zap.Error(err))
			} else {
				p.record(ctx, audit.Record{
					Action: audit.ActionPassportRevoked, AgentID: claims.Subject, PassportJTI: claims.ID,
					Host: ev.Host, Method: ev.Method, Path: ev.Path, Detector: firedDetectors(d), Reason: reason.RevokedByDetector, Detail: why,
				})
			}
		}
		return &denial{Status: http.StatusForbidden, Reason: reason.DetectorBlocked, Detail: blockDetail(d, "blocked and the passport revoked")}
	}
	return nil
}

// fold reports whether signal i of d is folded into a summary; folded
// marks the signals before it that were.
func (p *Proxy) fold(ev *detect.Event, d *detect.Decision, i int, cred string, folded uint64) bool {
	if p.opts.Summaries == nil || i >= 64 {
		return false
	}
	s := &d.Signals[i]
	// The event that starts a storm is reported whole: a second finding
	// of the same kind on it goes out with the first.
	for j := range i {
		if folded&(1<<j) == 0 && d.Signals[j].Detector == s.Detector && d.Signals[j].Rule == s.Rule {
			return false
		}
	}
	return p.opts.Summaries.Fold(detect.SignalKey{Detector: s.Detector, Rule: s.Rule, Agent: ev.Agent, Credential: cred}, detect.Occurrence{
		Time: ev.Time, Severity: s.Severity, Score: s.Score, Action: d.Action, PassportJTI: ev.PassportJTI,
		Method: ev.Method, Host: ev.Host, Path: ev.Path,
	})
}

// unfolded is d without the signals whose bits are set in folded (and
// their outcomes), for the alerts of the signals that go out. Composite
// rules' outcomes stay: they go out with any signal that does.
func unfolded(d detect.Decision, folded uint64) detect.Decision {
	if folded == 0 {
		return d
	}
	kept := d
	kept.Signals, kept.Outcomes = nil, nil
	for i, s := range d.Signals {
		if i < 64 && folded&(1<<i) != 0 {
			continue
		}
		kept.Signals = append(kept.Signals, s)
		kept.Outcomes = append(kept.Outcomes, d.Outcomes[i])
	}
	kept.Outcomes = append(kept.Outcomes, d.Outcomes[len(d.Signals):]...)
	return kept
}

// summaryTick is how often folded signals are looked at for summaries
// that are due: a summary goes out at most this late.
const summaryTick = time.Second

// summarize emits the summaries that fall due until Close stops it.
func (p *Proxy) summarize() {
	defer close(p.sumDone)
	t := time.NewTicker(min(summaryTick, p.opts.Summaries.Window()))
	defer t.Stop()
	for {
		select {
		case <-p.sumStop:
			return
		case <-t.C:
			p.emitDueSummaries()
		}
	}
}

// emitDueSummaries emits every summary due now. Sweeps take turns, so
// once a call returns, every summary due when it began has gone out.
func (p *Proxy) emitDueSummaries() {
	p.sumMu.Lock()
	defer p.sumMu.Unlock()
	p.emitSummaries(p.opts.Summaries.Due(p.now()))
}

// emitSummaries audits, logs and alerts each summary: one detector_fired
// record whose detail is the summary's and whose duration is the span of
// the signals it stands for. Nothing waits on these records, so they are
// queued without waiting for their sync.
func (p *Proxy) emitSummaries(sums []detect.Summary) {
	ctx := context.Background()
	for _, s := range sums {
		p.recordDone(ctx, audit.Record{
			Action: audit.ActionDetectorFired, AgentID: s.Agent, PassportJTI: s.Last.PassportJTI, CredentialID: s.Credential,
			Host: s.Last.Host, Method: s.Last.Method, Path: s.Last.Path, Detector: s.Detector, Severity: string(s.Severity),
			Reason: string(s.Action), Detail: s.Detail(), DurationMS: s.Span().Milliseconds(),
		})
		p.log.Info("detector signals summarized", zap.String("agent", s.Agent), zap.String("host", s.Last.Host),
			zap.String("action", string(s.Action)), zap.Int("signals", s.Count), zap.String("detector", s.Detector),
			zap.String("credential", s.Credential), zap.Time("first", s.From), zap.Time("last", s.To),
			zap.Int("peak_per_second", s.PeakPerSecond))
		if s.Action.Alerts() && p.opts.Alerts != nil {
			p.opts.Alerts(s.Alert())
		}
	}
}

func firedDetectors(d detect.Decision) string {
	seen := map[string]bool{}
	var names []string
	for _, s := range d.Signals {
		if !seen[s.Detector] {
			seen[s.Detector] = true
			names = append(names, s.Detector)
		}
	}
	return strings.Join(names, "+")
}

func blockDetail(d detect.Decision, what string) string {
	return fmt.Sprintf("%s by %s", what, firedDetectors(d))
}

// truncateDetail keeps at most 300 bytes of s, cut between characters:
// the audit log refuses a record that is not valid UTF-8.
func truncateDetail(s string) string {
	if len(s) <= 300 {
		return s
	}
	n := 300
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// streamingType reports content that must flow as it arrives.
func streamingType(ct string) bool {
	// Only the media type matters, compared case-insensitively; parsing
	// the parameters would cost allocations on every response. A value
	// mime.ParseMediaType would refuse is judged on its media type too,
	// so a malformed event stream still streams.
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	return strings.EqualFold(mt, "text/event-stream") ||
		len(mt) >= len("multipart/") && strings.EqualFold(mt[:len("multipart/")], "multipart/")
}

// scanResponse runs the response-side detectors. A small, complete body
// is read and judged before the agent sees any of it, so a block can
// still refuse it; any other body is judged on its first ScanWindow bytes
// as they stream past, where only alert and revoke (for what follows) are
// possible.
// It returns a refusal to send instead of the response, or nil.
func (p *Proxy) scanResponse(ctx context.Context, resp *http.Response, st *reqState) *denial {
	if p.opts.Grid == nil || resp.Body == nil || resp.Body == http.NoBody {
		return nil
	}
	window := p.scanWindow()
	ev := &detect.Event{
		Time: p.now(), Direction: detect.Response, Host: st.host, Method: st.method, Path: st.path,
		ContentType: resp.Header.Get("Content-Type"), Status: resp.StatusCode, Credentials: injectedList(st.injected),
	}
	if st.claims != nil {
		ev.Agent, ev.PassportJTI, ev.Mode = st.claims.Subject, st.claims.ID, string(st.claims.Mode)
	}
	if p.wholeBody(resp.ContentLength, ev.ContentType) {
		body, err := readSmall(resp.Body, resp.ContentLength)
		if err != nil {
			resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
			return nil
		}
		ev.Body = body
		if d := p.runDetectors(ctx, ev, st.claims); d != nil {
			d.Detail = "response " + d.Detail
			return d
		}
		resp.Body = newMemBody(body)
		return nil
	}
	resp.Body = &scanningBody{ReadCloser: resp.Body, window: window, judge: func(b []byte) {
		ev.Body = b
		p.runDetectors(ctx, ev, st.claims)
	}}
	return nil
}

func (p *Proxy) scanWindow() int {
	if p.opts.ScanWindow > 0 {
		return p.opts.ScanWindow
	}
	return DefaultScanWindow
}

func injectedList(in []inject.Injected) []string {
	out := make([]string, len(in))
	for i, x := range in {
		out[i] = x.Name
	}
	return out
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// scanningBody passes bytes through untouched while keeping a copy of the
// first window of them, judged once when the window fills or the body ends.
type scanningBody struct {
	io.ReadCloser
	window int
	buf    []byte
	once   sync.Once
	judge  func([]byte)
}

func (b *scanningBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if len(b.buf) < b.window {
		take := min(n, b.window-len(b.buf))
		b.buf = append(b.buf, p[:take]...)
	}
	if len(b.buf) >= b.window || err != nil {
		b.once.Do(func() { b.judge(b.buf) })
	}
	return n, err
}

func (b *scanningBody) Close() error {
	b.once.Do(func() { b.judge(b.buf) })
	return b.ReadCloser.Close()
}
