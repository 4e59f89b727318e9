package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/reason"
)

// withStorm runs credential_burst in mode with a cap of one pull, so that
// every request carrying the stripe credential fires, and folds repeated
// signals with sum (none when nil).
func withStorm(t *testing.T, mode detect.Mode, sum *detect.Summarizer) harnessOption {
	return func(o *Options) {
		burst, err := detect.NewBurst(detect.BurstOptions{AbsoluteCap: 1})
		if err != nil {
			t.Fatal(err)
		}
		withGrid(t, []detect.Detector{burst}, detect.Policy{Modes: map[string]detect.Mode{detect.BurstName: mode}})(o)
		o.Summaries = sum
	}
}

func newSummarizer(t *testing.T, opts detect.SummarizerOptions) *detect.Summarizer {
	t.Helper()
	s, err := detect.NewSummarizer(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pullStripe sends one request with the stripe placeholder and returns
// its status and reason.
func pullStripe(t *testing.T, hs *harness, c *http.Client) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", hs.url(stripeHost, "/v1/charges/ch_1"), nil)
	req.Header.Set("Authorization", "Bearer stk_ph_stripe")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	return resp.StatusCode, resp.Header.Get(reason.Header)
}

var summaryCount = regexp.MustCompile(`^summary: (\d+) more signals? `)

// firedRecords splits the detector_fired records of agent into those
// written for one signal and the summaries, and adds up the summaries'
// counts.
func firedRecords(t *testing.T, hs *harness, agent string) (single, summaries []audit.Record, folded int) {
	t.Helper()
	for _, r := range hs.records() {
		if r.Action != audit.ActionDetectorFired || r.AgentID != agent {
			continue
		}
		m := summaryCount.FindStringSubmatch(r.Detail)
		if m == nil {
			single = append(single, r)
			continue
		}
		n, _ := strconv.Atoi(m[1])
		folded += n
		summaries = append(summaries, r)
	}
	return single, summaries, folded
}

func burstSignals(hs *harness) int {
	m := hs.proxy.Metrics().DetectorSignals
	return int(testutil.ToFloat64(m.WithLabelValues(detect.BurstName, "warning")) + testutil.ToFloat64(m.WithLabelValues(detect.BurstName, "critical")))
}

// hookServer is a real webhook receiver behind a real detect.Webhook.
type hookServer struct {
	hook *detect.Webhook
	mu   sync.Mutex
	got  []map[string]any
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		h.mu.Lock()
		h.got = append(h.got, m)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	var err error
	h.hook, err = detect.NewWebhook(detect.WebhookOptions{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.hook.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.hook.Close() })
	return h
}

// posts closes the webhook, which sends everything queued, and returns
// what the receiver got.
func (h *hookServer) posts() []map[string]any {
	h.hook.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.got
}

// An agent bursting for two and a half windows: the first signal is
// audited, logged and alerted on its own, then one summary per window and
// one at Close stand for all the others; every signal is counted.
func TestAlertStormSummarized(t *testing.T) {
	hook := newHookServer(t)
	sum := newSummarizer(t, detect.SummarizerOptions{Window: time.Minute})
	hs := newHarness(t, echoAuth, withStorm(t, detect.ModeAlert, sum), func(o *Options) { o.Alerts = hook.hook.Notify })
	tok, claims := hs.issue("billing-bot", stripeScope(), time.Hour)
	c := hs.client("billing-bot", tok)
	const n = 30 // one every 5 s: 150 s
	for i := range n {
		if code, why := pullStripe(t, hs, c); code != 200 {
			t.Fatalf("request %d: %d %s (alert mode refuses nothing)", i, code, why)
		}
		hs.proxy.emitDueSummaries()
		hs.clock.Advance(5 * time.Second)
	}
	_, during, _ := firedRecords(t, hs, "billing-bot")
	if len(during) != 2 {
		t.Errorf("%d summaries in 150 s of 1-minute windows, want 2", len(during))
	}
	hs.proxy.Close()

	single, summaries, folded := firedRecords(t, hs, "billing-bot")
	if len(single) != 1 || len(summaries) != 3 {
		t.Fatalf("%d single records and %d summaries, want 1 and 3 (two windows and Close)", len(single), len(summaries))
	}
	if folded != n-1 {
		t.Errorf("summaries count %d signals, want %d", folded, n-1)
	}
	if got := burstSignals(hs); got != n {
		t.Errorf("stack_detector_signals_total counts %d, want every signal (%d)", got, n)
	}
	first := summaries[0]
	if first.CredentialID != "stripe" || first.Host != stripeHost || first.Path != "/v1/charges/ch_1" ||
		first.PassportJTI != claims.ID || first.Reason != string(detect.ActionAlert) || first.Severity != string(detect.Critical) ||
		first.DurationMS != (55*time.Second).Milliseconds() || !strings.Contains(first.Detail, "first GET "+stripeHost+"/v1/charges/ch_1") {
		t.Errorf("first summary = %+v", first)
	}
	if single[0].CredentialID != "stripe" || strings.HasPrefix(single[0].Detail, "summary") {
		t.Errorf("first signal's record = %+v", single[0])
	}

	posts := hook.posts()
	if len(posts) != 4 {
		t.Fatalf("webhook got %d posts for %d signals, want 4 (the first and three summaries)", len(posts), n)
	}
	if posts[0]["summary"] != nil {
		t.Errorf("first alert is a summary: %v", posts[0])
	}
	count := 0
	for _, p := range posts[1:] {
		c, _ := p["count"].(float64)
		count += int(c)
		if p["summary"] != true || p["peak_per_second"] != 1.0 || !strings.Contains(p["text"].(string), "summary: ") {
			t.Errorf("summary alert = %v", p)
		}
	}
	if count != n-1 {
		t.Errorf("summary alerts count %d signals, want %d", count, n-1)
	}
}

// Each agent is a key of its own: its first signal goes out even while
// another agent's storm is folded.
func TestAlertStormPerAgent(t *testing.T) {
	hs := newHarness(t, echoAuth, withStorm(t, detect.ModeAlert, newSummarizer(t, detect.SummarizerOptions{})))
	for _, agent := range []string{"bot-a", "bot-b"} {
		tok, _ := hs.issue(agent, stripeScope(), 0)
		c := hs.client(agent, tok)
		for range 3 {
			pullStripe(t, hs, c)
		}
	}
	hs.proxy.Close()
	for _, agent := range []string{"bot-a", "bot-b"} {
		single, summaries, folded := firedRecords(t, hs, agent)
		if len(single) != 1 || len(summaries) != 1 || folded != 2 {
			t.Errorf("%s: %d single records, %d summaries of %d signals; want 1, 1 of 2", agent, len(single), len(summaries), folded)
		}
	}
}

// In block mode a storm is refused request by request: folding changes
// what is reported, never what is enforced.
func TestAlertStormStillBlocks(t *testing.T) {
	hs := newHarness(t, echoAuth, withStorm(t, detect.ModeBlock, newSummarizer(t, detect.SummarizerOptions{})))
	tok, _ := hs.issue("bot", stripeScope(), 0)
	c := hs.client("bot", tok)
	const n = 10
	for i := range n {
		if code, why := pullStripe(t, hs, c); code != 403 || why != reason.DetectorBlocked {
			t.Fatalf("request %d of the storm: %d %s, want 403 %s", i, code, why, reason.DetectorBlocked)
		}
	}
	if got := len(hs.up.received()); got != 0 {
		t.Errorf("the upstream saw %d requests of a blocked storm", got)
	}
	hs.proxy.Close()
	denied := 0
	for _, r := range hs.records() {
		if r.Action == audit.ActionRequestDenied && r.Reason == reason.DetectorBlocked {
			denied++
		}
	}
	if denied != n {
		t.Errorf("%d request_denied records, want one per refused request (%d)", denied, n)
	}
	single, summaries, folded := firedRecords(t, hs, "bot")
	if len(single) != 1 || len(summaries) != 1 || folded != n-1 || summaries[0].Reason != string(detect.ActionBlock) {
		t.Errorf("%d single records, %d summaries of %d signals (%+v); want 1, 1 of %d", len(single), len(summaries), folded, summaries, n-1)
	}
	if got := burstSignals(hs); got != n {
		t.Errorf("signals counted %d, want %d", got, n)
	}
}

// In revoke mode a folded signal still revokes: the agent's next
// passport, caught in the same storm, is revoked and recorded too.
func TestAlertStormStillRevokes(t *testing.T) {
	hs := newHarness(t, echoAuth, withStorm(t, detect.ModeRevoke, newSummarizer(t, detect.SummarizerOptions{})))
	hs.proxy.opts.Revoker = hs.revs
	var jtis []string
	for range 2 {
		tok, claims := hs.issue("bot", stripeScope(), 0)
		jtis = append(jtis, claims.ID)
		c := hs.client("bot", tok)
		if code, why := pullStripe(t, hs, c); code != 403 || why != reason.DetectorBlocked {
			t.Fatalf("storm request: %d %s", code, why)
		}
		if code, why := pullStripe(t, hs, c); code != 403 || why != reason.PassportRevoked {
			t.Fatalf("after the revocation: %d %s, want 403 %s", code, why, reason.PassportRevoked)
		}
	}
	hs.proxy.Close()
	revoked := map[string]bool{}
	for _, r := range hs.records() {
		if r.Action == audit.ActionPassportRevoked {
			revoked[r.PassportJTI] = true
		}
	}
	for _, j := range jtis {
		if !revoked[j] {
			t.Errorf("no passport_revoked record for %s", j)
		}
	}
	single, summaries, folded := firedRecords(t, hs, "bot")
	if len(single) != 1 || len(summaries) != 1 || folded != 1 || summaries[0].PassportJTI != jtis[1] {
		t.Errorf("%d single records, %d summaries of %d signals (%+v); want 1, 1 of 1 for the second passport", len(single), len(summaries), folded, summaries)
	}
}

// Without a summarizer (detect.alert_summary_window: 0) every signal is
// recorded on its own.
func TestNoSummarizerRecordsEverySignal(t *testing.T) {
	hs := newHarness(t, echoAuth, withStorm(t, detect.ModeAlert, nil))
	tok, _ := hs.issue("bot", stripeScope(), 0)
	c := hs.client("bot", tok)
	const n = 5
	for range n {
		pullStripe(t, hs, c)
	}
	hs.proxy.Close()
	if single, summaries, _ := firedRecords(t, hs, "bot"); len(single) != n || len(summaries) != 0 {
		t.Errorf("%d single records and %d summaries, want %d and 0", len(single), len(summaries), n)
	}
}

// Past the summarizer's key cap, a new key's signals are recorded one by
// one rather than dropped.
func TestAlertStormKeyCap(t *testing.T) {
	hs := newHarness(t, echoAuth, withStorm(t, detect.ModeAlert, newSummarizer(t, detect.SummarizerOptions{MaxKeys: 1})))
	const n = 4
	for _, agent := range []string{"bot-a", "bot-b"} {
		tok, _ := hs.issue(agent, stripeScope(), 0)
		c := hs.client(agent, tok)
		for range n {
			pullStripe(t, hs, c)
		}
	}
	hs.proxy.Close()
	if single, summaries, folded := firedRecords(t, hs, "bot-a"); len(single) != 1 || folded != n-1 || len(summaries) != 1 {
		t.Errorf("bot-a (followed): %d single records, %d summaries of %d", len(single), len(summaries), folded)
	}
	if single, summaries, _ := firedRecords(t, hs, "bot-b"); len(single) != n || len(summaries) != 0 {
		t.Errorf("bot-b (past the cap): %d single records and %d summaries, want %d and 0", len(single), len(summaries), n)
	}
}

// Different findings are different keys, and the event that starts a
// storm is reported whole; the same findings again are folded.
func TestAlertStormNewFindingsGoOut(t *testing.T) {
	hs := newHarness(t, echoAuth, func(o *Options) { o.Summaries = newSummarizer(t, detect.SummarizerOptions{}) })
	ex, err := detect.NewExfiltration(detect.ExfiltrationOptions{Bound: hs.store.Bound})
	if err != nil {
		t.Fatal(err)
	}
	withGrid(t, []detect.Detector{ex}, detect.Policy{})(&hs.proxy.opts)
	tok, _ := hs.issue("bot", stripeScope(), 0)
	c := hs.client("bot", tok)
	for range 2 {
		resp, err := c.Post(hs.url(otherHost, "/paste"), "text/plain", strings.NewReader("keys: sk_live_4eC39HqLyjWDarjtT1zdp7dc "+ghToken))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
	}
	hs.proxy.Close()
	single, summaries, folded := firedRecords(t, hs, "bot")
	if len(single) != 2 || len(summaries) != 2 || folded != 2 {
		t.Errorf("%d single records, %d summaries of %d signals; want both findings of the first request on their own, then 2 summaries of 1", len(single), len(summaries), folded)
	}
}

// twoFindings is a detector that finds the same thing twice in every
// request, as a detector may (no built-in one does today).
type twoFindings struct{}

func (twoFindings) Name() string { return "two_findings" }
func (twoFindings) Inspect(ev *detect.Event) []detect.Signal {
	if ev.Direction != detect.Request {
		return nil
	}
	s := detect.Signal{Detector: "two_findings", Severity: detect.Warning, Rule: "same", Evidence: "found in " + ev.Path}
	return []detect.Signal{s, s}
}

// Both findings of the event that starts a storm go out; both of the
// next event are folded.
func TestAlertStormFirstEventWhole(t *testing.T) {
	hs := newHarness(t, echoAuth, withGrid(t, []detect.Detector{twoFindings{}}, detect.Policy{}),
		func(o *Options) { o.Summaries = newSummarizer(t, detect.SummarizerOptions{}) })
	tok, _ := hs.issue("bot", stripeScope(), 0)
	c := hs.client("bot", tok)
	for range 2 {
		resp, err := c.Get(hs.url(otherHost, "/page"))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
	}
	hs.proxy.Close()
	single, summaries, folded := firedRecords(t, hs, "bot")
	if len(single) != 2 || len(summaries) != 1 || folded != 2 {
		t.Errorf("%d single records, %d summaries of %d signals; want 2, then 1 of 2", len(single), len(summaries), folded)
	}
}
