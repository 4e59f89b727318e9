package fleet

import (
	"context"
	"slices"
	"time"
)

// MemoryResult is the memory of the control plane with every sidecar
// joined and watching, and of the sidecars for reference.
type MemoryResult struct {
	Sidecars int `json:"sidecars"`
	// Watching is how many of them the control plane lists as watching
	// the feed when memory is read.
	Watching int    `json:"watching"`
	Control  Memory `json:"control"`
	// Sidecar is the sidecar of median RssAnon; SidecarRssAnonKB the
	// spread over all of them.
	Sidecar          Memory   `json:"sidecar"`
	SidecarRssAnonKB KBSpread `json:"sidecar_rss_anon_kb"`
	Problems         []string `json:"problems,omitempty"`
}

// KBSpread is the distribution of a size over processes.
type KBSpread struct {
	Min int `json:"min"`
	P50 int `json:"p50"`
	Max int `json:"max"`
}

// memorySettle is how long the fleet idles before memory is read, so
// that the traffic's garbage is collected.
const memorySettle = 2 * time.Second

// Memory joins every sidecar to a new agent, sends traffic through each
// for a moment, and once the control plane lists them all as watching,
// reads RssAnon (and VmRSS) of the control plane and of every sidecar.
func (f *Fleet) Memory(ctx context.Context) (MemoryResult, error) {
	res := MemoryResult{Sidecars: f.opts.Sidecars}
	agent, err := f.newAgent(ctx, "memory", 10*time.Minute)
	if err != nil {
		return res, err
	}
	scs, err := f.restartSidecars(ctx, plansFor(agent, 0, f.opts.Sidecars))
	if err != nil {
		return res, err
	}
	tr, err := f.settle(ctx, scs)
	if err != nil {
		return res, err
	}
	err = sleepCtx(ctx, memorySettle)
	tr.stop()
	if err != nil {
		return res, err
	}
	var p problems
	err = waitFor(ctx, refuseTimeout, 200*time.Millisecond, func() (bool, error) {
		st, err := f.controlStatus(ctx)
		if err != nil {
			return false, err
		}
		res.Watching = 0
		for _, s := range st.Sidecars {
			if s.Agent == agent && s.Watching {
				res.Watching++
			}
		}
		return res.Watching == len(scs), nil
	})
	if err != nil {
		p.add("the control plane lists %d of %d sidecars as watching: %v", res.Watching, len(scs), err)
	}
	if err := sleepCtx(ctx, memorySettle); err != nil {
		return res, err
	}
	if res.Control, err = readMemory(f.control.pid()); err != nil {
		return res, err
	}
	mems := make([]Memory, len(scs))
	for i, s := range scs {
		if mems[i], err = readMemory(s.PID); err != nil {
			return res, err
		}
	}
	slices.SortFunc(mems, func(a, b Memory) int { return a.RssAnonKB - b.RssAnonKB })
	res.Sidecar = mems[(len(mems)-1)/2]
	res.SidecarRssAnonKB = KBSpread{Min: mems[0].RssAnonKB, P50: res.Sidecar.RssAnonKB, Max: mems[len(mems)-1].RssAnonKB}
	res.Problems = p
	f.logf("memory: control plane RssAnon %d kB with %d sidecars watching; sidecar RssAnon p50 %d kB", res.Control.RssAnonKB, res.Watching, res.Sidecar.RssAnonKB)
	return res, nil
}
