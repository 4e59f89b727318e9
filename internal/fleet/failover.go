package fleet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/client"
	"github.com/stackctl/stack/reason"
)

// FailoverOptions configure Failover.
type FailoverOptions struct {
	// Duration of the revocation stream (default 30s), one revocation
	// every Every (default 100ms).
	Duration time.Duration
	Every    time.Duration
	// Agents the sidecars serve, round robin (default 10); AgentRevokes
	// of them are revoked during the stream (default 5), the rest of the
	// stream revokes passport ids no one holds, which every sidecar must
	// apply all the same.
	Agents       int
	AgentRevokes int
	// Window is how long after each kill or restart counts as the
	// failover itself (default 5s).
	Window time.Duration
	// PassportTTL is the agents' passport life (default 15s): short, so
	// that sidecars refresh their passports through the outages and
	// across the key rotation.
	PassportTTL time.Duration
}

// FailoverResult is what the fleet did while its control replicas and
// etcd members were killed and restarted under a stream of revocations.
type FailoverResult struct {
	Sidecars int `json:"sidecars"`
	Replicas int `json:"replicas"`
	// Issued revocations (Failed could not be issued through any replica
	// within the retry bound); Agents of them revoked an agent.
	Issued int `json:"issued"`
	Failed int `json:"failed"`
	Agents int `json:"agent_revocations"`
	// Events are the kills and restarts, at their time since the stream
	// began.
	Events []FailoverEvent `json:"events"`
	// Lost is (revocation, sidecar) pairs never applied.
	Lost int `json:"lost"`
	// Propagation is from the revocation call's start to its being
	// applied on a sidecar, over every pair: issued during a failover
	// window or outside them.
	DuringFailover  Spread `json:"propagation_during_failover"`
	OutsideFailover Spread `json:"propagation_outside_failover"`
	// ServedAfterRevocation counts requests of a revoked agent sent
	// after its sidecar had applied the revocation and answered 200.
	ServedAfterRevocation int `json:"served_after_revocation"`
	// The issuer key rotated through one replica early in the stream:
	// the new key, when it began to sign, whether every replica's JWKS
	// served both keys at the end, and how many sidecars of agents never
	// revoked held a passport issued after the activation (signed by the
	// new key) at the end.
	Rotation KeyRotationResult `json:"key_rotation"`
	// FailedUnrevoked counts requests of agents never revoked that were
	// not served: passports of either key, on any replica, must serve.
	FailedUnrevoked int `json:"failed_unrevoked"`
	// Disconnected counts sidecars whose feed was not open at the end.
	Disconnected int            `json:"disconnected_at_end"`
	Moves        int            `json:"replica_moves"`
	Requests     int            `json:"requests"`
	Outcomes     map[string]int `json:"outcomes"`
	// WithinTarget: the slowest propagation outside the failover windows
	// is at most TargetMaxMS.
	WithinTarget    bool     `json:"within_target"`
	TargetMaxMS     float64  `json:"target_max_ms"`
	CommandErrors   []string `json:"command_errors,omitempty"`
	Problems        []string `json:"problems,omitempty"`
	RevokeRetries   int      `json:"revoke_retries"`
	MaxRevokeCallMS float64  `json:"max_revoke_call_ms"`
}

// KeyRotationResult is the key rotation of the failover drill.
type KeyRotationResult struct {
	control.KeyRotation
	// JWKSBothKeys counts the replicas serving both keys at the end.
	JWKSBothKeys int `json:"jwks_both_keys"`
	// NewKeySidecars of Unrevoked hold a passport issued after ActiveAt.
	NewKeySidecars int `json:"new_key_sidecars"`
	Unrevoked      int `json:"unrevoked_sidecars"`
}

// FailoverEvent is one kill or restart (Outage), or the key rotation.
type FailoverEvent struct {
	AtMS   float64 `json:"at_ms"`
	What   string  `json:"what"`
	Outage bool    `json:"outage"`
	// Propagation of the revocations issued in the window after an
	// outage event.
	Propagation Spread `json:"propagation"`
}

// issuedRevocation is one revocation of the stream.
type issuedRevocation struct {
	req      control.RevokeRequest
	started  time.Time
	returned time.Time
	err      error
	tries    int
}

