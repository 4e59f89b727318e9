package detect

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// secretPath stands for the token a Slack webhook URL carries in its path.
const secretPath = "/services/T0000/B0000/s3cr3tT0kenXYZ"

// guard bounds waits that only a bug would make long.
const guard = 10 * time.Second

var sampleAlert = Alert{
	Time: t0, Agent: "billing-agent", PassportJTI: "jti-1", Host: "api.stripe.com", Method: "POST", Path: "/v1/transfers/tr_1MiN3gLkdIwHu7ixNCZvFdgA",
	Detector: BurstName, Rule: "baseline", Severity: Critical, Score: 12,
	Evidence: "12.0x baseline: 120 pulls of stripe in 60s vs 10.0/60s over 48h", Action: ActionRevoke,
}

// recordedSleeps is an injected Sleep that returns at once and remembers
// what it was asked to wait.
type recordedSleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (r *recordedSleeps) sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.d = append(r.d, d)
	r.mu.Unlock()
	return ctx.Err()
}

func (r *recordedSleeps) all() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.d...)
}

func mustWebhook(t *testing.T, opts WebhookOptions) *Webhook {
	t.Helper()
	w, err := NewWebhook(opts)
	if err != nil {
		t.Fatalf("NewWebhook: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(guard):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

func TestWebhookRetriesThenDelivers(t *testing.T) {
	var hits atomic.Int32
	got := make(chan map[string]any, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != secretPath || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Token") != "t" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if hits.Add(1) <= 2 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- body
	}))
	defer srv.Close()
	sleeps := &recordedSleeps{}
	w := mustWebhook(t, WebhookOptions{URL: srv.URL + secretPath, Sleep: sleeps.sleep, Header: http.Header{"X-Token": {"t"}}})
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.Notify(sampleAlert)
	body := waitFor(t, got, "delivery")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st != (WebhookStats{Sent: 1, Retries: 2}) || hits.Load() != 3 {
		t.Fatalf("stats = %+v after %d hits, want 1 sent after 2 retries", st, hits.Load())
	}
	s := sleeps.all()
	if len(s) != 2 || s[0] < 400*time.Millisecond || s[0] > 500*time.Millisecond || s[1] < 800*time.Millisecond || s[1] > time.Second {
		t.Fatalf("backoff waits = %v, want about 500ms then 1s (jitter 20%%)", s)
	}
	for k, want := range map[string]any{
		"agent": "billing-agent", "host": "api.stripe.com", "detector": BurstName, "severity": "critical",
		"evidence": sampleAlert.Evidence, "action": "revoke", "passport_jti": "jti-1", "rule": "baseline",
	} {
		if body[k] != want {
			t.Errorf("payload %s = %v, want %v", k, body[k], want)
		}
	}
	text, _ := body["text"].(string)
	for _, part := range []string{"REVOKE", "[critical]", "credential_burst", "billing-agent", "api.stripe.com/v1/transfers/{id}", sampleAlert.Evidence} {
		if !strings.Contains(text, part) {
			t.Errorf("text %q lacks %q", text, part)
		}
	}
}

func TestWebhookDoesNotRetry4xx(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "no such hook", http.StatusNotFound)
	}))
	defer srv.Close()
	failed := make(chan error, 1)
	w := mustWebhook(t, WebhookOptions{URL: srv.URL + secretPath, Sleep: (&recordedSleeps{}).sleep,
		OnError: func(_ Alert, err error) { failed <- err }})
	w.Start(context.Background())
	w.Notify(sampleAlert)
	err := waitFor(t, failed, "failure report")
	w.Close()
	if hits.Load() != 1 || w.Stats() != (WebhookStats{Failed: 1}) {
		t.Fatalf("hits %d, stats %+v; want one attempt, one failure", hits.Load(), w.Stats())
	}
	if !strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("error %q: want the status, never the URL's token", err)
	}
}

func TestWebhookRetriesNetworkErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	failed := make(chan error, 1)
	sleeps := &recordedSleeps{}
	w := mustWebhook(t, WebhookOptions{URL: "http://" + addr + secretPath, MaxRetries: 3, Sleep: sleeps.sleep,
		OnError: func(_ Alert, err error) { failed <- err }})
	w.Start(context.Background())
	w.Notify(sampleAlert)
	err = waitFor(t, failed, "failure report")
	w.Close()
	if st := w.Stats(); st.Failed != 1 || st.Retries != 3 || len(sleeps.all()) != 3 {
		t.Fatalf("stats %+v, sleeps %v; want 3 retries then a failure", st, sleeps.all())
	}
	if strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("error %q: want the host, never the URL's token", err)
	}
}

func TestWebhookHonoursRetryAfter(t *testing.T) {
	var hits atomic.Int32
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		close(done)
	}))
	defer srv.Close()
	sleeps := &recordedSleeps{}
	w := mustWebhook(t, WebhookOptions{URL: srv.URL, Sleep: sleeps.sleep})
	w.Start(context.Background())
	w.Notify(sampleAlert)
	waitFor(t, done, "second attempt")
	w.Close()
	if s := sleeps.all(); len(s) != 1 || s[0] != 3*time.Second {
		t.Fatalf("waits = %v, want the 3 s the receiver asked for", s)
	}
}

