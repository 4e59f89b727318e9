package detect

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// DriftName is the config name of the scope-drift detector.
const DriftName = "scope_drift"

// Defaults of DriftOptions.
const (
	DefaultDriftMinEvents     = 200
	DefaultDriftMinAge        = 24 * time.Hour
	DefaultDriftThreshold     = 0.5
	DefaultDriftHostScore     = 1.0
	DefaultDriftMethodScore   = 0.6
	DefaultDriftTemplateScore = 0.3
	DefaultDriftMaxAgents     = 5000
	DefaultDriftMaxHosts      = 256
	DefaultDriftMaxTemplates  = 500
)

// Bounds that are not worth an option.
const (
	driftMaxMethods  = 16  // per host
	driftMaxSegments = 32  // path segments kept in a template
	driftMaxEvidence = 200 // bytes of a path quoted in evidence
)

// DriftOptions configure the scope_drift detector. The zero value means
// every default.
type DriftOptions struct {
	// MinEvents is how many requests an agent's profile learns from before
	// departures from it are scored (DefaultDriftMinEvents, 200).
	MinEvents int
	// MinAge is how long the profile learns before departures are scored
	// (DefaultDriftMinAge, 24 h). Both MinEvents and MinAge must be met.
	MinAge time.Duration
	// Threshold: a departure scoring at or above it raises a warning
	// (DefaultDriftThreshold, 0.5: new hosts and new methods do, new path
	// templates alone do not).
	Threshold float64
	// HostScore, MethodScore and TemplateScore score a new host, a new
	// method on a known host and a new path template on a known host
	// (defaults 1.0, 0.6 and 0.3).
	HostScore, MethodScore, TemplateScore float64
	// MaxAgents bounds the profiles kept; the least recently active agent
	// is forgotten first (DefaultDriftMaxAgents, 5000).
	MaxAgents int
	// MaxHosts and MaxTemplates bound one agent's profile (defaults 256
	// hosts and 500 path templates); past them nothing more is learned,
	// so what is new keeps being scored as new.
	MaxHosts, MaxTemplates int
	// Now is the clock for events without a Time (time.Now when nil).
	Now func() time.Time
}