func (r issuedRevocation) id() string {
	if r.req.Agent != "" {
		return "agent/" + r.req.Agent
	}
	return "jti/" + r.req.JTI
}

// Failover runs on a fleet on etcd (Options.Replicas): sidecars serve
// Agents agents under steady traffic while a revocation goes out every
// Every for Duration. A quarter in, one control replica is SIGKILLed;
// at the middle, the etcd leader; at three quarters both are started
// again; then the last replica is cut off from etcd for a while (its
// sidecars must move). Afterwards every revocation must be applied on every sidecar,
// every sidecar's feed must be open, and no request of a revoked agent
// may have been served after its sidecar applied the revocation.
func (f *Fleet) Failover(ctx context.Context, opts FailoverOptions) (FailoverResult, error) {
	res := FailoverResult{Sidecars: f.opts.Sidecars, Replicas: len(f.replicas), Outcomes: tally{}, TargetMaxMS: PropagationTargetMS}
	if f.etcd == nil || len(f.replicas) < 2 {
		return res, errors.New("failover: the fleet runs no control replicas on etcd (Options.Replicas)")
	}
	if opts.Duration <= 0 {
		opts.Duration = 30 * time.Second
	}
	if opts.Every <= 0 {
		opts.Every = 100 * time.Millisecond
	}
	if opts.Agents <= 0 {
		opts.Agents = 10
	}
	opts.Agents = min(opts.Agents, f.opts.Sidecars)
	if opts.AgentRevokes <= 0 {
		opts.AgentRevokes = 5
	}
	opts.AgentRevokes = min(opts.AgentRevokes, opts.Agents)
	if opts.Window <= 0 {
		opts.Window = 5 * time.Second
	}
	if opts.PassportTTL <= 0 {
		opts.PassportTTL = 15 * time.Second
	}
	token, err := os.ReadFile(filepath.Join(f.controlHome, "control.token"))
	if err != nil {
		return res, err
	}

	agents := make([]string, opts.Agents)
	for i := range agents {
		if agents[i], err = f.newAgent(ctx, "failover", opts.PassportTTL); err != nil {
			return res, err
		}
	}
	var plans []plan
	for i := range f.opts.Sidecars {
		plans = append(plans, plan{index: i, agent: agents[i%len(agents)]})
	}
	scs, err := f.restartSidecars(ctx, plans)
	if err != nil {
		return res, err
	}
	tr, err := f.settle(ctx, scs)
	if err != nil {
		return res, err
	}
	defer tr.stop()

	// The stream, and the outages beside it.
	n := int(opts.Duration / opts.Every)
	agentAt := map[int]string{}
	for j := range opts.AgentRevokes {
		agentAt[(j*2+1)*n/(opts.AgentRevokes*2)] = agents[j]
	}
	rc := &revoker{f: f, token: strings.TrimSpace(string(token))}
	issued := make([]issuedRevocation, n)
	begin := time.Now()
	var (
		wg     sync.WaitGroup
		evMu   sync.Mutex
		events []FailoverEvent
		outage error
	)
	note := func(what string, outage bool) {
		evMu.Lock()
		events = append(events, FailoverEvent{AtMS: ms(time.Since(begin)), What: what, Outage: outage})
		evMu.Unlock()
		f.logf("failover: %s", what)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		outage = f.outages(ctx, begin, opts.Duration, note)
	}()
	var rotErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if rotErr = sleepCtx(ctx, opts.Duration/10); rotErr != nil {
			return
		}
		// Sent once, to the first replica: a rotation is not replayed.
		if rotErr = rc.do(ctx, f.replicas[0], http.MethodPost, control.PathKeysRotate, nil, &res.Rotation.KeyRotation); rotErr != nil {
			return
		}
		note(fmt.Sprintf("issuer key rotated: %s signs from %s", res.Rotation.KID, res.Rotation.ActiveAt.Format("15:04:05.000")), false)
	}()
	tick := time.NewTicker(opts.Every)
	var calls sync.WaitGroup
	for k := range n {
		req := control.RevokeRequest{JTI: fmt.Sprintf("failover-%d-%s", k, randomHex(4)),
			Expiry: time.Now().Add(10 * time.Minute), Reason: "failover drill"}
		if a, ok := agentAt[k]; ok {
			req = control.RevokeRequest{Agent: a, Reason: "failover drill"}
		}
		calls.Add(1)
		go func() {
			defer calls.Done()
			issued[k] = rc.revoke(ctx, req)
		}()
		select {
		case <-ctx.Done():
			// The outages restart replicas and the rotation writes res:
			// wait for them, as for the calls, before returning.
			tick.Stop()
			calls.Wait()
			wg.Wait()
			return res, ctx.Err()
		case <-tick.C:
		}
	}
	tick.Stop()
	calls.Wait()
	wg.Wait()
	if outage != nil {
		return res, outage
	}
	if rotErr != nil {
		return res, fmt.Errorf("key rotation: %w", rotErr)
	}
	res.Events = events
	var p problems
	for _, r := range issued {
		res.RevokeRetries += r.tries - 1
		res.MaxRevokeCallMS = max(res.MaxRevokeCallMS, ms(r.returned.Sub(r.started)))
		if r.err != nil {
			res.Failed++
			res.CommandErrors = append(res.CommandErrors, fmt.Sprintf("%s: %v", r.id(), r.err))
			continue
		}
		res.Issued++
		if r.req.Agent != "" {
			res.Agents++
		}
	}
	if res.Failed > 0 {
		p.add("%d revocations could not be issued through any replica", res.Failed)
	}

	// Every sidecar connected again, and every revocation applied.
	if err := f.waitConnected(ctx, scs); err != nil {
		p.add("%v", err)
	}
	var applied []map[string]time.Time
	err = waitFor(ctx, refuseTimeout, 500*time.Millisecond, func() (bool, error) {
		applied = applied[:0]
		missing := 0
		for _, s := range scs {
			a, err := f.appliedRevocations(s, begin)
			if err != nil {
				return false, err
			}
			applied = append(applied, a)
			for _, r := range issued {
				if _, ok := a[r.id()]; !ok && r.err == nil {
					missing++
				}
			}
		}
		res.Lost = missing
		return missing == 0, nil
	})
	if err != nil && !errors.Is(err, errWaitTimeout) {
		return res, err
	}
	if res.Lost > 0 {
		p.add("%d (revocation, sidecar) pairs never applied", res.Lost)
	}
	if err := sleepCtx(ctx, f.hold()); err != nil {
		return res, err
	}
	tr.stop()

	// Propagation, in and out of the failover windows.
	inWindow := func(t time.Time) bool {
		for _, e := range events {
			if !e.Outage {
				continue
			}
			at := begin.Add(time.Duration(e.AtMS * float64(time.Millisecond)))
			if !t.Before(at) && t.Before(at.Add(opts.Window)) {
				return true
			}
		}
		return false
	}
	var during, outside []time.Duration
	perEvent := make([][]time.Duration, len(events))
	for i, s := range scs {
		a := applied[i]
		for _, r := range issued {
			t, ok := a[r.id()]
			if r.err != nil || !ok {
				continue
			}
			d := max(t.Sub(r.started), 0)
			for k, e := range events {
				at := begin.Add(time.Duration(e.AtMS * float64(time.Millisecond)))
				if e.Outage && !r.started.Before(at) && r.started.Before(at.Add(opts.Window)) {
					perEvent[k] = append(perEvent[k], d)
				}
			}
			if inWindow(r.started) || inWindow(t) {
				during = append(during, d)
			} else {
				outside = append(outside, d)
			}
		}
		// No request of a revoked agent served once the revocation was
		// applied here.
		if at, ok := a["agent/"+s.Agent]; ok {
			for _, sm := range tr.streams[i].snapshot() {
				if sm.sent.After(at) && sm.ok() {
					res.ServedAfterRevocation++
				}
			}
		}
		moves, err := s.metric(ctx, "stack_control_replica_moves_total")
		if err != nil {
			return res, err
		}
		res.Moves += int(moves)
	}
	res.DuringFailover, res.OutsideFailover = spreadOf(during), spreadOf(outside)
	for k := range events {
		events[k].Propagation = spreadOf(perEvent[k])
	}
	res.Events = events

	// Passports of both keys served everywhere.
	revokedAgent := map[string]bool{}
	for _, r := range issued {
		if r.req.Agent != "" {
			revokedAgent[r.req.Agent] = true
		}
	}
	for i, s := range scs {
		if revokedAgent[s.Agent] {
			continue
		}
		res.Rotation.Unrevoked++
		for _, sm := range tr.streams[i].snapshot() {
			if !sm.ok() {
				res.FailedUnrevoked++
			}
		}
		exp, err := s.metric(ctx, "stack_passport_expiry_timestamp_seconds")
		if err != nil {
			return res, err
		}
		if !time.Unix(int64(exp), 0).Add(-opts.PassportTTL).Before(res.Rotation.ActiveAt.Truncate(time.Second)) {
			res.Rotation.NewKeySidecars++
		}
	}
	for _, r := range f.replicas {
		var set struct {
			Keys []struct {
				KID string `json:"kid"`
			} `json:"keys"`
		}
		if err := rc.get(ctx, r, control.PathJWKS, &set); err != nil {
			p.add("replica %d JWKS: %v", r.index, err)
			continue
		}
		var kids []string
		for _, k := range set.Keys {
			kids = append(kids, k.KID)
		}
		if slices.Contains(kids, res.Rotation.KID) && slices.Contains(kids, res.Rotation.PreviousKID) {
			res.Rotation.JWKSBothKeys++
		} else {
			p.add("replica %d serves keys %v, want %s and %s", r.index, kids, res.Rotation.PreviousKID, res.Rotation.KID)
		}
	}
	if res.FailedUnrevoked > 0 {
		p.add("%d requests of agents never revoked were not served", res.FailedUnrevoked)
	}
	if res.Rotation.NewKeySidecars == 0 {
		p.add("no sidecar holds a passport signed by the rotated key")
	}
	if res.ServedAfterRevocation > 0 {
		p.add("%d requests of revoked agents were served after their sidecar applied the revocation", res.ServedAfterRevocation)
	}
	for _, s := range scs {
		ok, err := s.readyzConnected(ctx)
		if err != nil || !ok {
			res.Disconnected++
		}
	}
	if res.Moves == 0 {
		p.add("no sidecar moved to another replica, though one was killed and one cut off")
	}
	if res.Disconnected > 0 {
		p.add("%d sidecars not connected at the end", res.Disconnected)
	}
	for _, st := range tr.streams {
		for _, sm := range st.snapshot() {
			res.Requests++
			res.Outcomes[sm.describe()]++
		}
	}
	// Judged by the caller: a shared CI machine only bounds it.
	res.WithinTarget = res.OutsideFailover.N > 0 && res.OutsideFailover.MaxMS <= PropagationTargetMS
	res.Problems = p
	f.logf("failover: %d issued, %d lost, propagation during failover %s, outside %s", res.Issued, res.Lost, res.DuringFailover, res.OutsideFailover)
	return res, nil
}

