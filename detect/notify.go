package detect

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of WebhookOptions.
const (
	DefaultWebhookTimeout      = 10 * time.Second
	DefaultWebhookMaxRetries   = 5
	DefaultWebhookBackoffBase  = 500 * time.Millisecond
	DefaultWebhookBackoffMax   = 30 * time.Second
	DefaultWebhookJitter       = 0.2
	DefaultWebhookQueueSize    = 1000
	DefaultWebhookDrainTimeout = 5 * time.Second
)

// Alert is what the webhook posts about one signal or composite rule
// that asked for an alert or more, or about a summary of repeated
// signals (Summary set).
type Alert struct {
	Time        time.Time `json:"time"`
	Agent       string    `json:"agent"`
	PassportJTI string    `json:"passport_jti,omitempty"`
	// Credential is the request's credential names, joined with ",".
	Credential string `json:"credential,omitempty"`
	Host       string `json:"host"`
	Method     string `json:"method,omitempty"`
	Path       string `json:"path,omitempty"`
	// Detector is the detector that fired; for a composite rule, the
	// detectors that fired on the event, joined with "+".
	Detector string `json:"detector"`
	// Rule is the composite rule's name, or the signal's rule.
	Rule     string   `json:"rule,omitempty"`
	Severity Severity `json:"severity"`
	Score    float64  `json:"score"`
	Evidence string   `json:"evidence"`
	// Action is what the policy did about it: alert, block or revoke.
	Action Action `json:"action"`

	// Summary marks an alert that stands for Count signals of one
	// detector, rule, agent and credential folded by a Summarizer after the
	// first of them was alerted on its own; First and Last are the
	// earliest and latest of them, PeakPerSecond the most in one second.
	// Host, Method, Path and PassportJTI are the last folded request's,
	// and Evidence is Summary.Detail. Time is Last.
	Summary       bool      `json:"summary,omitempty"`
	Count         int       `json:"count,omitempty"`
	First         time.Time `json:"first,omitzero"`
	Last          time.Time `json:"last,omitzero"`
	PeakPerSecond int       `json:"peak_per_second,omitempty"`
}

// AlertsFor returns one Alert per outcome of d that asks for an alert or
// more, for Webhook.Notify.
func AlertsFor(ev *Event, d Decision) []Alert {
	var out []Alert
	base := Alert{Time: ev.Time, Agent: ev.Agent, PassportJTI: ev.PassportJTI, Credential: CredentialKey(ev.Credentials),
		Host: ev.Host, Method: ev.Method, Path: ev.Path}
	for i, o := range d.Outcomes {
		if !o.Action.Alerts() {
			continue
		}
		a := base
		a.Action = o.Action
		if !o.Composite && i < len(d.Signals) {
			s := d.Signals[i]
			a.Detector, a.Rule, a.Severity, a.Score, a.Evidence = s.Detector, s.Rule, s.Severity, s.Score, s.Evidence
			out = append(out, a)
			continue
		}
		var names, evidence []string
		a.Severity = Info
		for _, s := range d.Signals {
			if !contains(names, s.Detector) {
				names = append(names, s.Detector)
			}
			evidence = append(evidence, s.Evidence)
			if s.Severity.Rank() > a.Severity.Rank() {
				a.Severity = s.Severity
			}
		}
		a.Detector, a.Rule, a.Score = strings.Join(names, "+"), o.Rule, 1
		a.Evidence = clip("composite rule "+o.Rule+": "+strings.Join(evidence, "; "), 1000)
		out = append(out, a)
	}
	return out
}

// Backoff shapes the waits between webhook retries: Base doubled on each
// retry up to Max, minus up to Jitter (a fraction) of it at random, so
// that sidecars do not retry in step.
type Backoff struct {
	Base   time.Duration // DefaultWebhookBackoffBase, 500 ms
	Max    time.Duration // DefaultWebhookBackoffMax, 30 s
	Jitter float64       // DefaultWebhookJitter, 0.2; negative for none
}