func (o DriftOptions) withDefaults() (DriftOptions, error) {
	if o.MinEvents < 0 || o.MinAge < 0 || o.Threshold < 0 || o.HostScore < 0 || o.MethodScore < 0 ||
		o.TemplateScore < 0 || o.MaxAgents < 0 || o.MaxHosts < 0 || o.MaxTemplates < 0 {
		return o, fmt.Errorf("detect: scope_drift options: negative value: %w", ErrInvalidOptions)
	}
	set := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	seti := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	seti(&o.MinEvents, DefaultDriftMinEvents)
	if o.MinAge == 0 {
		o.MinAge = DefaultDriftMinAge
	}
	set(&o.Threshold, DefaultDriftThreshold)
	set(&o.HostScore, DefaultDriftHostScore)
	set(&o.MethodScore, DefaultDriftMethodScore)
	set(&o.TemplateScore, DefaultDriftTemplateScore)
	seti(&o.MaxAgents, DefaultDriftMaxAgents)
	seti(&o.MaxHosts, DefaultDriftMaxHosts)
	seti(&o.MaxTemplates, DefaultDriftMaxTemplates)
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// Drift is the scope_drift detector. An out-of-scope attempt
// (Event.ScopeDenied) is a critical signal at once. In-scope requests
// feed a per-agent profile of hosts, methods and path templates; once the
// profile has learned for long enough, a request that departs from it is
// scored and, at or above the threshold, raises a warning. Each departure
// is learned when seen, so it is reported once. Safe for concurrent use.
type Drift struct {
	opts DriftOptions

	mu     sync.Mutex
	agents *lru[*driftProfile]
}

type driftProfile struct {
	first     int64 // unix nanoseconds of the first request learned
	events    uint64
	hosts     map[string]*hostProfile
	templates int // across hosts, for MaxTemplates
}

type hostProfile struct {
	methods   []string
	templates map[string]struct{}
}

// NewDrift returns a scope_drift detector.
func NewDrift(opts DriftOptions) (*Drift, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Drift{opts: o, agents: newLRU[*driftProfile](o.MaxAgents)}, nil
}

// Name returns "scope_drift".
func (d *Drift) Name() string { return DriftName }

// Inspect scores one request against its agent's profile, then learns it.
func (d *Drift) Inspect(ev *Event) []Signal {
	if ev.Direction != Request || ev.Handoff {
		return nil
	}
	method := strings.ToUpper(ev.Method)
	if ev.ScopeDenied {
		// Refused requests are not learned: they are not the agent's
		// normal behaviour, and learning them would hide a repeat.
		evidence := fmt.Sprintf("out-of-scope attempt: %s %s%s", method, ev.Host, clip(PathTemplate(ev.Path), driftMaxEvidence))
		if ev.ScopeReason != "" {
			evidence += " (" + clip(ev.ScopeReason, driftMaxEvidence) + ")"
		}
		return []Signal{{Detector: DriftName, Severity: Critical, Score: 1, Rule: "out_of_scope", Evidence: evidence}}
	}
	t := ev.Time
	if t.IsZero() {
		t = d.opts.Now()
	}
	now := t.UnixNano()
	tmpl := PathTemplate(ev.Path)

	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.agents.get(ev.Agent)
	if !ok {
		p = &driftProfile{first: now, hosts: map[string]*hostProfile{}}
		d.agents.put(ev.Agent, p)
	}
	learned := p.events >= uint64(d.opts.MinEvents) && time.Duration(now-p.first) >= d.opts.MinAge
	var score float64
	var rule, what string
	h := p.hosts[ev.Host]
	switch {
	case h == nil:
		score, rule, what = d.opts.HostScore, "new_host", "new host "+ev.Host
	case !contains(h.methods, method):
		score, rule, what = d.opts.MethodScore, "new_method", "new method "+method+" on "+ev.Host
	default:
		if _, known := h.templates[tmpl]; !known {
			score, rule, what = d.opts.TemplateScore, "new_path", "new path "+method+" "+ev.Host+clip(tmpl, driftMaxEvidence)
		}
	}
	var sigs []Signal
	if learned && rule != "" && score >= d.opts.Threshold {
		sigs = []Signal{{
			Detector: DriftName, Severity: Warning, Score: score, Rule: rule,
			Evidence: fmt.Sprintf("%s for agent %s (profile: %d hosts, %d requests over %s)",
				what, ev.Agent, len(p.hosts), p.events, fmtDur(time.Duration(now-p.first))),
		}}
	}
	d.learn(p, h, ev.Host, method, tmpl)
	return sigs
}

// learn adds a request to a profile, within the profile's bounds; h is
// the profile of host, nil when it has none yet.
func (d *Drift) learn(p *driftProfile, h *hostProfile, host, method, tmpl string) {
	p.events++
	if h == nil {
		if len(p.hosts) >= d.opts.MaxHosts {
			return
		}
		h = &hostProfile{templates: map[string]struct{}{}}
		p.hosts[host] = h
	}
	if !contains(h.methods, method) && len(h.methods) < driftMaxMethods {
		h.methods = append(h.methods, method)
	}
	if _, ok := h.templates[tmpl]; !ok && p.templates < d.opts.MaxTemplates {
		h.templates[tmpl] = struct{}{}
		p.templates++
	}
}

// Learned reports whether agent's profile is past its learning period at
// time now, so departures from it are scored.
func (d *Drift) Learned(agent string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.agents.get(agent)
	return ok && p.events >= uint64(d.opts.MinEvents) && time.Duration(now.UnixNano()-p.first) >= d.opts.MinAge
}

// PathTemplate collapses the variable parts of a URL path into
// placeholders, so that /v1/customers/cus_9s6XKzkNRiz8i3 and
// /v1/customers/cus_Q2w3E4r5T6y7U8 are the same template,
// /v1/customers/{id}. Numbers, UUIDs, hex ids, prefixed ids and long
// tokens become {id}; a trailing slash is dropped; past 32 segments the
// rest becomes {rest}.
func PathTemplate(path string) string {
	if isTemplate(path) {
		// Most paths of an API are routes already: no copy to make.
		return path
	}
	return buildTemplate(path)
}

// buildTemplate is PathTemplate the long way, building the template.
func buildTemplate(path string) string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	path = strings.Trim(path, "/")
	if path == "" {
		return "/"
	}
	var b strings.Builder
	b.Grow(len(path) + 1)
	for n := 0; path != ""; n++ {
		seg := path
		if i := strings.IndexByte(path, '/'); i >= 0 {
			seg, path = path[:i], path[i+1:]
		} else {
			path = ""
		}
		b.WriteByte('/')
		if n == driftMaxSegments {
			b.WriteString("{rest}")
			break
		}
		if idLike(seg) {
			b.WriteString("{id}")
		} else {
			b.WriteString(seg)
		}
	}
	return b.String()
}