// A receiver that hangs never blocks Notify; the queue fills, the excess
// is dropped and counted; Close cancels the hanging request and returns
// once the goroutine has.
func TestWebhookHangingReceiver(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the body to its end lets the server notice when the
		// client hangs up, which ends r.Context().
		io.Copy(io.Discard, r.Body)
		select {
		case arrived <- struct{}{}:
		default:
		}
		select { // hang until the client gives up (or the test ends)
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	// Runs before srv.Close, so a failing test cannot leave srv.Close
	// waiting on a handler forever.
	t.Cleanup(func() { close(release) })
	w := mustWebhook(t, WebhookOptions{URL: srv.URL, QueueSize: 3, Timeout: time.Hour, DrainTimeout: time.Millisecond,
		Sleep: (&recordedSleeps{}).sleep})
	w.Start(context.Background())
	w.Notify(sampleAlert)
	waitFor(t, arrived, "first request")
	for range 8 { // 3 fit in the queue, 5 are dropped, none blocks
		w.Notify(sampleAlert)
	}
	if st := w.Stats(); st.Dropped != 5 {
		t.Fatalf("dropped = %d, want 5", st.Dropped)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.done:
	default:
		t.Fatal("Close returned before the goroutine did")
	}
	w.Notify(sampleAlert) // after Close: dropped, no panic
	if st := w.Stats(); st.Sent != 0 || st.Failed != 1 || st.Dropped != 9 {
		t.Fatalf("stats = %+v, want the in-flight alert failed and 9 dropped", st)
	}
}

func TestWebhookLifecycle(t *testing.T) {
	w := mustWebhook(t, WebhookOptions{URL: "http://127.0.0.1:1/x"})
	ctx, cancel := context.WithCancel(context.Background())
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); !errors.Is(err, ErrWebhookClosed) {
		t.Fatalf("second Start = %v, want ErrWebhookClosed", err)
	}
	cancel() // the owner's context ends the goroutine
	waitFor(t, w.done, "goroutine exit")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}

	// Never started: Close drops what was queued.
	w2 := mustWebhook(t, WebhookOptions{URL: "https://hooks.example.com/x"})
	w2.Notify(sampleAlert)
	w2.Close()
	if err := w2.Start(context.Background()); !errors.Is(err, ErrWebhookClosed) {
		t.Fatalf("Start after Close = %v", err)
	}
	if st := w2.Stats(); st.Dropped != 1 {
		t.Fatalf("stats = %+v, want 1 dropped", st)
	}
}

func TestNewWebhookRejects(t *testing.T) {
	for _, u := range []string{"", "hooks.slack.com" + secretPath, "ftp://hooks.slack.com" + secretPath, "https://" + secretPath[1:] + "%zz", "https:///only-path"} {
		_, err := NewWebhook(WebhookOptions{URL: u})
		if !errors.Is(err, ErrInvalidOptions) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("NewWebhook(%q) = %v, want ErrInvalidOptions without the URL", u, err)
		}
	}
}

func TestWebhookBackoff(t *testing.T) {
	w := mustWebhook(t, WebhookOptions{URL: "https://hooks.example.com/x", Backoff: Backoff{Jitter: -1}})
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, d := range want {
		if got := w.backoff(i); got != d {
			t.Errorf("backoff(%d) = %s, want %s", i, got, d)
		}
	}
}

func TestAlertTextEscapes(t *testing.T) {
	a := sampleAlert
	a.Evidence = `quoted "<https://evil.example|click here>" & <!channel>`
	text := alertText(a)
	if strings.ContainsAny(text, "<>") || !strings.Contains(text, "&lt;https://evil.example|click here&gt;") || !strings.Contains(text, "&amp;") {
		t.Fatalf("text not escaped: %q", text)
	}
}

func TestAlertsFor(t *testing.T) {
	g := mustGrid(t, GridOptions{
		Detectors: []Detector{firing("burst", Critical), firing("drift", Warning), firing("quiet", Info)},
		Policy:    Policy{Modes: map[string]Mode{"quiet": ModeShadow}, Rules: []Rule{burstAndDrift}},
	})
	ev := &Event{Time: t0, Agent: "a", Host: "api.example.com", Method: "GET", Path: "/x"}
	alerts := AlertsFor(ev, g.Evaluate(ev))
	if len(alerts) != 3 {
		t.Fatalf("alerts = %+v, want burst, drift and the rule (not the shadow one)", alerts)
	}
	if a := alerts[0]; a.Detector != "burst" || a.Action != ActionAlert || a.Severity != Critical || a.Agent != "a" {
		t.Errorf("first alert = %+v", a)
	}
	if a := alerts[2]; a.Rule != "burst_and_drift" || a.Action != ActionRevoke || a.Severity != Critical || a.Detector != "burst+drift+quiet" {
		t.Errorf("rule alert = %+v", a)
	}
}
