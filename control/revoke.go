package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// revoke revokes a passport or an agent for the whole fleet. Operators
// may revoke anything; a sidecar (a detector's revoke action) may revoke
// any passport it saw, and its own agent.
func (s *Server) revoke(r *http.Request) (any, error) {
	var req RevokeRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	c := callerOf(r)
	by := "operator"
	if !c.operator {
		by = "sidecar " + c.sidecar.ID
		if req.Agent != "" && req.Agent != c.sidecar.Agent {
			return nil, fail(http.StatusForbidden, ReasonUnauthorized, "a sidecar may revoke only its own agent")
		}
	}
	switch {
	case (req.JTI == "") == (req.Agent == ""):
		return nil, badRequest("give exactly one of jti and agent")
	case req.JTI != "":
		return s.revokeJTI(r.Context(), req.JTI, req.Expiry, req.Reason, by)
	default:
		return s.RevokeAgent(r.Context(), req.Agent, req.Reason, by)
	}
}

// RevokeAgent disables the agent and revokes every passport it holds, for
// the whole fleet: its sidecars refuse its next request. by says who
// asked, for the audit record.
func (s *Server) RevokeAgent(ctx context.Context, agent, reason, by string) (passport.Revocation, error) {
	if _, err := s.agent(ctx, agent); err != nil {
		return passport.Revocation{}, err
	}
	why := "revoked"
	if reason != "" {
		why += ": " + reason
	}
	if _, err := s.setDisabled(ctx, agent, true, why); err != nil {
		return passport.Revocation{}, err
	}
	return s.revokeAgent(ctx, agent, reason, by)
}

func (s *Server) revokeJTI(ctx context.Context, jti string, exp time.Time, reason, by string) (passport.Revocation, error) {
	if len(jti) > 256 || strings.ContainsAny(jti, "/\x00") {
		return passport.Revocation{}, badRequest("not a passport id: " + strconv.Quote(jti))
	}
	now := s.now().UTC()
	rv := passport.Revocation{Kind: passport.RevokeJTI, ID: jti, RevokedAt: now, ExpiresAt: now.Add(s.keep), Reason: reason}
	var is issued
	_, ierr := s.getJSON(ctx, prefixIssued+jti, &is)
	switch {
	case ierr == nil:
		rv.ExpiresAt = is.ExpiresAt
	case !exp.IsZero() && exp.Add(s.opts.Leeway).After(now):
		rv.ExpiresAt = exp.Add(s.opts.Leeway).UTC()
	}
	if err := s.publish(ctx, rv, by); err != nil {
		return rv, err
	}
	if ierr == nil {
		// What was minted for the agent went to the sidecar holding this
		// passport: mint afresh for whatever passport comes next.
		if s.opts.Mints != nil {
			s.opts.Mints.DropAgent(is.Agent)
		}
		// The sidecar holding it may not refresh its way out.
		err := s.updateSidecar(ctx, sidecarRecord{ID: is.Sidecar}, func(r *sidecarRecord) error {
			if r.Agent == "" {
				return errGone
			}
			r.Revoked, r.RevokedReason = true, fmt.Sprintf("passport %s revoked: %s", jti, reason)
			return nil
		})
		if err != nil && !errors.Is(err, errGone) {
			return rv, err
		}
	}
	return rv, nil
}

var errGone = errors.New("gone")

func (s *Server) revokeAgent(ctx context.Context, agent, reason, by string) (passport.Revocation, error) {
	now := s.now().UTC()
	rv := passport.Revocation{Kind: passport.RevokeAgent, ID: agent, RevokedAt: now, ExpiresAt: now.Add(s.keep), Reason: reason}
	if s.opts.Mints != nil {
		s.opts.Mints.DropAgent(agent)
	}
	if err := s.publish(ctx, rv, by); err != nil {
		return rv, err
	}
	s.withdrawHandoffs(ctx, agent, "sender revoked: "+reason)
	return rv, nil
}

