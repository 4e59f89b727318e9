package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/config"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/detect"
)

// Per-agent detector modes: an operator sets, for one agent, the mode of
// a detector in place of what its sidecars' config says. The modes live
// under the feed prefix, so every change reaches that agent's sidecars
// through the watch feed at once. The rollout gate is what an operator
// reads before moving a detector from alert to block: how long it has
// been clean (no detector_fired shipped) since it was set to alert. It is
// advice, not a lock: an operator answering an incident blocks at once.

// DefaultDetectorGate is Options.DetectorGate's default.
const DefaultDetectorGate = 48 * time.Hour

// ActionDetectorModeChanged is the audit action of a mode set or removed.
const ActionDetectorModeChanged = "detector_mode_changed"

const (
	prefixDetectors = prefixFeed + "detectors/"
	// prefixSignals is outside the feed: signals change often and no
	// sidecar needs them.
	prefixSignals = "signals/"
	// signalWriteEvery bounds how often an agent's signals are written
	// to the store: a restart loses at most this much of them (and only
	// makes the gate later, never earlier, than it would be).
	signalWriteEvery = time.Minute
	// maxModeField bounds a mode change's by and reason.
	maxModeField = 1024
)

// agentOverrides is the stored value of feed/detectors/AGENT.
type agentOverrides struct {
	Detectors map[string]detectorSetting `json:"detectors"`
}

