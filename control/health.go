package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/stackctl/stack/reason"
	"go.uber.org/zap"
)

// DefaultStoreTimeout is Options.StoreTimeout's default: longer than an
// etcd leader election (about a second), so that one does not take a
// replica out, and short enough that its sidecars move to another
// replica before they would notice a silent feed themselves.
const DefaultStoreTimeout = 3 * time.Second

// maxStoreCheckInterval bounds the interval of the store checks; with a
// short StoreTimeout they run three times within it.
const maxStoreCheckInterval = 500 * time.Millisecond

// errStale is the cause of the requests a replica cancels when its store
// stops answering.
var errStale = errors.New("control: the store stopped answering")

// health is what the replica knows of its store: when it last answered,
// and whether that is too long ago to serve.
type health struct {
	mu      sync.Mutex
	lastOK  time.Time // monotonic: staleness is real time, not s.now
	lastErr error
	stale   bool
	// serving ends, with cause errStale, when the replica goes stale:
	// every request in flight derives from it. A fresh one replaces it
	// when the store answers again.
	serving context.Context
	end     context.CancelCauseFunc
}

func (h *health) init() {
	h.lastOK = time.Now()
	h.serving, h.end = context.WithCancelCause(context.Background())
}

// CheckStore reads the store's revision (a quorum read on etcd) several
// times per Options.StoreTimeout until ctx ends. While no read has
// succeeded for longer than StoreTimeout the replica is stale: its view
// may be old, so it refuses every request that reads or writes state with
// 503 unavailable, ends its feeds at once and answers /readyz with 503,
// and sidecars move to another replica. It serves again once a read
// succeeds. A Server whose CheckStore does not run never goes stale.
func (s *Server) CheckStore(ctx context.Context) error {
	// The time until the first answer counts from here, not from New.
	s.health.mu.Lock()
	s.health.lastOK = time.Now()
	s.health.mu.Unlock()
	t := time.NewTicker(s.checkInterval)
	defer t.Stop()
	results := make(chan error, 1)
	inflight := false
	check := func() {
		inflight = true
		go func() {
			cctx, cancel := context.WithTimeout(ctx, s.opts.StoreTimeout)
			defer cancel()
			_, err := s.store.Rev(cctx)
			results <- err
		}()
	}
	check()
	for {
		select {
		case <-ctx.Done():
			if inflight {
				<-results
			}
			return nil
		case err := <-results:
			inflight = false
			if ctx.Err() == nil {
				s.judge(err, true)
			}
		case <-t.C:
			// A read that hangs (a partition is silence) does not hold
			// the verdict back: the clock alone can make a replica stale.
			if !inflight {
				check()
			}
			s.judge(nil, false)
		}
	}
}

// judge notes a check's result (when checked) and changes between
// serving and stale when the time since the last answer says so.
func (s *Server) judge(err error, checked bool) {
	h := &s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if checked {
		if err == nil {
			h.lastOK, h.lastErr = now, nil
		} else {
			h.lastErr = err
		}
	}
	since := now.Sub(h.lastOK)
	switch stale := since > s.opts.StoreTimeout; {
	case stale && !h.stale:
		h.stale = true
		h.end(errStale)
		s.opts.Metrics.storeStale.Set(1)
		s.log.Warn("the store has not answered in time: refusing requests and ending feeds until it does, so that sidecars move to another replica",
			zap.Duration("since_last_answer", since), zap.Duration("store_timeout", s.opts.StoreTimeout), zap.Error(h.lastErr))
	case !stale && h.stale:
		h.stale = false
		h.serving, h.end = context.WithCancelCause(context.Background())
		s.opts.Metrics.storeStale.Set(0)
		s.log.Info("the store answers again: serving")
	}
}

// fresh refuses a request while the replica is stale; otherwise it
// returns the context to serve it under, which ends with cause errStale
// if the replica goes stale meanwhile, and the func that releases it.
func (s *Server) fresh(parent context.Context) (context.Context, func(), error) {
	h := &s.health
	h.mu.Lock()
	stale, serving := h.stale, h.serving
	since := time.Since(h.lastOK)
	h.mu.Unlock()
	if stale {
		return nil, nil, staleError(since)
	}
	ctx, cancel := context.WithCancelCause(parent)
	stop := context.AfterFunc(serving, func() { cancel(errStale) })
	return ctx, func() { stop(); cancel(nil) }, nil
}

// sinceLastAnswer is how long ago the store last answered a check.
func (s *Server) sinceLastAnswer() time.Duration {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	return time.Since(s.health.lastOK)
}

// staleError is what a stale replica answers: clients take 503
// unavailable as "try another replica".
func staleError(since time.Duration) error {
	return fail(http.StatusServiceUnavailable, ReasonUnavailable,
		fmt.Sprintf("this control plane replica has had no answer from its store for %s: its state may be old; try another replica", since.Round(100*time.Millisecond)))
}

// readyz answers 200 only while the replica serves: a load balancer
// sends nothing to a stale one. /healthz stays 200 meanwhile, so that a
// lost store does not get replicas restarted.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	h := &s.health
	h.mu.Lock()
	stale, since, lastErr := h.stale, time.Since(h.lastOK), h.lastErr
	h.mu.Unlock()
	notReady := func(msg string) {
		w.Header().Set(reason.Header, ReasonUnavailable)
		http.Error(w, "not ready: "+msg, http.StatusServiceUnavailable)
	}
	if stale {
		msg := fmt.Sprintf("store stale: no answer from the store for %s (control.store_timeout %s)", since.Round(100*time.Millisecond), s.opts.StoreTimeout)
		if lastErr != nil {
			msg += ": " + lastErr.Error()
		}
		notReady(msg)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.StoreTimeout)
	defer cancel()
	if _, err := s.store.Rev(ctx); err != nil {
		notReady("store unavailable: " + err.Error())
		return
	}
	io.WriteString(w, "ready\n")
}
