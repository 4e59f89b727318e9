package detect

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

// learnBaseline feeds one pull of credential every 6 s (10 per 60 s) for
// span, starting at t0, and fails on any signal. It returns the time of
// the first request after the baseline traffic.
func learnBaseline(t *testing.T, g interface{ Evaluate(*Event) Decision }, agent, credential string, span time.Duration) time.Time {
	t.Helper()
	at := t0
	for ; at.Before(t0.Add(span)); at = at.Add(6 * time.Second) {
		if d := g.Evaluate(pull(agent, credential, at)); len(d.Signals) != 0 {
			t.Fatalf("baseline traffic at %s fired: %+v", at.Sub(t0), d.Signals)
		}
	}
	return at
}

// The reference scenario: three hours of baseline pulls of stripe (10 per
// minute), then a burst of 120 pulls in one second. The policy revokes on
// credential_burst. The signal must come on the crossing request: the
// short window then holds 9 baseline pulls and 41 burst pulls, 50 = 5 x
// 10, so burst request index 40 (0-based), 333 ms into the burst.
func TestBurstReferenceScenario(t *testing.T) {
	burst := mustBurst(t, BurstOptions{})
	g := mustGrid(t, GridOptions{Detectors: []Detector{burst}, Policy: Policy{Modes: map[string]Mode{BurstName: ModeRevoke}}})
	start := learnBaseline(t, g, "billing-agent", "stripe", 3*time.Hour)
	if base, ok := burst.Baseline("billing-agent", "stripe"); !ok || base != 10 {
		t.Fatalf("baseline = %v, %v; want 10 per 60 s, usable", base, ok)
	}
	const crossing = 40
	fired := -1
	for i := range 120 {
		at := start.Add(time.Duration(i) * time.Second / 120)
		d := g.Evaluate(pull("billing-agent", "stripe", at))
		if len(d.Signals) == 0 {
			if i >= crossing {
				t.Fatalf("burst request %d did not fire", i)
			}
			continue
		}
		if fired < 0 {
			fired = i
			if i != crossing {
				t.Fatalf("fired on burst request %d, want %d", i, crossing)
			}
			if at.Sub(start) >= time.Second {
				t.Fatalf("fired %s into the burst, want within the first second", at.Sub(start))
			}
			s := d.Signals[0]
			want := "5.0x baseline: 50 pulls of stripe in 60s vs 10.0/60s over 3h"
			if s.Evidence != want || s.Severity != Warning || s.Score != 5 || s.Detector != BurstName {
				t.Fatalf("crossing signal = %+v, want evidence %q, warning, score 5", s, want)
			}
			if d.Action != ActionRevoke {
				t.Fatalf("crossing decision = %s, want revoke", d.Action)
			}
		}
		// At twice the factor (100 pulls, request 90) it turns critical.
		if wantSev := map[bool]Severity{true: Critical, false: Warning}[i >= 90]; d.Signals[0].Severity != wantSev {
			t.Fatalf("burst request %d: severity %s, want %s", i, d.Signals[0].Severity, wantSev)
		}
	}
}

