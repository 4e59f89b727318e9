package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/stackctl/stack/reason"
)

// connectRefused is a CONNECT the sidecar answered with a refusal.
type connectRefused struct {
	status int
	reason string
}

func (e *connectRefused) Error() string {
	return fmt.Sprintf("CONNECT refused: %d %s", e.status, e.reason)
}

// sample is one request an agent sent through its sidecar.
type sample struct {
	sent, done time.Time
	status     int    // 0 when the request failed without an answer
	reason     string // X-Stack-Reason of a refusal
	err        string // a transport error, or an unexpected answer
}

// ok: the upstream answered, with the credential injected.
func (s sample) ok() bool { return s.status == http.StatusOK && s.reason == "" && s.err == "" }

// refused: the sidecar refused it, for reason.
func (s sample) refused(reason string) bool { return s.reason == reason }

// describe is a sample's outcome in a word or three.
func (s sample) describe() string {
	switch {
	case s.ok():
		return "200"
	case s.reason != "":
		return fmt.Sprintf("%d %s", s.status, s.reason)
	case s.err != "":
		return s.err
	default:
		return fmt.Sprint(s.status)
	}
}

// send makes one request through the sidecar, as its agent would: no
// Proxy-Authorization, the placeholder where the key goes.
func (s *sidecar) send(ctx context.Context, target string) (sm sample) {
	sm.sent = time.Now()
	defer func() { sm.done = time.Now() }()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		sm.err = err.Error()
		return sm
	}
	req.Header.Set("Authorization", "Bearer "+placeholder)
	resp, err := s.client.Do(req)
	if err != nil {
		var refused *connectRefused
		if errors.As(err, &refused) {
			sm.status, sm.reason = refused.status, refused.reason
		} else {
			sm.err = err.Error()
		}
		return sm
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	sm.status, sm.reason = resp.StatusCode, resp.Header.Get(reason.Header)
	if resp.StatusCode != http.StatusOK && sm.reason == "" {
		sm.err = "HTTP " + resp.Status
	}
	return sm
}

// stream is one agent's steady requests through its sidecar.
type stream struct {
	sc *sidecar

	mu      sync.Mutex
	samples []sample
}

func (st *stream) snapshot() []sample {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]sample(nil), st.samples...)
}

// traffic runs one stream per sidecar until stop.
type traffic struct {
	streams []*stream
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// startTraffic sends a request through each sidecar every interval,
// each stream starting at a random offset so that the fleet is not
// driven in step.
func (f *Fleet) startTraffic(ctx context.Context, scs []*sidecar) *traffic {
	ctx, cancel := context.WithCancel(ctx)
	t := &traffic{cancel: cancel}
	target := f.up.url("/v1/fleet")
	interval := f.opts.Interval
	for _, sc := range scs {
		st := &stream{sc: sc}
		t.streams = append(t.streams, st)
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			next := time.Now().Add(rand.N(interval))
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				sm := sc.send(ctx, target)
				if ctx.Err() != nil {
					return // cut short by stop, not an answer
				}
				st.mu.Lock()
				st.samples = append(st.samples, sm)
				st.mu.Unlock()
				// A slow answer delays the next request rather than
				// bunching the ones it held up.
				next = next.Add(interval)
				if now := time.Now(); next.Before(now) {
					next = now
				}
			}
		}()
	}
	return t
}

func (t *traffic) stop() {
	t.cancel()
	t.wg.Wait()
}

// waitAll waits until cond holds for the samples of every stream; it
// returns when each first held, by stream.
func (t *traffic) waitAll(ctx context.Context, timeout time.Duration, what string, cond func([]sample) bool) error {
	err := waitFor(ctx, timeout, 10*time.Millisecond, func() (bool, error) {
		for _, st := range t.streams {
			if !cond(st.snapshot()) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		var missing []int
		for _, st := range t.streams {
			if !cond(st.snapshot()) {
				missing = append(missing, st.sc.Index)
			}
		}
		return fmt.Errorf("%s: sidecars %v: %w", what, missing, err)
	}
	return nil
}

// warm waits until every stream has had n answers in a row, so the
// agents' tunnels are open before anything is measured.
func (t *traffic) warm(ctx context.Context, n int) error {
	return t.waitAll(ctx, refuseTimeout, "warm-up", func(s []sample) bool {
		if len(s) < n {
			return false
		}
		for _, sm := range s[len(s)-n:] {
			if !sm.ok() {
				return false
			}
		}
		return true
	})
}

// firstRefusal is the index of the first sample answered at or after
// from refused for reason, or -1.
func firstRefusal(s []sample, from time.Time, reason string) int {
	for i, sm := range s {
		if !sm.done.Before(from) && sm.refused(reason) {
			return i
		}
	}
	return -1
}

// refusedSince reports whether a sample answered at or after from was
// refused for reason.
func refusedSince(from time.Time, reason string) func([]sample) bool {
	return func(s []sample) bool { return firstRefusal(s, from, reason) >= 0 }
}

// window is the samples sent in [from, to).
func window(s []sample, from, to time.Time) []sample {
	var out []sample
	for _, sm := range s {
		if !sm.sent.Before(from) && sm.sent.Before(to) {
			out = append(out, sm)
		}
	}
	return out
}

// tally counts outcomes: "200", "403 passport_revoked", an error...
type tally map[string]int

func (t tally) add(s []sample) {
	for _, sm := range s {
		t[sm.describe()]++
	}
}

// meanInterval is the mean time between two requests of one stream, as
// sent: the configured interval unless the machine could not keep up.
func meanInterval(streams []*stream) time.Duration {
	var sum time.Duration
	gaps := 0
	for _, st := range streams {
		s := st.snapshot()
		if len(s) < 2 {
			continue
		}
		sum += s[len(s)-1].sent.Sub(s[0].sent)
		gaps += len(s) - 1
	}
	if gaps == 0 {
		return 0
	}
	return sum / time.Duration(gaps)
}