// outages kills replica 1 at a quarter of d, the etcd leader at half,
// and restarts both at three quarters; at 85% it cuts the last replica
// off from etcd (its sidecars must move, it must not serve an old view)
// and heals the link some seconds later.
func (f *Fleet) outages(ctx context.Context, begin time.Time, d time.Duration, note func(string, bool)) error {
	at := func(frac float64) error { return sleepCtx(ctx, time.Until(begin.Add(time.Duration(frac*float64(d))))) }
	victim := f.replicas[1]
	if err := at(0.25); err != nil {
		return err
	}
	victim.proc.kill()
	note(fmt.Sprintf("SIGKILL control replica %d", victim.index), true)
	if err := at(0.5); err != nil {
		return err
	}
	lead, err := f.etcd.leader(ctx)
	if err != nil {
		return err
	}
	lead.proc.kill()
	note("SIGKILL etcd leader "+lead.name, true)
	if err := at(0.75); err != nil {
		return err
	}
	if err := f.etcd.restart(lead); err != nil {
		return err
	}
	note("restart etcd "+lead.name, true)
	if err := f.startReplica(ctx, victim); err != nil {
		return err
	}
	note(fmt.Sprintf("restart control replica %d", victim.index), true)
	if len(f.etcdLinks) == 0 {
		return nil
	}
	cut := f.replicas[len(f.replicas)-1]
	if err := at(0.85); err != nil {
		return err
	}
	f.partitionLast(true)
	note(fmt.Sprintf("partition control replica %d from etcd", cut.index), true)
	// Long enough for the replica to go stale (control.store_timeout,
	// 3 s) and its sidecars to move, also in a short drill.
	if err := sleepCtx(ctx, max(d*12/100, partitionFor)); err != nil {
		f.partitionLast(false)
		return err
	}
	f.partitionLast(false)
	note(fmt.Sprintf("heal control replica %d's links to etcd", cut.index), true)
	return nil
}