// publish writes a revocation to the feed; every watching sidecar gets it.
func (s *Server) publish(ctx context.Context, rv passport.Revocation, by string) error {
	key := prefixRevocations + string(rv.Kind) + "/" + rv.ID
	for {
		var old passport.Revocation
		rev, err := s.getJSON(ctx, key, &old)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err == nil && old.ExpiresAt.After(rv.ExpiresAt) {
			rv.ExpiresAt = old.ExpiresAt
		}
		b, _ := json.Marshal(rv)
		_, err = s.store.CompareAndSwap(ctx, key, rev, b)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	s.opts.Metrics.revocations.Inc()
	rec := audit.Record{Action: audit.ActionPassportRevoked, Reason: reason.RevokedByControl, Detail: by + ": " + rv.Reason}
	if rv.Kind == passport.RevokeJTI {
		rec.PassportJTI = rv.ID
	} else {
		rec.AgentID = rv.ID
	}
	s.audit(ctx, rec)
	s.log.Info("revoked", zap.String("kind", string(rv.Kind)), zap.String("id", rv.ID), zap.String("by", by), zap.String("reason", rv.Reason))
	return nil
}

// revocations lists the whole revocation set and the revision it is
// consistent with.
func (s *Server) revocations(r *http.Request) (any, error) {
	kvs, rev, err := s.store.List(r.Context(), prefixRevocations)
	if err != nil {
		return nil, err
	}
	out := RevocationList{Rev: rev, Revocations: make([]passport.Revocation, 0, len(kvs))}
	for _, kv := range kvs {
		var rv passport.Revocation
		if err := json.Unmarshal(kv.Value, &rv); err != nil {
			return nil, fmt.Errorf("control: %s: %w", kv.Key, err)
		}
		out.Revocations = append(out.Revocations, rv)
	}
	if c := callerOf(r); !c.operator {
		s.touch(c.sidecar.ID, rev)
	}
	return out, nil
}

// watch streams the feed from ?rev=N (see the package doc). It writes
// its own answer, so it returns nil, nil once streaming began.
func (s *Server) watch(r *http.Request) (any, error) {
	rev, err := strconv.ParseInt(r.URL.Query().Get("rev"), 10, 64)
	if err != nil || rev < 0 {
		return nil, badRequest("rev: a revision (a whole number ≥ 0) is required")
	}
	w := r.Context().Value(writerKey{}).(http.ResponseWriter)
	c := callerOf(r)
	id := ""
	if !c.operator {
		id = c.sidecar.ID
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// The store, as etcd, lets a watch wait for a revision it has not
	// reached. A sidecar's revision ahead of the store's is from another
	// history (a store restored from a backup, another cluster), and
	// watching from it would skip every change up to it: the sidecar
	// resyncs instead.
	cur, err := s.store.Rev(ctx)
	if err != nil {
		return nil, err
	}
	ahead := rev > cur
	var ch <-chan store.WatchResponse
	if !ahead {
		ch = s.store.Watch(ctx, prefixFeed, rev)
	}

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	send := func(evs ...WatchEvent) bool {
		for i := range evs {
			if enc.Encode(&evs[i]) != nil {
				return false
			}
		}
		// A write that cannot finish in time means a dead or stuck
		// sidecar: drop it rather than hold a goroutine for it.
		rc.SetWriteDeadline(time.Now().Add(s.opts.Heartbeat * 5))
		if bw.Flush() != nil || rc.Flush() != nil {
			return false
		}
		if id != "" {
			s.touch(id, rev)
		}
		return true
	}
	s.watching(id, +1)
	defer s.watching(id, -1)
	s.opts.Metrics.watches.Inc()
	if ahead {
		s.log.Warn("a feed asked for a revision the store has not reached; telling it to resync",
			zap.String("sidecar", id), zap.Int64("rev", rev), zap.Int64("store_rev", cur))
		send(WatchEvent{Type: EventResync, Rev: cur})
		return streamed, nil
	}
	if !send(WatchEvent{Type: EventBookmark, Rev: rev}) {
		return streamed, nil
	}
	hb := time.NewTicker(s.opts.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case <-ctx.Done():
			return streamed, nil
		case <-hb.C:
			if !send(WatchEvent{Type: EventBookmark, Rev: rev}) {
				return streamed, nil
			}
		case resp, ok := <-ch:
			if !ok {
				return streamed, nil
			}
			if resp.Err != nil {
				if errors.Is(resp.Err, store.ErrCompacted) {
					send(WatchEvent{Type: EventResync, Rev: rev})
				} else if ctx.Err() == nil {
					s.log.Warn("feed watch ended", zap.Error(resp.Err))
				}
				return streamed, nil
			}
			var evs []WatchEvent
			for _, e := range resp.Events {
				rev = e.KV.ModRev
				if agent, ok := strings.CutPrefix(e.KV.Key, prefixDetectors); ok {
					if ev, ok := s.detectorsEvent(c, agent, e); ok {
						evs = append(evs, ev)
					}
					continue
				}
				if e.Type != store.EventPut {
					continue
				}
				if name, ok := strings.CutPrefix(e.KV.Key, prefixVault); ok {
					evs = append(evs, WatchEvent{Type: EventCredentials, Rev: rev, Credential: name})
					continue
				}
				if !strings.HasPrefix(e.KV.Key, prefixRevocations) {
					continue
				}
				var rv passport.Revocation
				if err := json.Unmarshal(e.KV.Value, &rv); err != nil {
					s.log.Error("unreadable revocation in the store", zap.String("key", e.KV.Key), zap.Error(err))
					continue
				}
				evs = append(evs, WatchEvent{Type: EventRevoked, Rev: rev, Revocation: &rv})
			}
			if len(evs) == 0 {
				// Keep the sidecar's revision current even when nothing
				// it must apply changed.
				evs = append(evs, WatchEvent{Type: EventBookmark, Rev: rev})
			}
			s.opts.Metrics.events.Add(float64(len(evs)))
			if !send(evs...) {
				return streamed, nil
			}
		}
	}
}

type writerKey struct{}

// streamed is what a handler that wrote its own answer returns.
var streamed = &struct{ streamed bool }{true}

func (s *Server) watching(id string, d int) {
	if id == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.liveLocked(id).watching += d
}