// WebhookOptions configure a Webhook. Only URL is required.
type WebhookOptions struct {
	// URL receives a JSON POST per alert, e.g. a Slack incoming webhook.
	// It is treated as a secret (such URLs embed a token): errors name only
	// its scheme and host.
	URL string
	// Client sends the requests. When nil, a client of the webhook's own
	// is used: no proxy from the environment, TLS 1.2 or later, redirects
	// not followed.
	Client *http.Client
	// Header is added to every request (for instance an Authorization
	// header a receiver expects); never logged.
	Header http.Header
	// Timeout bounds one attempt (DefaultWebhookTimeout, 10 s).
	Timeout time.Duration
	// MaxRetries bounds the retries after a 5xx, a 429 or a network error
	// (DefaultWebhookMaxRetries, 5; negative for none). Other statuses are
	// not retried.
	MaxRetries int
	// Backoff shapes the waits between retries.
	Backoff Backoff
	// QueueSize bounds the alerts waiting to be sent; past it Notify drops
	// them and counts the drop (DefaultWebhookQueueSize, 1000).
	QueueSize int
	// DrainTimeout bounds how long Close keeps sending what is queued
	// (DefaultWebhookDrainTimeout, 5 s; negative: drop it at once).
	DrainTimeout time.Duration
	// Now stamps alerts that have no Time (time.Now when nil).
	Now func() time.Time
	// Sleep waits between retries; it returns early with ctx's error when
	// ctx ends. Tests inject one that does not sleep.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnError, when set, is called from the webhook's goroutine for each
	// alert given up on. The error never contains the URL's path or query.
	OnError func(Alert, error)
}

// WebhookStats counts what a Webhook did.
type WebhookStats struct {
	Sent    uint64 // alerts the receiver accepted (2xx)
	Failed  uint64 // alerts given up on after retries or a non-retryable status
	Dropped uint64 // alerts never attempted: queue full, or closed
	Retries uint64 // attempts after the first
}

// Webhook posts alerts to a URL from one goroutine of its own, so that
// Notify never blocks the request path.
type Webhook struct {
	opts     WebhookOptions
	redacted string
	q        chan Alert

	mu      sync.Mutex
	started bool
	closed  atomic.Bool
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when the goroutine returns
	cancel  context.CancelFunc

	sent, failed, dropped, retries atomic.Uint64
}

// NewWebhook checks opts and returns a Webhook; Start runs it.
func NewWebhook(opts WebhookOptions) (*Webhook, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL may hold a token: it is not repeated here.
		return nil, fmt.Errorf("detect: new webhook: URL must be an absolute http or https URL: %w", ErrInvalidOptions)
	}
	if opts.Timeout < 0 || opts.QueueSize < 0 || opts.Backoff.Base < 0 || opts.Backoff.Max < 0 {
		return nil, fmt.Errorf("detect: new webhook: negative value: %w", ErrInvalidOptions)
	}
	if opts.Client == nil {
		opts.Client = defaultWebhookClient()
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultWebhookTimeout
	}
	switch {
	case opts.MaxRetries == 0:
		opts.MaxRetries = DefaultWebhookMaxRetries
	case opts.MaxRetries < 0:
		opts.MaxRetries = 0
	}
	if opts.Backoff.Base == 0 {
		opts.Backoff.Base = DefaultWebhookBackoffBase
	}
	if opts.Backoff.Max == 0 {
		opts.Backoff.Max = DefaultWebhookBackoffMax
	}
	switch {
	case opts.Backoff.Jitter == 0:
		opts.Backoff.Jitter = DefaultWebhookJitter
	case opts.Backoff.Jitter < 0:
		opts.Backoff.Jitter = 0
	case opts.Backoff.Jitter > 1:
		opts.Backoff.Jitter = 1
	}
	if opts.QueueSize == 0 {
		opts.QueueSize = DefaultWebhookQueueSize
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = DefaultWebhookDrainTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleepCtx
	}
	return &Webhook{
		opts:     opts,
		redacted: u.Scheme + "://" + u.Host + "/…",
		q:        make(chan Alert, opts.QueueSize),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}, nil
}

func defaultWebhookClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil, // never HTTPS_PROXY: that may be this very sidecar
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 10 * time.Second,
			MaxIdleConns:          4,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Notify queues an alert and returns at once. When the queue is full, or
// the webhook is closed, the alert is dropped and counted.
func (w *Webhook) Notify(a Alert) {
	if w.closed.Load() {
		w.dropped.Add(1)
		return
	}
	if a.Time.IsZero() {
		a.Time = w.opts.Now()
	}
	select {
	case w.q <- a:
	default:
		w.dropped.Add(1)
	}
}

// NotifyDecision queues an alert for every outcome of d that asks for one.
func (w *Webhook) NotifyDecision(ev *Event, d Decision) {
	for _, a := range AlertsFor(ev, d) {
		w.Notify(a)
	}
}

// Stats returns the counts so far.
func (w *Webhook) Stats() WebhookStats {
	return WebhookStats{Sent: w.sent.Load(), Failed: w.failed.Load(), Dropped: w.dropped.Load(), Retries: w.retries.Load()}
}

// Start runs the sending goroutine until ctx ends or Close is called. It
// may be called once.
func (w *Webhook) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.closed.Load() {
		return fmt.Errorf("detect: start webhook: %w", ErrWebhookClosed)
	}
	w.started = true
	ctx, w.cancel = context.WithCancel(ctx)
	go w.run(ctx)
	return nil
}