// revoker issues revocations through the replicas, moving to the next
// one when a call fails, as an operator's script would.
type revoker struct {
	f     *Fleet
	token string
	mu    sync.Mutex
	next  int
}

// partitionFor is the shortest partition of the last replica.
const partitionFor = 5 * time.Second

// revokeBound is how long one revocation is retried across replicas.
const revokeBound = 20 * time.Second

func (rc *revoker) revoke(ctx context.Context, req control.RevokeRequest) issuedRevocation {
	out := issuedRevocation{req: req, started: time.Now()}
	body, _ := json.Marshal(req)
	deadline := out.started.Add(revokeBound)
	for {
		rc.mu.Lock()
		r := rc.f.replicas[rc.next%len(rc.f.replicas)]
		rc.mu.Unlock()
		out.tries++
		err := rc.call(ctx, r, body)
		if err == nil {
			out.returned = time.Now()
			return out
		}
		rc.mu.Lock()
		if rc.f.replicas[rc.next%len(rc.f.replicas)] == r {
			rc.next++
		}
		rc.mu.Unlock()
		if time.Now().After(deadline) || ctx.Err() != nil {
			out.returned, out.err = time.Now(), err
			return out
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

func (rc *revoker) call(ctx context.Context, r *replica, body []byte) error {
	return rc.do(ctx, r, http.MethodPost, control.PathRevoke, body, nil)
}

func (rc *revoker) get(ctx context.Context, r *replica, path string, out any) error {
	return rc.do(ctx, r, http.MethodGet, path, nil, out)
}

func (rc *revoker) do(ctx context.Context, r *replica, method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, r.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+rc.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := rc.f.controlHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("replica %d: %s %s: %s: %s (%s)", r.index, method, path, resp.Status, strings.TrimSpace(string(b)), resp.Header.Get(reason.Header))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// logLine is the part of a sidecar's JSON log line the scenario reads.
type logLine struct {
	TS   time.Time `json:"ts"`
	Msg  string    `json:"msg"`
	Kind string    `json:"kind"`
	ID   string    `json:"id"`
}

// appliedRevocations reads, from s's log, when each revocation (kind/id)
// was first applied since since.
func (f *Fleet) appliedRevocations(s *sidecar, since time.Time) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := scanLog(filepath.Join(f.logDir, fmt.Sprintf("fleet-sidecar-%03d.log", s.Index)), func(l logLine) {
		if l.Msg != client.LogRevocationApplied || l.TS.Before(since.Truncate(time.Millisecond)) {
			return
		}
		k := l.Kind + "/" + l.ID
		if _, ok := out[k]; !ok {
			out[k] = l.TS
		}
	})
	return out, err
}

func scanLog(path string, fn func(logLine)) error {
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		b := sc.Bytes()
		if len(b) == 0 || b[0] != '{' || msgOf(b) != client.LogRevocationApplied {
			continue
		}
		var l logLine
		if json.Unmarshal(b, &l) == nil {
			fn(l)
		}
	}
	return sc.Err()
}

// msgOf finds the msg field cheaply, to skip lines the scenario does not
// read without decoding them.
func msgOf(b []byte) string {
	_, after, ok := bytes.Cut(b, []byte(`"msg":"`))
	if !ok {
		return ""
	}
	m, _, _ := bytes.Cut(after, []byte(`"`))
	return string(m)
}
