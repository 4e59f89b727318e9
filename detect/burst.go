package detect

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
)

// BurstName is the config name of the credential-burst detector.
const BurstName = "credential_burst"

// Defaults of BurstOptions.
const (
	DefaultBurstLearningWindow = 48 * time.Hour
	DefaultBurstMinSamples     = 50
	DefaultBurstMinBaselineAge = time.Hour
	DefaultBurstShortWindow    = 60 * time.Second
	DefaultBurstFactor         = 5.0
	DefaultBurstMinCount       = 10
	DefaultBurstAbsoluteCap    = 60
	DefaultBurstMaxKeys        = 10000
)

// The learning window is kept as burstLongBuckets counts (10 minutes each
// for 48 h) and the short window as burstShortSlots counts (1 s each for
// 60 s): memory per agent and credential is fixed, about 1.4 KB.
const (
	burstLongBuckets = 288
	burstShortSlots  = 60
)

// BurstOptions configure the credential_burst detector. The zero value
// means every default.
type BurstOptions struct {
	// LearningWindow is how far back the baseline rate looks
	// (DefaultBurstLearningWindow, 48 h).
	LearningWindow time.Duration
	// MinSamples is how many pulls the baseline needs before it is used
	// (DefaultBurstMinSamples, 50).
	MinSamples int
	// MinBaselineAge is how much time the baseline must span before it is
	// used (DefaultBurstMinBaselineAge, 1 h).
	MinBaselineAge time.Duration
	// ShortWindow is the window recent pulls are counted in
	// (DefaultBurstShortWindow, 60 s).
	ShortWindow time.Duration
	// Factor: the detector fires when the short-window count reaches
	// Factor times the baseline's count for the same length
	// (DefaultBurstFactor, 5). At twice Factor the signal is critical.
	Factor float64
	// MinCount is the least short-window count that fires, whatever the
	// baseline (DefaultBurstMinCount, 10).
	MinCount int
	// AbsoluteCap applies before a baseline is usable: the detector fires
	// when the short-window count reaches it (DefaultBurstAbsoluteCap, 60;
	// critical at twice the cap). Negative disables it.
	AbsoluteCap int
	// MaxKeys bounds the (agent, credential) pairs remembered; the least
	// recently seen is forgotten first (DefaultBurstMaxKeys, 10000).
	MaxKeys int
	// Now is the clock for events without a Time (time.Now when nil).
	Now func() time.Time
}

