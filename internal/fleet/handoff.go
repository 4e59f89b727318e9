package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/stackctl/stack/proxy"
	"github.com/stackctl/stack/reason"
)

// HandoffOptions configure Handoffs.
type HandoffOptions struct {
	// Duration is how long the senders send (default 20s).
	Duration time.Duration
	// PayloadBytes is the size of each payload (default 1024).
	PayloadBytes int
}

// HandoffResult is what handoffs between agents cost through their
// sidecars: half the sidecars send, each to its own recipient agent,
// whose sidecar is in the other half.
type HandoffResult struct {
	Pairs        int     `json:"pairs"`
	DurationMS   float64 `json:"duration_ms"`
	PayloadBytes int     `json:"payload_bytes"`
	Sent         int     `json:"sent"`
	Delivered    int     `json:"delivered"`
	// PerSecond is the handoffs delivered per second over the run, with
	// each sender sending its next as soon as the last was deposited.
	PerSecond float64 `json:"per_second"`
	// Deposit is a send as the sending agent sees it (POST through its
	// sidecar: checks, sealing, the deposit); Fetch is a fetch as the
	// receiving agent sees it (GET through its sidecar: the one-shot
	// take, opening, checks); Inbox is listing the inbox.
	Deposit  Spread   `json:"deposit"`
	Fetch    Spread   `json:"fetch"`
	Inbox    Spread   `json:"inbox"`
	Problems []string `json:"problems,omitempty"`
}

// handoffSchema is the schema the scenario's payloads follow.
const handoffSchema = `{"type":"object","required":["seq","pad"],"properties":{"seq":{"type":"integer","minimum":0},"pad":{"type":"string"}},"additionalProperties":false}`

// Handoffs runs senders and receivers in pairs of sidecars for Duration:
// each sender hands off to its receiver as fast as its deposits return;
// each receiver lists its inbox and fetches what waits. Every handoff
// sent must be delivered, once, with its payload.
func (f *Fleet) Handoffs(ctx context.Context, opts HandoffOptions) (HandoffResult, error) {
	if opts.Duration <= 0 {
		opts.Duration = 20 * time.Second
	}
	if opts.PayloadBytes <= 0 {
		opts.PayloadBytes = 1024
	}
	pairs := f.opts.Sidecars / 2
	res := HandoffResult{Pairs: pairs, PayloadBytes: opts.PayloadBytes}
	schemaFile := filepath.Join(f.opts.Dir, "handoff-schema.json")
	if err := os.WriteFile(schemaFile, []byte(handoffSchema), 0o600); err != nil {
		return res, err
	}
	if _, err := f.stack(ctx, "", "handoff", "schema", "put", "fleet/v1", schemaFile); err != nil {
		return res, err
	}
	var plans []plan
	for i := range pairs {
		f.agents++
		sender, receiver := fmt.Sprintf("fleet-sender-%d-%s", f.agents, randomHex(3)), fmt.Sprintf("fleet-receiver-%d-%s", f.agents, randomHex(3))
		if _, err := f.stack(ctx, "", "agent", "register", receiver, "--grant", grant, "--ttl", "10m"); err != nil {
			return res, err
		}
		if _, err := f.stack(ctx, "", "agent", "register", sender, "--grant", "handoff-to="+receiver+",handoff-schemas=fleet/v1", "--ttl", "10m"); err != nil {
			return res, err
		}
		plans = append(plans, plan{index: i, agent: sender}, plan{index: pairs + i, agent: receiver})
	}
	scs, err := f.restartSidecars(ctx, plans)
	if err != nil {
		return res, err
	}
	if err := f.waitConnected(ctx, scs); err != nil {
		return res, err
	}
	var (
		mu                     sync.Mutex
		deposits, fetches, ins []time.Duration
		p                      problems
		wg                     sync.WaitGroup
	)
	pad := strings.Repeat("x", max(opts.PayloadBytes-32, 0))
	began := time.Now()
	for i := range pairs {
		sender, receiver := scs[2*i], scs[2*i+1]
		var sent, delivered int
		sending := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(sending)
			for seq := 0; time.Since(began) < opts.Duration && ctx.Err() == nil; seq++ {
				body, _ := json.Marshal(map[string]any{"to": receiver.Agent, "schema": "fleet/v1", "ttl": "10m", "payload": map[string]any{"seq": seq, "pad": pad}})
				d, status, why, _, err := sender.handoff(ctx, http.MethodPost, proxy.HandoffPath, body)
				mu.Lock()
				if err != nil || status != http.StatusCreated {
					p.add("sender %d: handoff %d: %d %s %v", sender.Index, seq, status, why, err)
				} else {
					deposits = append(deposits, d)
					sent++
				}
				mu.Unlock()
			}
		}()
		go func() {
			defer wg.Done()
			done := false
			for ctx.Err() == nil {
				select {
				case <-sending:
					done = true
				default:
				}
				d, status, why, body, err := receiver.handoff(ctx, http.MethodGet, proxy.HandoffPath, nil)
				var waiting []struct {
					ID string `json:"id"`
				}
				if err == nil && status == http.StatusOK {
					err = json.Unmarshal(body, &waiting)
				}
				if err != nil || status != http.StatusOK {
					mu.Lock()
					p.add("receiver %d: inbox: %d %s %v", receiver.Index, status, why, err)
					mu.Unlock()
					return
				}
				mu.Lock()
				ins = append(ins, d)
				mu.Unlock()
				for _, w := range waiting {
					d, status, why, _, err := receiver.handoff(ctx, http.MethodGet, proxy.HandoffPath+"/"+w.ID, nil)
					mu.Lock()
					if err != nil || status != http.StatusOK {
						p.add("receiver %d: handoff %s: %d %s %v", receiver.Index, w.ID, status, why, err)
					} else {
						fetches = append(fetches, d)
						delivered++
					}
					mu.Unlock()
				}
				mu.Lock()
				caughtUp := delivered >= sent
				mu.Unlock()
				if done && caughtUp && len(waiting) == 0 {
					return
				}
				if len(waiting) == 0 {
					if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	res.Sent, res.Delivered = len(deposits), len(fetches)
	res.DurationMS = ms(time.Since(began))
	res.Deposit, res.Fetch, res.Inbox = spreadOf(deposits), spreadOf(fetches), spreadOf(ins)
	res.PerSecond = float64(len(fetches)) / time.Since(began).Seconds()
	if len(deposits) == 0 {
		p.add("no handoff was sent")
	}
	if len(fetches) != len(deposits) {
		p.add("%d handoffs sent, %d delivered", len(deposits), len(fetches))
	}
	res.Problems = p
	f.logf("handoffs: %d pairs, %d sent, %d delivered, %.0f/s; deposit p50 %.1f ms p99 %.1f ms; fetch p50 %.1f ms p99 %.1f ms",
		pairs, len(deposits), len(fetches), res.PerSecond, res.Deposit.P50MS, res.Deposit.P99MS, res.Fetch.P50MS, res.Fetch.P99MS)
	return res, nil
}

// handoff calls the sidecar's handoff endpoint as its agent would, and
// returns how long the call took, its status, reason and body.
func (s *sidecar) handoff(ctx context.Context, method, path string, body []byte) (time.Duration, int, string, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+proxy.HandoffHost+path, rd)
	if err != nil {
		return 0, 0, "", nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, 0, "", nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return time.Since(start), resp.StatusCode, resp.Header.Get(reason.Header), b, err
}
