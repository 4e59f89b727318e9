package detect

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func mustSummarizer(t testing.TB, opts SummarizerOptions) *Summarizer {
	t.Helper()
	s, err := NewSummarizer(opts)
	if err != nil {
		t.Fatalf("NewSummarizer: %v", err)
	}
	return s
}

var burstKey = SignalKey{Detector: BurstName, Rule: "absolute_cap", Agent: "billing-bot", Credential: "stripe"}

// occ is a signal of burstKey's kind at at, on path.
func occ(at time.Time, path string) Occurrence {
	return Occurrence{Time: at, Severity: Warning, Score: 1.5, Action: ActionAlert, PassportJTI: "jti-1",
		Method: "GET", Host: "api.stripe.com", Path: path}
}

func sumCounts(sums []Summary) int {
	n := 0
	for _, s := range sums {
		n += s.Count
	}
	return n
}

// A storm of one key: the first signal goes out, every later one is
// folded, and one summary per window accounts for all of them.
func TestSummarizerStorm(t *testing.T) {
	s := mustSummarizer(t, SummarizerOptions{Window: time.Minute})
	const perSecond, seconds = 10, 150 // two and a half windows
	at := t0
	var sums []Summary
	sent := 0
	for i := range perSecond * seconds {
		at = t0.Add(time.Duration(i) * time.Second / perSecond)
		if !s.Fold(burstKey, occ(at, "/v1/charges")) {
			sent++
		}
		got := s.Due(at)
		if len(got) > 0 && (at.Sub(t0) < time.Minute) {
			t.Fatalf("summary at %v, before a window passed", at.Sub(t0))
		}
		sums = append(sums, got...)
	}
	if sent != 1 {
		t.Errorf("%d signals went out on their own, want only the first", sent)
	}
	if len(sums) != 2 {
		t.Fatalf("%d summaries in 150 s of a 1-minute window, want 2: %+v", len(sums), sums)
	}
	rest := s.Close()
	if len(rest) != 1 {
		t.Fatalf("Close returned %d summaries, want the 30 s still folded", len(rest))
	}
	sums = append(sums, rest...)
	if got, want := sumCounts(sums), perSecond*seconds-1; got != want {
		t.Errorf("summaries count %d signals, want %d (all but the first)", got, want)
	}
	first := sums[0]
	if first.SignalKey != burstKey || first.PeakPerSecond != perSecond || first.Severity != Warning ||
		first.Action != ActionAlert || first.Last.PassportJTI != "jti-1" {
		t.Errorf("first summary = %+v", first)
	}
	// The first window starts at the first signal; the summary covers the
	// folded ones after it.
	if want := t0.Add(time.Second / perSecond); !first.From.Equal(want) || !first.First.Time.Equal(want) {
		t.Errorf("first summary from %v, want %v", first.From, want)
	}
	if !rest[0].To.Equal(at) || !rest[0].Last.Time.Equal(at) {
		t.Errorf("last summary to %v, want the last signal at %v", rest[0].To, at)
	}
	if s.Fold(burstKey, occ(at, "/v1/charges")) {
		t.Error("a closed summarizer folded a signal")
	}
	if s.Keys() != 0 {
		t.Errorf("Keys = %d after Close", s.Keys())
	}
}

// The summary keeps the strongest severity and action, and the last
// passport, of the signals it stands for.
func TestSummarizerKeepsTheWorst(t *testing.T) {
	s := mustSummarizer(t, SummarizerOptions{})
	s.Fold(burstKey, occ(t0, "/a"))
	o := occ(t0.Add(time.Second), "/b")
	o.Severity, o.Action, o.Score = Critical, ActionRevoke, 3
	s.Fold(burstKey, o)
	o = occ(t0.Add(2*time.Second), "/c")
	o.PassportJTI = "jti-2"
	s.Fold(burstKey, o)
	sums := s.Due(t0.Add(time.Minute))
	if len(sums) != 1 {
		t.Fatalf("%d summaries", len(sums))
	}
	got := sums[0]
	if got.Count != 2 || got.Severity != Critical || got.Action != ActionRevoke || got.Score != 3 ||
		got.Last.PassportJTI != "jti-2" || got.First.Path != "/b" || got.Last.Path != "/c" || got.Span() != time.Second {
		t.Errorf("summary = %+v", got)
	}
}