func (o BurstOptions) withDefaults() (BurstOptions, error) {
	if o.LearningWindow < 0 || o.MinSamples < 0 || o.MinBaselineAge < 0 || o.ShortWindow < 0 ||
		o.Factor < 0 || o.MinCount < 0 || o.MaxKeys < 0 {
		return o, fmt.Errorf("detect: credential_burst options: negative value: %w", ErrInvalidOptions)
	}
	if o.LearningWindow == 0 {
		o.LearningWindow = DefaultBurstLearningWindow
	}
	if o.MinSamples == 0 {
		o.MinSamples = DefaultBurstMinSamples
	}
	if o.MinBaselineAge == 0 {
		o.MinBaselineAge = DefaultBurstMinBaselineAge
	}
	if o.ShortWindow == 0 {
		o.ShortWindow = DefaultBurstShortWindow
	}
	if o.Factor == 0 {
		o.Factor = DefaultBurstFactor
	}
	if o.MinCount == 0 {
		o.MinCount = DefaultBurstMinCount
	}
	if o.AbsoluteCap == 0 {
		o.AbsoluteCap = DefaultBurstAbsoluteCap
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = DefaultBurstMaxKeys
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LearningWindow < burstLongBuckets*time.Second || o.ShortWindow < burstShortSlots*time.Millisecond ||
		o.ShortWindow >= o.LearningWindow || o.Factor <= 1 {
		return o, fmt.Errorf("detect: credential_burst options: want learning window >= %s, short window >= %s and < learning window, factor > 1: %w",
			burstLongBuckets*time.Second, burstShortSlots*time.Millisecond, ErrInvalidOptions)
	}
	return o, nil
}

// Burst is the credential_burst detector: per agent and credential, it
// learns a baseline rate of credential pulls and fires on the very request
// whose short-window count reaches Factor times that baseline. It is safe
// for concurrent use.
type Burst struct {
	opts      BurstOptions
	longWidth int64 // nanoseconds per learning bucket
	slotWidth int64 // nanoseconds per short-window slot

	mu   sync.Mutex
	keys *lru[*burstState]
}

// burstState is the learned history of one (agent, credential).
type burstState struct {
	agent, cred string
	first, last int64 // unix nanoseconds of the first and latest pull

	longHead int64 // absolute index of the current learning bucket
	long     [burstLongBuckets]uint32
	longDone uint64 // sum of the completed buckets still in the window

	shortHead int64 // absolute index of the current slot
	short     [burstShortSlots]uint32
	shortSum  uint64
}

// NewBurst returns a credential_burst detector.
func NewBurst(opts BurstOptions) (*Burst, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Burst{
		opts:      o,
		longWidth: int64(o.LearningWindow) / burstLongBuckets,
		slotWidth: int64(o.ShortWindow) / burstShortSlots,
		keys:      newLRU[*burstState](o.MaxKeys),
	}, nil
}

// Name returns "credential_burst".
func (b *Burst) Name() string { return BurstName }

// Inspect counts one pull of each of ev's credentials (requests only) and
// returns a signal for each credential whose short-window count has
// reached its threshold. Every request at or above the threshold fires,
// so that block mode refuses the whole burst, not just its first request.
func (b *Burst) Inspect(ev *Event) []Signal {
	if ev.Direction != Request || len(ev.Credentials) == 0 {
		return nil
	}
	t := ev.Time
	if t.IsZero() {
		t = b.opts.Now()
	}
	now := t.UnixNano()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.forgetIdle(now)
	var sigs []Signal
	for i, cred := range ev.Credentials {
		if cred == "" || contains(ev.Credentials[:i], cred) {
			continue
		}
		// The key is built in a buffer on the stack: looking up a known
		// pair, the common case, then allocates nothing.
		var kb [96]byte
		key := append(append(append(kb[:0], ev.Agent...), 0), cred...)
		st, ok := b.keys.getBytes(key)
		if !ok {
			st = &burstState{agent: ev.Agent, cred: cred, first: now, last: now,
				longHead: now / b.longWidth, shortHead: now / b.slotWidth}
			b.keys.put(string(key), st)
		}
		if s, fired := b.count(st, now); fired {
			sigs = append(sigs, s)
		}
	}
	return sigs
}

// forgetIdle drops a few pairs idle for longer than the learning window:
// their baseline has expired, so forgetting them changes nothing.
func (b *Burst) forgetIdle(now int64) {
	for range 2 {
		key, st, ok := b.keys.oldest()
		if !ok || now-st.last <= int64(b.opts.LearningWindow) {
			return
		}
		b.keys.delete(key)
	}
}

// count records one pull at now and judges the short-window count.
func (b *Burst) count(st *burstState, now int64) (Signal, bool) {
	if now < st.last {
		now = st.last // concurrent requests arrive slightly out of order
	}
	st.last = now
	b.advance(st, now)
	st.long[st.longHead%burstLongBuckets]++
	st.short[st.shortHead%burstShortSlots]++
	st.shortSum++
	n := st.shortSum

	base, span, ok := b.baseline(st)
	if !ok {
		limit := b.opts.AbsoluteCap
		if limit <= 0 || n < uint64(limit) {
			return Signal{}, false
		}
		sev := Warning
		if n >= 2*uint64(limit) {
			sev = Critical
		}
		return Signal{
			Detector: BurstName, Severity: sev, Score: float64(n) / float64(limit), Rule: "absolute_cap",
			Evidence: capEvidence(n, st.cred, b.opts.ShortWindow, limit),
		}, true
	}
	need := max(math.Ceil(b.opts.Factor*base), float64(b.opts.MinCount))
	if float64(n) < need {
		return Signal{}, false
	}
	ratio := math.Inf(1)
	if base > 0 {
		ratio = float64(n) / base
	}
	sev := Warning
	if ratio >= 2*b.opts.Factor {
		sev = Critical
	}
	return Signal{
		Detector: BurstName, Severity: sev, Score: ratio, Rule: "baseline",
		Evidence: baselineEvidence(ratio, n, st.cred, b.opts.ShortWindow, base, span),
	}, true
}

// capEvidence is the evidence of a pre-baseline cap signal, "n pulls of
// cred in 60s, no baseline yet (cap limit)". In a storm every request past
// the cap fires, so it is built without fmt (proxy.BenchmarkDetectStorm).
func capEvidence(n uint64, cred string, window time.Duration, limit int) string {
	var a [128]byte
	b := strconv.AppendUint(a[:0], n, 10)
	b = append(b, " pulls of "...)
	b = append(b, cred...)
	b = append(b, " in "...)
	b = appendDur(b, window)
	b = append(b, ", no baseline yet (cap "...)
	b = strconv.AppendInt(b, int64(limit), 10)
	b = append(b, ')')
	return string(b)
}

// baselineEvidence is the evidence of a signal against the learned
// baseline, "4.0x baseline: n pulls of cred in 60s vs 3.0/60s over 48h".
func baselineEvidence(ratio float64, n uint64, cred string, window time.Duration, base float64, span time.Duration) string {
	var a [160]byte
	b := strconv.AppendFloat(a[:0], ratio, 'f', 1, 64)
	b = append(b, "x baseline: "...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, " pulls of "...)
	b = append(b, cred...)
	b = append(b, " in "...)
	b = appendDur(b, window)
	b = append(b, " vs "...)
	b = strconv.AppendFloat(b, base, 'f', 1, 64)
	b = append(b, '/')
	b = appendDur(b, window)
	b = append(b, " over "...)
	b = appendDur(b, span)
	return string(b)
}

// advance moves both rings to the bucket and slot of now, retiring what
// fell out of their windows.
func (b *Burst) advance(st *burstState, now int64) {
	if lb := now / b.longWidth; lb > st.longHead {
		if lb-st.longHead >= burstLongBuckets {
			st.long = [burstLongBuckets]uint32{}
			st.longDone = 0
		} else {
			for k := st.longHead + 1; k <= lb; k++ {
				// Bucket k-1 completes; bucket k-N, whose slot k reuses,
				// leaves the window.
				st.longDone += uint64(st.long[(k-1)%burstLongBuckets])
				st.longDone -= uint64(st.long[k%burstLongBuckets])
				st.long[k%burstLongBuckets] = 0
			}
		}
		st.longHead = lb
	}
	if sb := now / b.slotWidth; sb > st.shortHead {
		if sb-st.shortHead >= burstShortSlots {
			st.short = [burstShortSlots]uint32{}
			st.shortSum = 0
		} else {
			for k := st.shortHead + 1; k <= sb; k++ {
				st.shortSum -= uint64(st.short[k%burstShortSlots])
				st.short[k%burstShortSlots] = 0
			}
		}
		st.shortHead = sb
	}
}

// baseline returns the learned count per short window, the time it was
// learned over, and whether it is usable yet. Only completed learning
// buckets count, so a burst in progress does not raise its own baseline.
func (b *Burst) baseline(st *burstState) (perWindow float64, span time.Duration, ok bool) {
	end := st.longHead * b.longWidth
	start := max(st.first, (st.longHead-burstLongBuckets+1)*b.longWidth)
	span = time.Duration(end - start)
	if span <= 0 || st.longDone < uint64(b.opts.MinSamples) || span < b.opts.MinBaselineAge {
		return 0, span, false
	}
	return float64(st.longDone) * float64(b.opts.ShortWindow) / float64(span), span, true
}

// Baseline returns the learned pulls per short window for agent and
// credential, and whether that baseline is usable yet.
func (b *Burst) Baseline(agent, credential string) (perWindow float64, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, found := b.keys.get(agent + "\x00" + credential)
	if !found {
		return 0, false
	}
	perWindow, _, ok = b.baseline(st)
	return perWindow, ok
}

// burstSnapshot is the saved form of a Burst's state.
type burstSnapshot struct {
	Version        int              `json:"v"`
	LearningWindow time.Duration    `json:"learning_window"`
	ShortWindow    time.Duration    `json:"short_window"`
	Keys           []burstKeyRecord `json:"keys"`
}

type burstKeyRecord struct {
	Agent      string   `json:"agent"`
	Credential string   `json:"credential"`
	First      int64    `json:"first"`
	Last       int64    `json:"last"`
	LongHead   int64    `json:"long_head"`
	Long       []uint32 `json:"long"`
	ShortHead  int64    `json:"short_head"`
	Short      []uint32 `json:"short"`
}

// MarshalState snapshots the learned baselines, least recently seen first.
func (b *Burst) MarshalState() ([]byte, error) {
	b.mu.Lock()
	snap := burstSnapshot{Version: 1, LearningWindow: b.opts.LearningWindow, ShortWindow: b.opts.ShortWindow,
		Keys: make([]burstKeyRecord, 0, b.keys.len())}
	b.keys.eachOldestFirst(func(_ string, st *burstState) {
		snap.Keys = append(snap.Keys, burstKeyRecord{
			Agent: st.agent, Credential: st.cred, First: st.first, Last: st.last,
			LongHead: st.longHead, Long: append([]uint32(nil), st.long[:]...),
			ShortHead: st.shortHead, Short: append([]uint32(nil), st.short[:]...),
		})
	})
	b.mu.Unlock()
	out, err := json.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("detect: credential_burst: marshal state: %w", err)
	}
	return out, nil
}

