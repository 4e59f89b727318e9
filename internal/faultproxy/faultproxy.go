// Package faultproxy is a TCP proxy for tests that can cut the link
// between a client and a server the way a network partition does: the
// connections stay open and go silent in both directions, with no reset
// and no close, until the link heals and the bytes held back flow again,
// as TCP delivers them after a partition shorter than its timeouts. It is
// toxiproxy with a latency toxic of an hour on both directions while the
// link is cut (removing a latency toxic passes on what it held).
//
//	p, err := faultproxy.New("127.0.0.1:2379")
//	defer p.Close()
//	client := dial(p.Addr()) // instead of the server's address
//	p.Partition()            // the client hears nothing, and is not told
//	p.Heal()
package faultproxy

import (
	"context"
	"fmt"
	"strings"
	"sync"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/collectors"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Proxy forwards every connection made to Addr to the target.
type Proxy struct {
	p *toxiproxy.Proxy

	mu  sync.Mutex
	cut bool
}

// The toxics of a partition, one per direction.
var partition = []string{"upstream", "downstream"}

// New listens on a loopback port and forwards to target (host:port).
func New(target string) (*Proxy, error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	srv.Metrics.ProxyMetrics = collectors.NewProxyMetricCollectors()
	p := toxiproxy.NewProxy(srv, "faultproxy", "127.0.0.1:0", target)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	return &Proxy{p: p}, nil
}

// Addr is the address clients dial instead of the target's.
func (p *Proxy) Addr() string { return p.p.Listen }

// Partition stops every byte in both directions, on the connections open
// now and on those made later, without closing any: each side sees
// silence. Connections are still accepted, as a kernel would.
func (p *Proxy) Partition() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return
	}
	for _, stream := range partition {
		spec := fmt.Sprintf(`{"name":"partition_%s","type":"latency","stream":%q,"attributes":{"latency":3600000}}`, stream, stream)
		if _, err := p.p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
			panic("faultproxy: " + err.Error()) // a fixed, valid spec
		}
	}
	p.cut = true
}

// Heal lets bytes flow again, the ones held back first.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		return
	}
	for _, stream := range partition {
		p.p.Toxics.RemoveToxic(context.Background(), "partition_"+stream)
	}
	p.cut = false
}

// Close stops listening and closes every connection.
func (p *Proxy) Close() error {
	p.p.Stop()
	return nil
}