// Each detector, agent and credential is a key of its own: the first
// signal of each goes out.
func TestSummarizerKeys(t *testing.T) {
	s := mustSummarizer(t, SummarizerOptions{})
	keys := []SignalKey{
		burstKey,
		{Detector: BurstName, Rule: "absolute_cap", Agent: "billing-bot", Credential: "github"},
		{Detector: BurstName, Rule: "absolute_cap", Agent: "other-bot", Credential: "stripe"},
		{Detector: DriftName, Agent: "billing-bot", Credential: "stripe"},
		{Detector: BurstName, Rule: "baseline", Agent: "billing-bot", Credential: "stripe"},
		{Detector: BurstName, Agent: "billing-bot"},
		{Detector: BurstName, Agent: "billing-bot", Credential: CredentialKey([]string{"stripe", "github"})},
	}
	for i, k := range keys {
		if s.Fold(k, occ(t0.Add(time.Duration(i)), "/")) {
			t.Errorf("first signal of %+v was folded", k)
		}
	}
	for i, k := range keys {
		if !s.Fold(k, occ(t0.Add(time.Second+time.Duration(i)), "/")) {
			t.Errorf("second signal of %+v went out", k)
		}
	}
	sums := s.Due(t0.Add(time.Minute + time.Second))
	if len(sums) != len(keys) {
		t.Fatalf("%d summaries for %d keys", len(sums), len(keys))
	}
	for _, sm := range sums {
		if sm.Count != 1 {
			t.Errorf("%+v: count %d", sm.SignalKey, sm.Count)
		}
	}
}

// A key quiet for a whole window is forgotten: its next signal goes out
// at once, whether Due has swept it yet or not.
func TestSummarizerForgetsQuietKeys(t *testing.T) {
	s := mustSummarizer(t, SummarizerOptions{Window: time.Minute})
	s.Fold(burstKey, occ(t0, "/"))
	s.Fold(burstKey, occ(t0.Add(time.Second), "/"))
	if sums := s.Due(t0.Add(time.Minute)); len(sums) != 1 || sums[0].Count != 1 {
		t.Fatalf("first window: %+v", sums)
	}
	// Nothing in the next window: no summary, and the key is forgotten.
	if sums := s.Due(t0.Add(2 * time.Minute)); len(sums) != 0 {
		t.Fatalf("a quiet window summarized: %+v", sums)
	}
	if s.Keys() != 0 {
		t.Errorf("Keys = %d after a quiet window, want 0", s.Keys())
	}
	if s.Fold(burstKey, occ(t0.Add(2*time.Minute+time.Second), "/")) {
		t.Error("the first signal after the key was forgotten was folded")
	}

	// Without a sweep in between.
	s2 := mustSummarizer(t, SummarizerOptions{Window: time.Minute})
	s2.Fold(burstKey, occ(t0, "/"))
	if s2.Fold(burstKey, occ(t0.Add(time.Minute), "/")) {
		t.Error("a signal a whole quiet window after the first was folded")
	}
	if !s2.Fold(burstKey, occ(t0.Add(time.Minute+time.Second), "/")) {
		t.Error("the storm that signal started was not folded")
	}
}

// Past MaxKeys, new keys are not followed and their signals all go out;
// once keys are forgotten, new ones are followed again.
func TestSummarizerKeyCap(t *testing.T) {
	s := mustSummarizer(t, SummarizerOptions{MaxKeys: 2})
	a := SignalKey{Detector: BurstName, Agent: "a"}
	b := SignalKey{Detector: BurstName, Agent: "b"}
	c := SignalKey{Detector: BurstName, Agent: "c"}
	s.Fold(a, occ(t0, "/"))
	s.Fold(b, occ(t0, "/"))
	for i := range 5 {
		if s.Fold(c, occ(t0.Add(time.Duration(i)*time.Second), "/")) {
			t.Fatalf("signal %d of a key past the cap was folded", i)
		}
	}
	if !s.Fold(a, occ(t0.Add(time.Second), "/")) {
		t.Error("a followed key stopped folding at the cap")
	}
	if s.Keys() != 2 {
		t.Errorf("Keys = %d, want the cap 2", s.Keys())
	}
	s.Due(t0.Add(time.Minute))     // a summarized, b forgotten
	s.Due(t0.Add(2 * time.Minute)) // a forgotten
	s.Fold(c, occ(t0.Add(2*time.Minute), "/"))
	if !s.Fold(c, occ(t0.Add(2*time.Minute+time.Second), "/")) {
		t.Error("a new key was not followed once others were forgotten")
	}
}