// isTemplate reports whether PathTemplate(path) is path itself: one
// leading slash, no trailing one, no query or fragment, at most
// driftMaxSegments segments and none of them id-like.
func isTemplate(path string) bool {
	if path == "/" {
		return true
	}
	if len(path) < 2 || path[0] != '/' || path[1] == '/' || path[len(path)-1] == '/' {
		return false
	}
	segs, from := 0, 1
	for i := 1; i <= len(path); i++ {
		if i < len(path) {
			if c := path[i]; c == '?' || c == '#' {
				return false
			} else if c != '/' {
				continue
			}
		}
		if segs++; segs > driftMaxSegments || idLike(path[from:i]) {
			return false
		}
		from = i + 1
	}
	return true
}

// idLike reports a path segment that names one object rather than a
// route: a number, a UUID, a hex id of 8 or more, a prefixed id such as
// Stripe's cus_9s6XKzkNRiz8i3, or a token of 16 or more characters with
// digits in it.
func idLike(seg string) bool {
	if seg == "" {
		return false
	}
	digits, hex, token := 0, true, true
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
		case c >= 'g' && c <= 'z', c >= 'G' && c <= 'Z':
			hex = false
		case c == '-' || c == '_' || c == '.' || c == '~' || c == '=' || c == '%':
			hex = false
		default:
			hex, token = false, false
		}
	}
	switch {
	case digits == len(seg):
		return true
	case isUUID(seg):
		return true
	case hex && len(seg) >= 8 && digits > 0:
		return true
	case token && len(seg) >= 16 && digits >= 2:
		return true
	}
	if i := strings.LastIndexByte(seg, '_'); i > 0 && token {
		tail := seg[i+1:]
		return len(tail) >= 8 && strings.IndexFunc(tail, isDigit) >= 0 && strings.IndexFunc(tail, isLetter) >= 0
	}
	return false
}

func isDigit(r rune) bool  { return r >= '0' && r <= '9' }
func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// driftSnapshot is the saved form of a Drift's profiles.
type driftSnapshot struct {
	Version int                  `json:"v"`
	Agents  []driftProfileRecord `json:"agents"`
}

type driftProfileRecord struct {
	Agent  string             `json:"agent"`
	First  int64              `json:"first"`
	Events uint64             `json:"events"`
	Hosts  []driftHostsRecord `json:"hosts"`
}

type driftHostsRecord struct {
	Host      string   `json:"host"`
	Methods   []string `json:"methods"`
	Templates []string `json:"templates"`
}

// MarshalState snapshots the learned profiles, least recently active
// agent first.
func (d *Drift) MarshalState() ([]byte, error) {
	d.mu.Lock()
	snap := driftSnapshot{Version: 1, Agents: make([]driftProfileRecord, 0, d.agents.len())}
	d.agents.eachOldestFirst(func(agent string, p *driftProfile) {
		r := driftProfileRecord{Agent: agent, First: p.first, Events: p.events}
		for host, h := range p.hosts {
			hr := driftHostsRecord{Host: host, Methods: append([]string(nil), h.methods...)}
			for t := range h.templates {
				hr.Templates = append(hr.Templates, t)
			}
			sort.Strings(hr.Templates)
			r.Hosts = append(r.Hosts, hr)
		}
		sort.Slice(r.Hosts, func(i, j int) bool { return r.Hosts[i].Host < r.Hosts[j].Host })
		snap.Agents = append(snap.Agents, r)
	})
	d.mu.Unlock()
	out, err := json.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("detect: scope_drift: marshal state: %w", err)
	}
	return out, nil
}

// UnmarshalState replaces the learned profiles with a snapshot, within
// this detector's bounds.
func (d *Drift) UnmarshalState(data []byte) error {
	var snap driftSnapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("detect: scope_drift: unmarshal state: %w: %v", ErrBadState, err)
	}
	if snap.Version != 1 {
		return fmt.Errorf("detect: scope_drift: unmarshal state: %w: version %d, want 1", ErrBadState, snap.Version)
	}
	agents := newLRU[*driftProfile](d.opts.MaxAgents)
	for _, r := range snap.Agents {
		p := &driftProfile{first: r.First, hosts: map[string]*hostProfile{}}
		for _, h := range r.Hosts {
			if _, dup := p.hosts[h.Host]; dup || len(p.hosts) >= d.opts.MaxHosts {
				continue
			}
			hp := &hostProfile{templates: map[string]struct{}{}}
			for _, m := range h.Methods {
				if !contains(hp.methods, m) && len(hp.methods) < driftMaxMethods {
					hp.methods = append(hp.methods, m)
				}
			}
			for _, t := range h.Templates {
				if p.templates < d.opts.MaxTemplates {
					if _, ok := hp.templates[t]; !ok {
						hp.templates[t] = struct{}{}
						p.templates++
					}
				}
			}
			p.hosts[h.Host] = hp
		}
		p.events = r.Events
		agents.put(r.Agent, p)
	}
	d.mu.Lock()
	d.agents = agents
	d.mu.Unlock()
	return nil
}