func TestBurstThresholds(t *testing.T) {
	cases := []struct {
		name      string
		opts      BurstOptions
		learn     time.Duration // of 10-per-minute baseline
		burst     int           // pulls 10 ms apart right after
		wantFirst int           // index of the first firing burst pull, -1 none
		wantRule  string
	}{
		// No baseline yet: the absolute cap of 60 per minute applies.
		{"no history: absolute cap", BurstOptions{}, 0, 100, 59, "absolute_cap"},
		{"young baseline: absolute cap", BurstOptions{}, 50 * time.Minute, 100, 60 - 9 - 1, "absolute_cap"},
		{"too few samples: absolute cap", BurstOptions{MinSamples: 5000}, 3 * time.Hour, 100, 60 - 9 - 1, "absolute_cap"},
		{"cap disabled", BurstOptions{AbsoluteCap: -1}, 0, 100, -1, ""},
		{"custom cap", BurstOptions{AbsoluteCap: 20}, 0, 30, 19, "absolute_cap"},
		// Baseline of 10/60 s: 5x is 50 pulls.
		{"learned baseline", BurstOptions{}, 3 * time.Hour, 100, 40, "baseline"},
		{"factor 3", BurstOptions{Factor: 3}, 3 * time.Hour, 100, 20, "baseline"},
		// Factor x baseline below MinCount: MinCount rules.
		{"min count", BurstOptions{Factor: 1.5, MinCount: 20}, 3 * time.Hour, 100, 10, "baseline"},
		{"under the threshold", BurstOptions{}, 3 * time.Hour, 40, -1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := mustBurst(t, tc.opts)
			at := t0
			for ; at.Before(t0.Add(tc.learn)); at = at.Add(6 * time.Second) {
				if s := b.Inspect(pull("a", "stripe", at)); len(s) != 0 {
					t.Fatalf("baseline fired: %+v", s)
				}
			}
			first := -1
			for i := range tc.burst {
				s := b.Inspect(pull("a", "stripe", at.Add(time.Duration(i)*10*time.Millisecond)))
				if len(s) > 0 && first < 0 {
					first = i
					if s[0].Rule != tc.wantRule {
						t.Errorf("rule = %q, want %q (%s)", s[0].Rule, tc.wantRule, s[0].Evidence)
					}
				}
				if first >= 0 && len(s) == 0 {
					t.Fatalf("pull %d after the crossing did not fire", i)
				}
			}
			if first != tc.wantFirst {
				t.Fatalf("first firing pull = %d, want %d", first, tc.wantFirst)
			}
		})
	}
}

func TestBurstAbsoluteCapEvidence(t *testing.T) {
	b := mustBurst(t, BurstOptions{})
	var last []Signal
	for i := range 120 {
		last = b.Inspect(pull("a", "stripe", t0.Add(time.Duration(i)*100*time.Millisecond)))
		if i == 59 && (len(last) != 1 || last[0].Severity != Warning || last[0].Evidence != "60 pulls of stripe in 60s, no baseline yet (cap 60)") {
			t.Fatalf("pull 60: %+v", last)
		}
	}
	if len(last) != 1 || last[0].Severity != Critical || last[0].Score != 2 {
		t.Fatalf("pull 120: %+v, want critical at twice the cap", last)
	}
}

func TestBurstKeysAreSeparate(t *testing.T) {
	b := mustBurst(t, BurstOptions{AbsoluteCap: 10})
	for i := range 9 {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		for _, ev := range []*Event{pull("a", "stripe", at), pull("b", "stripe", at), pull("a", "github", at)} {
			if s := b.Inspect(ev); len(s) != 0 {
				t.Fatalf("pull %d fired: %+v", i, s)
			}
		}
	}
	// The tenth pull of one pair fires for that pair only.
	if s := b.Inspect(pull("a", "github", t0.Add(time.Second))); len(s) != 1 {
		t.Fatalf("tenth pull of (a, github): %+v", s)
	}
	// Two credentials on one request count once each; a repeated name
	// counts once.
	ev := pull("b", "stripe", t0.Add(time.Second))
	ev.Credentials = []string{"stripe", "openai", "stripe"}
	if s := b.Inspect(ev); len(s) != 1 || s[0].Evidence != "10 pulls of stripe in 60s, no baseline yet (cap 10)" {
		t.Fatalf("(b, stripe) tenth pull: %+v", s)
	}
}

func TestBurstIgnores(t *testing.T) {
	b := mustBurst(t, BurstOptions{AbsoluteCap: 1})
	resp := pull("a", "stripe", t0)
	resp.Direction = Response
	none := pull("a", "", t0)
	none.Credentials = nil
	for name, ev := range map[string]*Event{"response": resp, "no credentials": none} {
		if s := b.Inspect(ev); len(s) != 0 {
			t.Errorf("%s fired: %+v", name, s)
		}
	}
	if s := b.Inspect(pull("a", "stripe", t0)); len(s) != 1 {
		t.Fatalf("a request pull with cap 1 did not fire: %+v", s)
	}
}