// Concurrent folds of one key lose no signal.
func TestSummarizerConcurrent(t *testing.T) {
	s := mustSummarizer(t, SummarizerOptions{})
	const workers, each = 8, 500
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent := 0
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if !s.Fold(burstKey, occ(t0.Add(time.Duration(w*each+i)*time.Millisecond), "/")) {
					mu.Lock()
					sent++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if got := sent + sumCounts(s.Close()); got != workers*each {
		t.Errorf("%d signals went out and were summarized, want %d", got, workers*each)
	}
	if sent != 1 {
		t.Errorf("%d went out on their own, want 1", sent)
	}
}

func TestSummaryDetail(t *testing.T) {
	base := time.Date(2026, 12, 3, 16, 0, 1, 123e6, time.UTC)
	sm := Summary{
		SignalKey: burstKey, Count: 1234, From: base, To: base.Add(59*time.Second + 857*time.Millisecond),
		First: occ(base, "/v1/x"), PeakPerSecond: 250,
	}
	sm.First.Host = "api.example.test"
	want := "summary: 1234 more signals 2026-12-03T16:00:01.123Z..2026-12-03T16:01:00.980Z, peak 250/s, first GET api.example.test/v1/x"
	if got := sm.Detail(); got != want {
		t.Errorf("Detail =\n%s\nwant\n%s", got, want)
	}
	sm.Count = 1
	if got := sm.Detail(); !strings.HasPrefix(got, "summary: 1 more signal 2026") {
		t.Errorf("Detail of one signal = %s", got)
	}
	// A long path is cut, on a character boundary.
	sm.First.Path = "/" + strings.Repeat("é", 400)
	got := sm.Detail()
	if len(got) > 300 || !utf8.ValidString(got) || !strings.Contains(got, "first GET api.example.test/é") {
		t.Errorf("Detail of a long path: %d bytes, valid %v: %s", len(got), utf8.ValidString(got), got)
	}
}

// A summary alert carries its counts; an ordinary alert has none of
// those fields in its JSON.
func TestSummaryAlertJSON(t *testing.T) {
	sm := Summary{SignalKey: burstKey, Count: 7, From: t0, To: t0.Add(time.Second), First: occ(t0, "/a"),
		Last: occ(t0.Add(time.Second), "/b"), Severity: Warning, Action: ActionAlert, PeakPerSecond: 4}
	a := sm.Alert()
	if !a.Summary || a.Count != 7 || a.Rule != "absolute_cap" || a.Path != "/b" || a.Credential != "stripe" || a.Evidence != sm.Detail() || !a.Time.Equal(sm.To) {
		t.Errorf("alert = %+v", a)
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	if m["summary"] != true || m["count"] != 7.0 || m["peak_per_second"] != 4.0 || m["first"] != "2026-01-01T00:00:00Z" || m["last"] != "2026-01-01T00:00:01Z" {
		t.Errorf("summary alert JSON = %s", b)
	}
	b, err = json.Marshal(sampleAlert)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"summary", "count", "first", "last", "peak_per_second", "credential"} {
		if strings.Contains(string(b), `"`+k+`"`) {
			t.Errorf("ordinary alert JSON has %q: %s", k, b)
		}
	}
}

func TestNewSummarizerRefusesNegative(t *testing.T) {
	for _, o := range []SummarizerOptions{{Window: -time.Second}, {MaxKeys: -1}} {
		if _, err := NewSummarizer(o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: err = %v", o, err)
		}
	}
	s := mustSummarizer(t, SummarizerOptions{})
	if s.Window() != DefaultSummaryWindow {
		t.Errorf("default window %v", s.Window())
	}
}

// Folding a signal of a key already followed allocates nothing.
func TestFoldDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not checked under the race detector")
	}
	s := mustSummarizer(t, SummarizerOptions{})
	o := occ(t0, "/v1/charges")
	s.Fold(burstKey, o)
	if n := testing.AllocsPerRun(1000, func() { s.Fold(burstKey, o) }); n != 0 {
		t.Errorf("Fold allocates %v times per call", n)
	}
}

// BenchmarkSummarizerFold measures the fold decision in a storm: one key
// from one goroutine, one key from many (every request of a bursting
// agent), and many keys from many.
func BenchmarkSummarizerFold(b *testing.B) {
	now := time.Now()
	b.Run("one-key", func(b *testing.B) {
		s := mustSummarizer(b, SummarizerOptions{})
		o := occ(now, "/v1/charges")
		b.ReportAllocs()
		for b.Loop() {
			s.Fold(burstKey, o)
		}
	})
	b.Run("one-key-parallel", func(b *testing.B) {
		s := mustSummarizer(b, SummarizerOptions{})
		o := occ(now, "/v1/charges")
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.Fold(burstKey, o)
			}
		})
	})
	b.Run("many-keys-parallel", func(b *testing.B) {
		s := mustSummarizer(b, SummarizerOptions{})
		keys := make([]SignalKey, 64)
		for i := range keys {
			keys[i] = SignalKey{Detector: BurstName, Agent: "agent-" + string(rune('A'+i)), Credential: "stripe"}
		}
		o := occ(now, "/v1/charges")
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				s.Fold(keys[i%len(keys)], o)
				i++
			}
		})
	})
}