// UnmarshalState replaces the learned baselines with a snapshot. A
// snapshot learned with another learning or short window is refused with
// ErrBadState: its buckets would not mean the same time.
func (b *Burst) UnmarshalState(data []byte) error {
	var snap burstSnapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("detect: credential_burst: unmarshal state: %w: %v", ErrBadState, err)
	}
	if snap.Version != 1 || snap.LearningWindow != b.opts.LearningWindow || snap.ShortWindow != b.opts.ShortWindow {
		return fmt.Errorf("detect: credential_burst: unmarshal state: %w: version %d, windows %s/%s, want 1, %s/%s",
			ErrBadState, snap.Version, snap.LearningWindow, snap.ShortWindow, b.opts.LearningWindow, b.opts.ShortWindow)
	}
	keys := newLRU[*burstState](b.opts.MaxKeys)
	for _, r := range snap.Keys {
		if r.Credential == "" || len(r.Long) != burstLongBuckets || len(r.Short) != burstShortSlots {
			return fmt.Errorf("detect: credential_burst: unmarshal state: %w: malformed entry", ErrBadState)
		}
		st := &burstState{agent: r.Agent, cred: r.Credential, first: r.First, last: r.Last,
			longHead: r.LongHead, shortHead: r.ShortHead}
		copy(st.long[:], r.Long)
		copy(st.short[:], r.Short)
		for k, c := range st.long {
			if int64(k) != st.longHead%burstLongBuckets {
				st.longDone += uint64(c)
			}
		}
		for _, c := range st.short {
			st.shortSum += uint64(c)
		}
		keys.put(r.Agent+"\x00"+r.Credential, st)
	}
	b.mu.Lock()
	b.keys = keys
	b.mu.Unlock()
	return nil
}

// fmtDur prints a duration compactly: 60s, 90s, 48h, 2h30m, 5m30s.
func fmtDur(d time.Duration) string {
	var a [32]byte
	return string(appendDur(a[:0], d))
}

// appendDur appends d as fmtDur prints it.
func appendDur(b []byte, d time.Duration) []byte {
	d = d.Round(time.Second)
	if d <= 2*time.Minute {
		return append(strconv.AppendInt(b, int64(d/time.Second), 10), 's')
	}
	h, m, sec := d/time.Hour, (d%time.Hour)/time.Minute, (d%time.Minute)/time.Second
	if h > 0 {
		b = append(strconv.AppendInt(b, int64(h), 10), 'h')
	}
	if m > 0 {
		b = append(strconv.AppendInt(b, int64(m), 10), 'm')
	}
	if sec > 0 {
		b = append(strconv.AppendInt(b, int64(sec), 10), 's')
	}
	return b
}
