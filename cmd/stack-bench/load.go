package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/stackctl/stack/reason"
)

// maxSamples bounds the latency samples one client keeps, so a long soak
// cannot grow memory without bound; past it, samples are kept at a
// stride.
const maxSamples = 1 << 20

// loadSpec says how to drive one target.
type loadSpec struct {
	// Target is the https URL requested.
	Target string
	// Proxy is the proxy URL (with the passport as user info); nil sends
	// requests directly.
	Proxy *url.URL
	// DialAddr, when set, is where direct connections go whatever the
	// URL's host (the origin's name is kept for SNI and Host).
	DialAddr string
	// Roots are the CAs the client trusts for the origin's certificate:
	// the MITM CA through an intercepting proxy, else the upstream's.
	Roots *x509.CertPool
	// Header is added to every request (the placeholder credential).
	Header http.Header
	// Clients is the number of concurrent clients, each with its own
	// Transport and so its own connection.
	Clients int
	// NewConn opens a new connection (and so a new CONNECT and TLS
	// handshake) for every request.
	NewConn bool
	Warmup  time.Duration
	// Duration is the measured window after Warmup; zero runs until ctx
	// ends.
	Duration time.Duration
	// OnTick, when set, is called about every TickEvery during the
	// measured window (the soak mode samples the proxy with it).
	OnTick    func(elapsed time.Duration)
	TickEvery time.Duration
	// OnStart, when set, is called when the measured window opens.
	OnStart func()
	// Interval, when positive, paces each client to at most one request
	// per Interval (steady load for the soak); zero sends back to back.
	Interval time.Duration
	// UniquePaths gives every request a path of its own, Target's
	// followed by /CLIENT/N, and keeps the paths of the requests answered
	// in loadResult.Answered (the crash mode looks up each one's audit
	// records). Numeric segments keep the agent's learned path profile to
	// one template.
	UniquePaths bool
}

// loadResult is what the clients measured.
type loadResult struct {
	// Requests completed with status 200 and the whole body read, in the
	// measured window.
	Requests int64
	// Errors in the measured window: transport errors and other statuses.
	Errors int64
	// Total is every 200 response, warm-up included (for audit counts).
	Total   int64
	Elapsed time.Duration
	// Latencies of the measured requests, sorted.
	Latencies []time.Duration
	// FirstError is the first error seen, for the report.
	FirstError string
	// Answered, with UniquePaths, is the path of every 200 answer whose
	// body was read to its end, warm-up and window's end included.
	Answered []string
}