// The short window slides: pulls older than it stop counting.
func TestBurstWindowSlides(t *testing.T) {
	b := mustBurst(t, BurstOptions{AbsoluteCap: 10})
	for i := range 9 {
		b.Inspect(pull("a", "stripe", t0.Add(time.Duration(i)*time.Second)))
	}
	if s := b.Inspect(pull("a", "stripe", t0.Add(70*time.Second))); len(s) != 0 {
		t.Fatalf("a pull after the window fired: %+v", s)
	}
	// Clock going backwards (concurrent requests) is tolerated.
	if s := b.Inspect(pull("a", "stripe", t0)); len(s) != 0 {
		t.Fatalf("an out-of-order pull fired: %+v", s)
	}
}

// Memory is bounded: past MaxKeys, the least recently seen pair goes.
func TestBurstMaxKeys(t *testing.T) {
	b := mustBurst(t, BurstOptions{MaxKeys: 10, AbsoluteCap: 3})
	for i := range 100 {
		b.Inspect(pull(fmt.Sprintf("agent-%d", i), "stripe", t0))
		b.Inspect(pull("keep", "stripe", t0.Add(time.Duration(i)*time.Minute))) // stays the most recent
	}
	if n := b.keys.len(); n != 10 {
		t.Fatalf("keys = %d, want 10", n)
	}
	if _, ok := b.keys.get("agent-0\x00stripe"); ok {
		t.Fatal("the oldest pair was not forgotten")
	}
	if _, ok := b.keys.get("keep\x00stripe"); !ok {
		t.Fatal("the most recently seen pair was forgotten")
	}
	// Pairs idle longer than the learning window are forgotten as traffic
	// goes on.
	for i := range 10 {
		b.Inspect(pull("fresh", fmt.Sprintf("c%d", i%2), t0.Add(60*time.Hour)))
	}
	if n := b.keys.len(); n != 2 {
		t.Fatalf("keys = %d after the idle ones expired, want 2", n)
	}
}

func TestBurstOptionsRejected(t *testing.T) {
	for name, o := range map[string]BurstOptions{
		"negative window":   {LearningWindow: -time.Hour},
		"short >= learning": {LearningWindow: time.Hour, ShortWindow: time.Hour},
		"factor 1":          {Factor: 1},
		"tiny learning":     {LearningWindow: time.Minute, ShortWindow: time.Second},
	} {
		if _, err := NewBurst(o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: error = %v, want ErrInvalidOptions", name, err)
		}
	}
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		60 * time.Second: "60s", 90 * time.Second: "90s", 48 * time.Hour: "48h",
		150 * time.Minute: "2h30m", 330 * time.Second: "5m30s", 3 * time.Minute: "3m",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%s) = %q, want %q", d, got, want)
		}
	}
}

// The evidence builders print what the fmt formats they stand for print,
// infinite and fractional ratios included.
func TestBurstEvidenceMatchesFormat(t *testing.T) {
	for _, tc := range []struct {
		name         string
		ratio, base  float64
		n            uint64
		cred         string
		window, span time.Duration
		limit        int
	}{
		{"whole", 5, 10, 50, "stripe", time.Minute, 3 * time.Hour, 60},
		{"fraction", 12.345, 0.25, 123456789, "aws-prod", 90 * time.Second, 150*time.Minute + 7*time.Second, 1},
		{"rounding", 2.05, 1.95, 7, "gh", 1500 * time.Millisecond, 47*time.Hour + 59*time.Minute + 59*time.Second + 600*time.Millisecond, 1 << 30},
		{"no baseline pulls", math.Inf(1), 0, 3, "", 5 * time.Minute, time.Hour, 2},
	} {
		want := fmt.Sprintf("%.1fx baseline: %d pulls of %s in %s vs %.1f/%s over %s",
			tc.ratio, tc.n, tc.cred, fmtDur(tc.window), tc.base, fmtDur(tc.window), fmtDur(tc.span))
		if got := baselineEvidence(tc.ratio, tc.n, tc.cred, tc.window, tc.base, tc.span); got != want {
			t.Errorf("%s: baseline evidence %q, want %q", tc.name, got, want)
		}
		want = fmt.Sprintf("%d pulls of %s in %s, no baseline yet (cap %d)", tc.n, tc.cred, fmtDur(tc.window), tc.limit)
		if got := capEvidence(tc.n, tc.cred, tc.window, tc.limit); got != want {
			t.Errorf("%s: cap evidence %q, want %q", tc.name, got, want)
		}
	}
}