// detectorSetting is one detector's mode for the agent, kept when the
// override is removed (Mode ModeDefault) so that Since stays known.
type detectorSetting struct {
	Mode   string    `json:"mode"`
	Since  time.Time `json:"since"`
	By     string    `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

// overrides is what the feed sends: detector → mode, defaults left out.
func (o agentOverrides) overrides() map[string]string {
	out := map[string]string{}
	for name, set := range o.Detectors {
		if set.Mode != ModeDefault {
			out[name] = set.Mode
		}
	}
	return out
}

// overrideMode is the stored spelling of a requested mode: ModeDefault
// for none (default or empty), otherwise what detect.ParseMode reads.
func overrideMode(mode string) (string, error) {
	t := strings.ToLower(strings.TrimSpace(mode))
	if t == "" || t == ModeDefault {
		return ModeDefault, nil
	}
	m, err := detect.ParseMode(t)
	if err != nil {
		return "", fmt.Errorf("mode %q: want default, off, shadow, alert, block or revoke", mode)
	}
	return string(m), nil
}

// DetectorModes returns the agent's detector modes, with the rollout
// gate's reading for each: an error refusing an unknown agent (404
// agent_unknown).
func (s *Server) DetectorModes(ctx context.Context, agent string) (AgentDetectors, error) {
	a, err := s.agent(ctx, agent)
	if err != nil {
		return AgentDetectors{}, err
	}
	var set agentOverrides
	if _, err := s.getJSON(ctx, prefixDetectors+agent, &set); err != nil && !errors.Is(err, store.ErrNotFound) {
		return AgentDetectors{}, err
	}
	last, err := s.lastSignals(ctx, agent)
	if err != nil {
		return AgentDetectors{}, err
	}
	now := s.now().UTC()
	gate := s.opts.DetectorGate
	out := AgentDetectors{Agent: a.Name, Gate: Duration(gate), Detectors: make([]DetectorState, 0, len(config.Detectors))}
	for _, name := range config.Detectors {
		st := DetectorState{Detector: name, Mode: ModeDefault, Since: a.Created, LastSignal: last[name]}
		if d, ok := set.Detectors[name]; ok {
			st.Since, st.By, st.Reason = d.Since, d.By, d.Reason
			if d.Mode != ModeDefault {
				st.Mode, st.Override = d.Mode, true
			}
		}
		clean := st.Since
		if st.LastSignal.After(clean) {
			clean = st.LastSignal
		}
		st.CleanFor = Duration(max(now.Sub(clean), 0))
		st.GateMet = st.Mode == string(detect.ModeAlert) && time.Duration(st.CleanFor) >= gate
		out.Detectors = append(out.Detectors, st)
	}
	return out, nil
}

// SetDetectorMode sets the agent's mode of detector (one of
// config.Detectors) to mode: off, shadow, alert, block or revoke, or
// ModeDefault (or empty) to remove the override so that the sidecar's
// configured mode applies. by and reason go into the audit log. The
// agent's sidecars apply it through the feed. Setting the mode a detector
// has already changes nothing: its Since, and so its gate, stay.
func (s *Server) SetDetectorMode(ctx context.Context, agent, detector, mode, by, reason string) (AgentDetectors, error) {
	if !slices.Contains(config.Detectors, detector) {
		return AgentDetectors{}, badRequest(fmt.Sprintf("detector %q: one of %s", detector, strings.Join(config.Detectors, ", ")))
	}
	m, err := overrideMode(mode)
	if err != nil {
		return AgentDetectors{}, badRequest(err.Error())
	}
	for name, v := range map[string]string{"by": by, "reason": reason} {
		if len(v) > maxModeField || !utf8.ValidString(v) {
			return AgentDetectors{}, badRequest(fmt.Sprintf("%s: at most %d bytes of UTF-8", name, maxModeField))
		}
	}
	if _, err := s.agent(ctx, agent); err != nil {
		return AgentDetectors{}, err
	}
	key := prefixDetectors + agent
	for {
		var cur agentOverrides
		rev, err := s.getJSON(ctx, key, &cur)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return AgentDetectors{}, err
		}
		was := ModeDefault
		if d, ok := cur.Detectors[detector]; ok {
			was = d.Mode
		}
		if was == m {
			break
		}
		if cur.Detectors == nil {
			cur.Detectors = map[string]detectorSetting{}
		}
		cur.Detectors[detector] = detectorSetting{Mode: m, Since: s.now().UTC(), By: by, Reason: reason}
		b, err := json.Marshal(cur)
		if err != nil {
			return AgentDetectors{}, err
		}
		_, err = s.store.CompareAndSwap(ctx, key, rev, b)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return AgentDetectors{}, err
		}
		detail := fmt.Sprintf("mode %s (was %s) by %s", m, was, by)
		if reason != "" {
			detail += ": " + reason
		}
		s.audit(ctx, audit.Record{Action: ActionDetectorModeChanged, AgentID: agent, Detector: detector, Detail: detail})
		s.log.Info("detector mode set for an agent", zap.String("agent", agent), zap.String("detector", detector),
			zap.String("mode", m), zap.String("was", was), zap.String("by", by), zap.String("reason", reason))
		break
	}
	return s.DetectorModes(ctx, agent)
}

// agentDetectors answers GET: operators read any agent's modes, a
// sidecar those of the agent it joined as.
func (s *Server) agentDetectors(r *http.Request) (any, error) {
	name := r.PathValue("name")
	if c := callerOf(r); !c.operator && c.sidecar.Agent != name {
		return nil, fail(http.StatusForbidden, ReasonUnauthorized, "a sidecar may read only the detector modes of the agent it joined as")
	}
	return s.DetectorModes(r.Context(), name)
}

// setAgentDetector answers POST, for operators.
func (s *Server) setAgentDetector(r *http.Request) (any, error) {
	var req DetectorModeRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	return s.SetDetectorMode(r.Context(), r.PathValue("name"), req.Detector, req.Mode, "operator", req.Reason)
}

// detectorsEvent is the feed's event for a change of agent's detector
// modes, or false when caller c is a sidecar of another agent. A delete
// of the key says the agent has no overrides left.
func (s *Server) detectorsEvent(c *caller, agent string, e store.Event) (WatchEvent, bool) {
	if !c.operator && c.sidecar.Agent != agent {
		return WatchEvent{}, false
	}
	ev := WatchEvent{Type: EventDetectors, Rev: e.KV.ModRev, Agent: agent}
	if e.Type == store.EventPut {
		var cur agentOverrides
		if err := json.Unmarshal(e.KV.Value, &cur); err != nil {
			// The sidecar keeps the modes it has.
			s.log.Error("unreadable detector modes in the store", zap.String("key", e.KV.Key), zap.Error(err))
			return WatchEvent{}, false
		}
		ev.Detectors = cur.overrides()
	}
	return ev, true
}

// signalBook is the newest detector signal per agent and detector, noted
// from shipped audit records, and what of it the store does not hold yet.
type signalBook struct {
	mu     sync.Mutex
	agents map[string]*agentSignals
	// wake tells persistSignals that an agent's signals are due.
	wake chan struct{}
}

type agentSignals struct {
	last    map[string]time.Time // by detector
	dirty   bool                 // last holds what the store may not
	written time.Time            // when last handed to the store
}

func newSignalBook() *signalBook {
	return &signalBook{agents: map[string]*agentSignals{}, wake: make(chan struct{}, 1)}
}

// firedMarker is in every stored detector_fired record: records without
// it are skipped undecoded.
var firedMarker = []byte(audit.ActionDetectorFired)

// noteSignals notes, from a batch of stored audit records a sidecar
// joined as agent shipped, the newest detector_fired of each detector
// for that agent: in memory at once, in the store later (see
// persistSignals), so the ship path does not wait for a write. Records of
// other agents the sidecar served are not its to vouch for.
func (s *Server) noteSignals(agent string, recs [][]byte) {
	var newest map[string]time.Time
	for _, v := range recs {
		if !bytes.Contains(v, firedMarker) {
			continue
		}
		r, err := audit.DecodeStored(v)
		if err != nil || r.Action != audit.ActionDetectorFired || r.AgentID != agent || !slices.Contains(config.Detectors, r.Detector) {
			continue
		}
		if newest == nil {
			newest = map[string]time.Time{}
		}
		if t := time.UnixMilli(r.TimestampMS).UTC(); t.After(newest[r.Detector]) {
			newest[r.Detector] = t
		}
	}
	if len(newest) == 0 {
		return
	}
	now := s.now().UTC()
	b := s.signals
	b.mu.Lock()
	as := b.agents[agent]
	if as == nil {
		as = &agentSignals{last: map[string]time.Time{}}
		b.agents[agent] = as
	}
	for d, t := range newest {
		// A sidecar's clock ahead of ours does not make a signal later
		// than now.
		if t.After(now) {
			t = now
		}
		if t.After(as.last[d]) {
			as.last[d], as.dirty = t, true
		}
	}
	due := as.dirty && now.Sub(as.written) >= signalWriteEvery
	b.mu.Unlock()
	if due {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// lastSignals is the newest signal per detector for agent: what the store
// holds, with what this replica noted since.
func (s *Server) lastSignals(ctx context.Context, agent string) (map[string]time.Time, error) {
	last := map[string]time.Time{}
	if _, err := s.getJSON(ctx, prefixSignals+agent, &last); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	b := s.signals
	b.mu.Lock()
	defer b.mu.Unlock()
	if as := b.agents[agent]; as != nil {
		for d, t := range as.last {
			if t.After(last[d]) {
				last[d] = t
			}
		}
	}
	return last, nil
}

// persistSignals writes noted signals to the store, each agent's at most
// once per signalWriteEvery, until ctx ends; then it writes what is left.
func (s *Server) persistSignals(ctx context.Context) {
	t := time.NewTimer(signalWriteEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.writeSignals(fctx, true)
			cancel()
			return
		case <-s.signals.wake:
		case <-t.C:
		}
		t.Reset(s.writeSignals(ctx, false))
	}
}

// writeSignals writes the signals of every agent that is due (every
// agent with unwritten signals when all) and returns how long until the
// next one is.
func (s *Server) writeSignals(ctx context.Context, all bool) time.Duration {
	b := s.signals
	now := s.now()
	next := signalWriteEvery
	due := map[string]map[string]time.Time{}
	b.mu.Lock()
	for agent, as := range b.agents {
		if !as.dirty {
			continue
		}
		if wait := signalWriteEvery - now.Sub(as.written); wait > 0 && !all {
			next = min(next, wait)
			continue
		}
		due[agent] = maps.Clone(as.last)
		as.dirty, as.written = false, now
	}
	b.mu.Unlock()
	for agent, last := range due {
		if err := s.mergeSignals(ctx, agent, last); err != nil {
			s.log.Warn("detector signals not written to the store; retrying later", zap.String("agent", agent), zap.Error(err))
			b.mu.Lock()
			b.agents[agent].dirty = true
			b.mu.Unlock()
		}
	}
	return next
}

// mergeSignals writes last into signals/AGENT, keeping the later time of
// each detector: replicas and restarts only ever move a signal forward.
func (s *Server) mergeSignals(ctx context.Context, agent string, last map[string]time.Time) error {
	key := prefixSignals + agent
	for {
		stored := map[string]time.Time{}
		rev, err := s.getJSON(ctx, key, &stored)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		merged := maps.Clone(stored)
		for d, t := range last {
			if t.After(merged[d]) {
				merged[d] = t
			}
		}
		if rev != 0 && maps.EqualFunc(merged, stored, time.Time.Equal) {
			return nil
		}
		v, err := json.Marshal(merged)
		if err != nil {
			return err
		}
		if _, err = s.store.CompareAndSwap(ctx, key, rev, v); errors.Is(err, store.ErrConflict) {
			continue
		}
		return err
	}
}

// GateStandsBefore says whether the rollout gate stands before a switch to
// mode: block and revoke, the modes that act on requests. Front ends warn
// or ask for an override when a detector is switched to one before its
// gate is met.
func GateStandsBefore(mode string) bool {
	m, err := detect.ParseMode(mode)
	return err == nil && (m == detect.ModeBlock || m == detect.ModeRevoke)
}
