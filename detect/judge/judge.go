package judge

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kind is the kind of endpoint a Judge calls.
type Kind string

// Kinds of endpoint.
const (
	// KindChat is an OpenAI-compatible chat completions endpoint prompted
	// as a judge.
	KindChat Kind = "chat"
	// KindClassifier is a text classifier answering label scores, in the
	// style of Prompt Guard.
	KindClassifier Kind = "classifier"
)

// Defaults of Options.
const (
	DefaultTimeout   = 800 * time.Millisecond
	DefaultCacheSize = 4096
	// DefaultThreshold is the classifier score at or above which content
	// is an injection.
	DefaultThreshold = 0.5
	// MaxAnswer is the most bytes of an answer read; a longer one is
	// malformed.
	MaxAnswer = 1 << 20
	// MaxReason is the most bytes of a verdict's reason kept.
	MaxReason = 200
	// DefaultBreakAfter and DefaultBreakFor: after five failed calls in a
	// row the judge makes no call for 30 s, then tries one.
	DefaultBreakAfter = 5
	DefaultBreakFor   = 30 * time.Second
)

// Options configure a Judge. Zero fields take their defaults.
type Options struct {
	// Kind is KindChat (the default) or KindClassifier.
	Kind Kind
	// URL is the endpoint itself, e.g.
	// https://llm.internal/v1/chat/completions: https, or http to a
	// loopback address; no user or password in it.
	URL string
	// Model is sent as the request's model; a chat judge needs one.
	Model string
	// APIKey, when set, is sent as "Authorization: Bearer <key>". It is
	// the key itself: the caller reads it from where its configuration
	// points (an environment variable), and it is never logged.
	APIKey string
	// Timeout is the budget of one call (default DefaultTimeout).
	Timeout time.Duration
	// CacheSize is how many verdicts are cached by the content's SHA-256
	// (default DefaultCacheSize); negative turns the cache off.
	CacheSize int
	// CAFile is a PEM file of the roots that may sign the endpoint's
	// certificate; empty: the system's roots.
	CAFile string
	// BreakAfter failed calls in a row (timeouts, errors, malformed
	// answers; not calls the caller gave up on) suspend the judge for
	// BreakFor: it answers ErrSuspended at once instead of making every
	// request wait out a hanging endpoint's timeout. Then one call is let
	// through; its success ends the suspension, its failure renews it.
	// Defaults DefaultBreakAfter and DefaultBreakFor; a negative
	// BreakAfter never suspends.
	BreakAfter int
	BreakFor   time.Duration
	// Threshold is the classifier score at or above which content is an
	// injection (default DefaultThreshold). A chat judge says so itself.
	Threshold float64
	// OnCall, when set, is told of every judgement, from the cache or not,
	// for logs and metrics: it runs on the caller's goroutine and must
	// not block.
	OnCall func(Call)
	// Now is the clock calls are timed with (default time.Now).
	Now func() time.Time
}

// Args are what one judgement is asked about.
type Args struct {
	// Content is sent as it is; the caller bounds and redacts it.
	Content []byte
}

// Verdict is a judge's answer about one content.
type Verdict struct {
	// Injection is the judge's decision: for a chat judge its own, for a
	// classifier Score at or above Options.Threshold.
	Injection bool `json:"injection"`
	// Score is how sure the judge is that the content is an injection,
	// from 0 to 1.
	Score float64 `json:"score"`
	// Reason is the judge's reason (a chat judge's sentence, a
	// classifier's top label), printable and at most MaxReason bytes.
	Reason string `json:"reason,omitempty"`
	// Cached is set when the verdict came from the cache, without a call.
	Cached bool `json:"cached,omitempty"`
	// Took is how long the judgement took, the call included.
	Took time.Duration `json:"took"`
}

// Outcome says how one judgement went, for Call.
type Outcome string

// Outcomes.
const (
	OutcomeOK        Outcome = "ok"
	OutcomeCached    Outcome = "cached"
	OutcomeTimeout   Outcome = "timeout"
	OutcomeError     Outcome = "error" // transport error or HTTP status
	OutcomeMalformed Outcome = "malformed"
	// OutcomeSuspended: no call, the judge is resting after failures.
	OutcomeSuspended Outcome = "suspended"
)

// Call is what one judgement cost, told to Options.OnCall.
type Call struct {
	Kind    Kind
	Outcome Outcome
	// Took is the time spent, the call included (zero for the cache).
	Took time.Duration
	// Bytes is the size of the content judged.
	Bytes int
	// PromptTokens and CompletionTokens are the usage a chat endpoint
	// reported, zero when it reported none.
	PromptTokens, CompletionTokens int
	// Injection is the verdict, when there is one.
	Injection bool
	// Err is the error, for outcomes other than ok and cached.
	Err error
}