// RPS is requests per second in the measured window.
func (r loadResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Quantile returns the q-quantile (0..1) of the sorted latencies, by the
// nearest-rank method.
func (r loadResult) Quantile(q float64) time.Duration {
	return quantile(r.Latencies, q)
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q*float64(len(sorted))+0.999999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// clientStats is one client's share of a loadResult.
type clientStats struct {
	id                      int
	requests, errors, total int64
	samples                 []time.Duration
	stride, seen            int
	firstErr                error
	answered                []string
}

func (c *clientStats) sample(d time.Duration) {
	c.seen++
	if c.seen%c.stride != 0 {
		return
	}
	c.samples = append(c.samples, d)
	if len(c.samples) == maxSamples {
		// Keep every other sample and halve the rate from now on.
		n := 0
		for i := 0; i < len(c.samples); i += 2 {
			c.samples[n] = c.samples[i]
			n++
		}
		c.samples = c.samples[:n]
		c.stride *= 2
	}
}

// newTransport is one client's Transport: HTTP/1.1 (as the agents' SDKs
// use through a proxy), its own connection, keep-alive unless newConn.
func newTransport(spec loadSpec) *http.Transport {
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: spec.Roots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableKeepAlives:   spec.NewConn,
		DisableCompression:  true,
		IdleConnTimeout:     30 * time.Second,
		// A new TLS session every time in new-connection mode: no session
		// cache, as a fresh agent process would have none.
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	if spec.Proxy != nil {
		tr.Proxy = http.ProxyURL(spec.Proxy)
	} else {
		d := &net.Dialer{Timeout: 10 * time.Second}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if spec.DialAddr != "" {
				addr = spec.DialAddr
			}
			return d.DialContext(ctx, network, addr)
		}
	}
	return tr
}

// drive runs spec's clients until the measured window ends (or ctx does)
// and returns what they saw. At the end of the window no new request
// starts, but requests under way finish (they count in Total, not in the
// measured figures), so every answer a proxy sent is accounted for.
func drive(ctx context.Context, spec loadSpec) (loadResult, error) {
	if spec.Clients <= 0 {
		return loadResult{}, errors.New("load: clients must be positive")
	}
	start := time.Now()
	w := window{from: start.Add(spec.Warmup)}
	if spec.Duration > 0 {
		w.to = w.from.Add(spec.Duration)
	}
	stats := make([]*clientStats, spec.Clients)
	var wg sync.WaitGroup
	for i := range stats {
		cs := &clientStats{id: i, stride: 1}
		stats[i] = cs
		wg.Go(func() { runClient(ctx, spec, cs, w) })
	}
	tickCtx, stopTicks := context.WithCancel(ctx)
	var tg sync.WaitGroup
	tg.Go(func() {
		if !sleepUntil(tickCtx, w.from) {
			return
		}
		if spec.OnStart != nil {
			spec.OnStart()
		}
		if spec.OnTick == nil || spec.TickEvery <= 0 {
			return
		}
		t := time.NewTicker(spec.TickEvery)
		defer t.Stop()
		for {
			select {
			case <-tickCtx.Done():
				return
			case now := <-t.C:
				if w.over(now) {
					return
				}
				spec.OnTick(now.Sub(w.from))
			}
		}
	})
	wg.Wait()
	stopTicks()
	tg.Wait()
	end := time.Now()
	if !w.to.IsZero() && end.After(w.to) {
		end = w.to
	}
	res := loadResult{Elapsed: end.Sub(w.from)}
	for _, cs := range stats {
		res.Requests += cs.requests
		res.Errors += cs.errors
		res.Total += cs.total
		res.Latencies = append(res.Latencies, cs.samples...)
		res.Answered = append(res.Answered, cs.answered...)
		if cs.firstErr != nil && res.FirstError == "" {
			res.FirstError = cs.firstErr.Error()
		}
	}
	slices.Sort(res.Latencies)
	if res.Elapsed <= 0 {
		return res, errors.New("load: stopped during warm-up")
	}
	return res, nil
}

// window is the measured part of a run; a zero to means until ctx ends.
type window struct{ from, to time.Time }

func (w window) over(t time.Time) bool { return !w.to.IsZero() && !t.Before(w.to) }

func (w window) in(t time.Time) bool { return !t.Before(w.from) && !w.over(t) }

// sleepUntil waits for t; false means ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// runClient sends requests one after another on its own Transport until
// the window closes or ctx ends. A request counts in the measured figures
// when it ends inside the window.
func runClient(ctx context.Context, spec loadSpec, cs *clientStats, w window) {
	tr := newTransport(spec)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for n := 0; ctx.Err() == nil && !w.over(time.Now()); n++ {
		target := spec.Target
		if spec.UniquePaths {
			target += "/" + strconv.Itoa(cs.id) + "/" + strconv.Itoa(n)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			cs.firstErr = err
			cs.errors++
			return
		}
		for k, v := range spec.Header {
			req.Header[k] = v
		}
		t0 := time.Now()
		err = do(client, req)
		t1 := time.Now()
		if ctx.Err() != nil {
			return // interrupted
		}
		if spec.Interval > 0 {
			sleepUntil(ctx, t0.Add(spec.Interval))
		}
		if err == nil {
			cs.total++
			if spec.UniquePaths {
				cs.answered = append(cs.answered, req.URL.EscapedPath())
			}
		}
		if !w.in(t1) {
			if err != nil {
				backoff(ctx)
			}
			continue
		}
		if err != nil {
			cs.errors++
			if cs.firstErr == nil {
				cs.firstErr = err
			}
			backoff(ctx)
			continue
		}
		cs.requests++
		cs.sample(t1.Sub(t0))
	}
}

// backoff keeps a client whose target is failing from spinning.
func backoff(ctx context.Context) {
	t := time.NewTimer(5 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// do sends req and reads the whole answer; anything but 200 is an error.
func do(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		if why := resp.Header.Get(reason.Header); why != "" {
			return fmt.Errorf("status %d (%s)", resp.StatusCode, why)
		}
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