// Close stops taking alerts, keeps sending the queued ones for at most
// DrainTimeout, then cancels what is in flight and waits for the
// goroutine to return. Alerts left unsent are counted as dropped. It is
// idempotent.
func (w *Webhook) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Swap(true) {
		return nil
	}
	close(w.stop)
	if w.started {
		var t *time.Timer
		if w.opts.DrainTimeout > 0 {
			t = time.AfterFunc(w.opts.DrainTimeout, w.cancel)
		} else {
			w.cancel()
		}
		<-w.done
		if t != nil {
			t.Stop()
		}
		w.cancel()
	}
	w.dropped.Add(uint64(len(w.q)))
	for len(w.q) > 0 {
		<-w.q
	}
	return nil
}

func (w *Webhook) run(ctx context.Context) {
	defer close(w.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.stop:
			for {
				select {
				case a := <-w.q:
					w.deliver(ctx, a)
				default:
					return
				}
			}
		case a := <-w.q:
			w.deliver(ctx, a)
		}
	}
}

// webhookPayload is the JSON posted: a Slack-compatible text plus the
// alert's fields.
type webhookPayload struct {
	Text string `json:"text"`
	Alert
}

// deliver posts one alert, retrying as configured.
func (w *Webhook) deliver(ctx context.Context, a Alert) {
	if ctx.Err() != nil {
		w.dropped.Add(1) // closing or cancelled: not attempted
		return
	}
	body, err := json.Marshal(webhookPayload{Text: alertText(a), Alert: a})
	if err != nil {
		w.giveUp(a, fmt.Errorf("detect: webhook: encode alert: %w", err))
		return
	}
	for attempt := 0; ; attempt++ {
		retry, wait, err := w.post(ctx, body)
		if err == nil {
			w.sent.Add(1)
			return
		}
		if !retry || attempt >= w.opts.MaxRetries || ctx.Err() != nil {
			w.giveUp(a, err)
			return
		}
		w.retries.Add(1)
		if err := w.opts.Sleep(ctx, max(wait, w.backoff(attempt))); err != nil {
			w.giveUp(a, fmt.Errorf("detect: webhook post to %s: %w", w.redacted, err))
			return
		}
	}
}

func (w *Webhook) giveUp(a Alert, err error) {
	w.failed.Add(1)
	if w.opts.OnError != nil {
		w.opts.OnError(a, err)
	}
}

// backoff is the wait before retry number attempt+1.
func (w *Webhook) backoff(attempt int) time.Duration {
	d := w.opts.Backoff.Base
	for i := 0; i < attempt && d < w.opts.Backoff.Max; i++ {
		d *= 2
	}
	d = min(d, w.opts.Backoff.Max)
	if j := w.opts.Backoff.Jitter; j > 0 && d > 0 {
		d -= time.Duration(rand.Float64() * j * float64(d))
	}
	return d
}

// post makes one attempt. It reports whether a failure is worth retrying
// and how long the receiver asked to wait (Retry-After), if it did.
func (w *Webhook) post(ctx context.Context, body []byte) (retry bool, wait time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.opts.URL, bytes.NewReader(body))
	if err != nil {
		return false, 0, fmt.Errorf("detect: webhook post to %s: cannot build request", w.redacted)
	}
	for k, vs := range w.opts.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "stack-detect-webhook")
	}
	resp, err := w.opts.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL
		}
		return true, 0, fmt.Errorf("detect: webhook post to %s: %w", w.redacted, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // lets the connection be reused
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, 0, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			wait = min(time.Duration(s)*time.Second, w.opts.Backoff.Max)
		}
		return true, wait, fmt.Errorf("detect: webhook post to %s: status %d", w.redacted, resp.StatusCode)
	}
	return false, 0, fmt.Errorf("detect: webhook post to %s: status %d (not retried)", w.redacted, resp.StatusCode)
}

// alertText is the one-line message chat tools show. Everything from the
// event is escaped as Slack asks (&, <, >), so that content an attacker
// controls cannot forge links or mentions.
func alertText(a Alert) string {
	what := a.Detector
	if a.Rule != "" {
		what += " (" + a.Rule + ")"
	}
	s := fmt.Sprintf("STACK %s [%s] %s: agent %s, %s %s%s: %s", strings.ToUpper(string(a.Action)), a.Severity, what,
		a.Agent, a.Method, a.Host, clip(PathTemplate(a.Path), 200), a.Evidence)
	return slackEscape(s)
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func slackEscape(s string) string { return slackEscaper.Replace(s) }