// Judge calls one model endpoint. It is safe for concurrent use.
type Judge struct {
	o      Options
	url    string
	client *http.Client
	tr     *http.Transport
	cache  *cache

	// The circuit breaker (Options.BreakAfter).
	mu       sync.Mutex
	failures int       // failed calls in a row
	until    time.Time // suspended until then
	probing  bool      // the one call let through after a suspension is out
}

// New returns a Judge for opts. Options it cannot use are an error
// wrapping ErrInvalidOptions. It makes no call.
func New(opts Options) (*Judge, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("judge: read CA file: %w: %v", ErrInvalidOptions, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("judge: CA file %s: %w: no PEM certificate in it", o.CAFile, ErrInvalidOptions)
		}
		tlsConf.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		// Set explicitly: the judge never goes through a proxy named by
		// the environment, and keeps a few connections warm so a call
		// does not pay a TLS handshake.
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tlsConf,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        16,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
	j := &Judge{
		o: o, url: o.URL, tr: tr,
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is an answer like any other: not 200
		}},
	}
	if o.CacheSize > 0 {
		j.cache = newCache(o.CacheSize)
	}
	return j, nil
}

func (o Options) withDefaults() (Options, error) {
	bad := func(format string, a ...any) (Options, error) {
		return o, fmt.Errorf("judge: %w: %s", ErrInvalidOptions, fmt.Sprintf(format, a...))
	}
	if o.Kind == "" {
		o.Kind = KindChat
	}
	if o.Kind != KindChat && o.Kind != KindClassifier {
		return bad("kind %q (want chat or classifier)", o.Kind)
	}
	if err := CheckURL(o.URL); err != nil {
		return bad("%v", err)
	}
	if o.Kind == KindChat && strings.TrimSpace(o.Model) == "" {
		return bad("a chat judge needs a model")
	}
	if o.Timeout < 0 {
		return bad("negative timeout")
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Threshold < 0 || o.Threshold > 1 {
		return bad("threshold %v outside [0, 1]", o.Threshold)
	}
	if o.Threshold == 0 {
		o.Threshold = DefaultThreshold
	}
	if o.BreakAfter == 0 {
		o.BreakAfter = DefaultBreakAfter
	}
	if o.BreakFor < 0 {
		return bad("negative break_for")
	}
	if o.BreakFor == 0 {
		o.BreakFor = DefaultBreakFor
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if strings.ContainsAny(o.APIKey, "\r\n") {
		return bad("the API key holds a line break")
	}
	return o, nil
}

// CheckURL reports why u cannot be a judge's endpoint: it must be an
// absolute https URL, or http to a loopback address (a model served on
// the same machine), with a host and without user or password (a
// credential belongs in the API key, which config names, not in a URL).
func CheckURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("url does not parse: %v", err)
	}
	if p.User != nil {
		return errors.New("url must not carry a user or password; name an environment variable holding an API key instead")
	}
	if p.Host == "" || p.Hostname() == "" {
		return errors.New("url needs a host, e.g. https://llm.internal/v1/chat/completions")
	}
	switch p.Scheme {
	case "https":
	case "http":
		if !loopback(p.Hostname()) {
			return errors.New("url must be https, or http to a loopback address")
		}
	default:
		return fmt.Errorf("url scheme %q (want https)", p.Scheme)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// Kind returns the kind of endpoint j calls.
func (j *Judge) Kind() Kind { return j.o.Kind }

// Close closes the connections j keeps open. It is idempotent; a Judge
// used after Close opens new ones.
func (j *Judge) Close() { j.tr.CloseIdleConnections() }

// Judge asks the endpoint about args.Content, or the cache when the same
// content was judged before. The call runs within Options.Timeout of the
// caller's context. Errors wrap ErrTimeout, ErrUnavailable (a
// *StatusError for an HTTP status) or ErrMalformed.
func (j *Judge) Judge(ctx context.Context, args Args) (Verdict, error) {
	key := sha256.Sum256(args.Content)
	if v, ok := j.cache.get(key); ok {
		v.Cached, v.Took = true, 0
		j.told(Call{Kind: j.o.Kind, Outcome: OutcomeCached, Bytes: len(args.Content), Injection: v.Injection})
		return v, nil
	}
	start := j.o.Now()
	if !j.admit(start) {
		err := fmt.Errorf("judge: %w (%d in a row; calls resume within %v)", ErrSuspended, j.o.BreakAfter, j.o.BreakFor)
		j.told(Call{Kind: j.o.Kind, Outcome: OutcomeSuspended, Bytes: len(args.Content), Err: err})
		return Verdict{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, j.o.Timeout)
	defer cancel()
	callerCtx := ctx
	v, usage, err := j.call(ctx, args.Content)
	took := j.o.Now().Sub(start)
	j.settle(err, callerCtx)
	c := Call{Kind: j.o.Kind, Outcome: OutcomeOK, Took: took, Bytes: len(args.Content),
		PromptTokens: usage.PromptTokens, CompletionTokens: usage.CompletionTokens}
	if err != nil {
		switch cerr := ctx.Err(); {
		case errors.Is(cerr, context.DeadlineExceeded):
			err = fmt.Errorf("judge: no answer within %v: %w", j.o.Timeout, ErrTimeout)
		case cerr != nil:
			err = fmt.Errorf("judge: call: %w: %w", ErrUnavailable, cerr)
		}
		switch {
		case errors.Is(err, ErrTimeout):
			c.Outcome = OutcomeTimeout
		case errors.Is(err, ErrMalformed):
			c.Outcome = OutcomeMalformed
		default:
			c.Outcome = OutcomeError
		}
		c.Err = err
		j.told(c)
		return Verdict{Took: took}, err
	}
	j.cache.put(key, v)
	v.Took = took
	c.Injection = v.Injection
	j.told(c)
	return v, nil
}

// admit says whether a call may be made now: always, unless the judge is
// suspended; after a suspension, one call at a time until one succeeds.
func (j *Judge) admit(now time.Time) bool {
	if j.o.BreakAfter < 0 {
		return true
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failures < j.o.BreakAfter {
		return true
	}
	if now.Before(j.until) || j.probing {
		return false
	}
	j.probing = true
	return true
}

// settle counts a call's outcome for the breaker. A call the caller gave
// up on (its context canceled, not our deadline) says nothing of the
// endpoint.
func (j *Judge) settle(err error, ctx context.Context) {
	if j.o.BreakAfter < 0 {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.probing = false
	switch {
	case err == nil:
		j.failures = 0
	case errors.Is(ctx.Err(), context.Canceled):
	default:
		if j.failures++; j.failures >= j.o.BreakAfter {
			j.until = j.o.Now().Add(j.o.BreakFor)
		}
	}
}

func (j *Judge) told(c Call) {
	if j.o.OnCall != nil {
		j.o.OnCall(c)
	}
}

// usage is the token count a chat endpoint reports.
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// call makes one request and parses its answer.
func (j *Judge) call(ctx context.Context, content []byte) (Verdict, usage, error) {
	var body []byte
	var err error
	if j.o.Kind == KindChat {
		body, err = chatRequest(j.o.Model, content)
	} else {
		body, err = classifierRequest(j.o.Model, content)
	}
	if err != nil {
		return Verdict{}, usage{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.url, bytes.NewReader(body))
	if err != nil {
		return Verdict{}, usage{}, fmt.Errorf("judge: request: %w: %v", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "stack-judge")
	if j.o.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+j.o.APIKey)
	}
	resp, err := j.client.Do(req)
	if err != nil {
		// The url.Error would repeat the URL; the operation is named here.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Verdict{}, usage{}, fmt.Errorf("judge: call: %w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer+1))
	if err != nil {
		return Verdict{}, usage{}, fmt.Errorf("judge: read answer: %w: %w", ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Verdict{}, usage{}, &StatusError{Status: resp.StatusCode}
	}
	if len(answer) > MaxAnswer {
		return Verdict{}, usage{}, fmt.Errorf("judge: %w: answer longer than %d bytes", ErrMalformed, MaxAnswer)
	}
	if j.o.Kind == KindChat {
		return parseChat(answer)
	}
	v, err := parseClassifier(answer, j.o.Threshold)
	return v, usage{}, err
}

// cleanReason keeps the printable part of a reason, spaces collapsed, at
// most MaxReason bytes.
func cleanReason(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if b.Len() >= MaxReason {
			break
		}
		switch {
		case r == utf8.RuneError:
			continue
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		case !unicode.IsPrint(r):
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	out := b.String()
	for len(out) > MaxReason {
		_, size := utf8.DecodeLastRuneInString(out)
		out = out[:len(out)-size]
	}
	return out
}

// cache is a least-recently-used map of verdicts by content hash. A nil
// cache holds nothing.
type cache struct {
	mu    sync.Mutex
	size  int
	order *list.List // of *entry, most recent first
	byKey map[[sha256.Size]byte]*list.Element
}

type entry struct {
	key [sha256.Size]byte
	v   Verdict
}

func newCache(size int) *cache {
	return &cache{size: size, order: list.New(), byKey: make(map[[sha256.Size]byte]*list.Element, min(size, 1024))}
}

func (c *cache) get(k [sha256.Size]byte) (Verdict, bool) {
	if c == nil {
		return Verdict{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[k]
	if !ok {
		return Verdict{}, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*entry).v, true
}

func (c *cache) put(k [sha256.Size]byte, v Verdict) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[k]; ok {
		e.Value.(*entry).v = v
		c.order.MoveToFront(e)
		return
	}
	c.byKey[k] = c.order.PushFront(&entry{key: k, v: v})
	if c.order.Len() > c.size {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*entry).key)
	}
}
