package console

import (
	"sync"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control/fleet"
)

// rateMinutes is how far back the rate charts go.
const rateMinutes = 60

// subscriberBuffer bounds what a slow browser may fall behind by before it
// misses signals (and is told so) rather than holding up the fleet log.
const subscriberBuffer = 256

// Signal is one detector signal as the live stream sends it.
type Signal struct {
	EventID  string    `json:"event_id"`
	Time     time.Time `json:"time"`
	Agent    string    `json:"agent"`
	Sidecar  string    `json:"sidecar"`
	Detector string    `json:"detector"`
	Severity string    `json:"severity,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Host     string    `json:"host,omitempty"`
	Method   string    `json:"method,omitempty"`
	Path     string    `json:"path,omitempty"`
	Detail   string    `json:"detail,omitempty"`
}

// Live is the fleet as it happens: it takes the records the fleet log
// commits (Observe is fleet.Options.OnCommitted), sends every detector
// signal to the console's open streams, and counts requests and signals
// per minute for the charts. It is safe for concurrent use.
type Live struct {
	now func() time.Time

	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	minutes [rateMinutes]minute // a ring, by unix minute
}

// minute counts one minute's records, fleet-wide and by agent.
type minute struct {
	at      int64 // unix minute
	total   counts
	byAgent map[string]*counts
}

type counts struct{ requests, signals int }

type subscriber struct {
	agent   string // "" for every agent
	ch      chan Signal
	dropped int // signals this subscriber missed; guarded by Live.mu
}

// NewLive returns an empty Live; now is its clock (time.Now when nil).
func NewLive(now func() time.Time) *Live {
	if now == nil {
		now = time.Now
	}
	return &Live{now: now, subs: map[*subscriber]struct{}{}}
}

// isRequest says whether a record stands for one request the agent made:
// answered (request) or refused (request_denied).
func isRequest(r *audit.Record) bool {
	return r.Action == audit.ActionRequest || r.Action == audit.ActionRequestDenied
}

func isSignal(r *audit.Record) bool { return r.Action == audit.ActionDetectorFired }

// Observe takes newly committed records. It never blocks: a subscriber
// whose buffer is full misses the signal.
func (l *Live) Observe(items []fleet.Item) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range items {
		it := &items[i]
		r := &it.Record
		req, sig := isRequest(r), isSignal(r)
		if !req && !sig {
			continue
		}
		agent := r.AgentID
		if agent == "" {
			agent = it.Agent
		}
		l.countLocked(time.UnixMilli(r.TimestampMS), agent, req, sig)
		if !sig {
			continue
		}
		s := Signal{
			EventID: r.EventID, Time: time.UnixMilli(r.TimestampMS).UTC(), Agent: agent, Sidecar: it.Sidecar,
			Detector: r.Detector, Severity: r.Severity, Reason: r.Reason, Host: r.Host, Method: r.Method, Path: r.Path, Detail: r.Detail,
		}
		for sub := range l.subs {
			if sub.agent != "" && sub.agent != agent {
				continue
			}
			select {
			case sub.ch <- s:
			default:
				sub.dropped++
			}
		}
	}
}

// countLocked adds a record to its minute, if that minute is still on the
// charts. l.mu is held.
func (l *Live) countLocked(t time.Time, agent string, req, sig bool) {
	m := t.Unix() / 60
	if now := l.now().Unix() / 60; m <= now-rateMinutes || m > now+1 {
		return
	}
	b := &l.minutes[m%rateMinutes]
	if b.at != m {
		*b = minute{at: m, byAgent: map[string]*counts{}}
	}
	c := b.byAgent[agent]
	if c == nil {
		c = &counts{}
		b.byAgent[agent] = c
	}
	if req {
		b.total.requests++
		c.requests++
	}
	if sig {
		b.total.signals++
		c.signals++
	}
}

// Rate is one minute of a chart.
type Rate struct {
	Minute   time.Time
	Requests int
	Signals  int
}

// Rates returns the last rateMinutes minutes, oldest first, for one agent
// or ("") the whole fleet.
func (l *Live) Rates(agent string) []Rate {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now().Unix() / 60
	out := make([]Rate, 0, rateMinutes)
	for m := now - rateMinutes + 1; m <= now; m++ {
		r := Rate{Minute: time.Unix(m*60, 0).UTC()}
		if b := &l.minutes[m%rateMinutes]; b.at == m {
			c := &b.total
			if agent != "" {
				c = b.byAgent[agent]
			}
			if c != nil {
				r.Requests, r.Signals = c.requests, c.signals
			}
		}
		out = append(out, r)
	}
	return out
}

// subscribe opens a stream of signals for one agent or ("") all.
func (l *Live) subscribe(agent string) *subscriber {
	s := &subscriber{agent: agent, ch: make(chan Signal, subscriberBuffer)}
	l.mu.Lock()
	l.subs[s] = struct{}{}
	l.mu.Unlock()
	return s
}

func (l *Live) unsubscribe(s *subscriber) {
	l.mu.Lock()
	delete(l.subs, s)
	l.mu.Unlock()
}

// takeDropped returns and resets how many signals s missed.
func (l *Live) takeDropped(s *subscriber) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := s.dropped
	s.dropped = 0
	return n
}
