package control

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stackctl/stack/inject/mint"
)

// status lists the sidecars whose credential has not expired, with what
// the feed knows of them.
func (s *Server) status(r *http.Request) (any, error) {
	return s.Status(r.Context())
}

// Status is the control plane's state: its revision, how many agents,
// and every joined sidecar with its feed lag.
func (s *Server) Status(ctx context.Context) (Status, error) {
	kvs, rev, err := s.store.List(ctx, prefixSidecars)
	if err != nil {
		return Status{}, err
	}
	agents, _, err := s.store.List(ctx, prefixAgents)
	if err != nil {
		return Status{}, err
	}
	feedRev := s.feedRev(ctx)
	now := s.now()
	out := Status{Rev: rev, Agents: len(agents), Sidecars: []SidecarStatus{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, kv := range kvs {
		var rec sidecarRecord
		if json.Unmarshal(kv.Value, &rec) != nil || !now.Before(rec.ExpiresAt) {
			continue
		}
		st := SidecarStatus{ID: rec.ID, Name: rec.Name, Agent: rec.Agent, Method: rec.Method, Joined: rec.Joined}
		if l := s.live[rec.ID]; l != nil {
			st.LastContact, st.Watching, st.Rev = l.lastContact, l.watching > 0, l.rev
		}
		st.Lag = max(feedRev-st.Rev, 0)
		out.Sidecars = append(out.Sidecars, st)
	}
	sort.Slice(out.Sidecars, func(i, j int) bool {
		if out.Sidecars[i].Agent != out.Sidecars[j].Agent {
			return out.Sidecars[i].Agent < out.Sidecars[j].Agent
		}
		return out.Sidecars[i].ID < out.Sidecars[j].ID
	})
	return out, nil
}

// feedRev is the revision of the newest feed change: a sidecar that has
// it is not behind.
func (s *Server) feedRev(ctx context.Context) int64 {
	kvs, _, err := s.store.List(ctx, prefixFeed)
	if err != nil {
		return 0
	}
	var rev int64
	for _, kv := range kvs {
		rev = max(rev, kv.ModRev)
	}
	return rev
}

// Metrics are the control plane's Prometheus metrics.
type Metrics struct {
	Registry    *prometheus.Registry
	joins       *prometheus.CounterVec
	issued      prometheus.Counter
	leases      prometheus.Counter
	revocations prometheus.Counter
	watches     prometheus.Counter
	events      prometheus.Counter
	storeStale  prometheus.Gauge
	mints       *prometheus.CounterVec
	shipped     prometheus.Counter
	integrity   *prometheus.CounterVec
	watchers    func() float64
}

// ObserveMint counts one mint; it is a mint.CacheOptions.OnMint.
func (m *Metrics) ObserveMint(kind string, _ time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.mints.WithLabelValues(kind, outcome).Inc()
}

// CountMinted exports how many minted credentials c holds.
func (m *Metrics) CountMinted(c *mint.Cache) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stack_control_minted_credentials",
		Help: "Short-lived credentials minted for leases and held in memory."}, func() float64 { return float64(c.Len()) }))
}

// NewMetrics registers the control plane's metrics, and Go's, on a new
// registry.
func NewMetrics() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.Registry.MustRegister(c) }
	m.joins = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stack_control_joins_total",
		Help: "Sidecar joins by method (token, oidc) and result (ok or the refusal's reason)."}, []string{"method", "result"})
	m.issued = prometheus.NewCounter(prometheus.CounterOpts{Name: "stack_control_passports_issued_total", Help: "Passports issued to sidecars."})
	m.leases = prometheus.NewCounter(prometheus.CounterOpts{Name: "stack_control_leases_total", Help: "Credential leases handed to sidecars."})
	m.revocations = prometheus.NewCounter(prometheus.CounterOpts{Name: "stack_control_revocations_total", Help: "Revocations published to the feed."})
	m.watches = prometheus.NewCounter(prometheus.CounterOpts{Name: "stack_control_watches_total", Help: "Feed watches opened by sidecars and operators."})
	m.events = prometheus.NewCounter(prometheus.CounterOpts{Name: "stack_control_feed_events_total", Help: "Feed events sent, all watches together."})
	m.storeStale = prometheus.NewGauge(prometheus.GaugeOpts{Name: "stack_control_store_stale",
		Help: "1 while this replica refuses requests because its store has not answered within control.store_timeout, else 0."})
	m.mints = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stack_control_credential_mints_total",
		Help: "Short-lived credentials minted for leases, by kind and outcome (ok or error)."}, []string{"kind", "outcome"})
	m.shipped = prometheus.NewCounter(prometheus.CounterOpts{Name: "stack_control_audit_records_received_total",
		Help: "Audit records received from sidecars, re-sent ones included."})
	m.integrity = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stack_control_audit_integrity_total",
		Help: "audit_integrity findings: shipped audit records that contradict the chain held, by kind."}, []string{"kind"})
	f(m.shipped)
	f(m.integrity)
	f(m.mints)
	f(m.joins)
	f(m.issued)
	f(m.leases)
	f(m.revocations)
	f(m.watches)
	f(m.events)
	f(m.storeStale)
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stack_control_sidecars_watching",
		Help: "Sidecars with an open feed watch."}, func() float64 {
		if m.watchers == nil {
			return 0
		}
		return m.watchers()
	}))
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}
