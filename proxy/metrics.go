package proxy

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stackctl/stack/inject/mint"
)

// Metric names, all in one place.
const (
	MetricRequests         = "stack_requests_total"
	MetricInjections       = "stack_injections_total"
	MetricUpstreamDuration = "stack_upstream_duration_seconds"
	MetricDetectorSignals  = "stack_detector_signals_total"
	MetricAuditAppend      = "stack_audit_append_duration_seconds"
	MetricTunnels          = "stack_connect_tunnels_total"
	MetricActiveConns      = "stack_active_connections"
	MetricMints            = "stack_credential_mints_total"
	MetricMintDuration     = "stack_credential_mint_duration_seconds"
	MetricMinted           = "stack_minted_credentials"
	MetricLeases           = "stack_credential_leases"
	MetricJudgeCalls       = "stack_injection_judge_calls_total"
	MetricJudgeDuration    = "stack_injection_judge_duration_seconds"
)

// Metrics are the sidecar's Prometheus metrics, on their own registry so
// tests and several proxies in one process do not collide.
type Metrics struct {
	Registry         *prometheus.Registry
	Requests         *prometheus.CounterVec   // outcome (allowed|denied|would_deny), reason (one of reason.All, "" when allowed)
	Injections       *prometheus.CounterVec   // credential
	UpstreamDuration *prometheus.HistogramVec // outcome (ok|error)
	DetectorSignals  *prometheus.CounterVec   // detector, severity
	AuditAppend      prometheus.Histogram
	Tunnels          *prometheus.CounterVec // mode (mitm|tunnel)
	ActiveConns      prometheus.Gauge
	Mints            *prometheus.CounterVec   // kind, outcome (ok|error)
	MintDuration     *prometheus.HistogramVec // kind
	JudgeCalls       *prometheus.CounterVec   // kind (chat|classifier), outcome (ok|cached|timeout|error|malformed)
	JudgeDuration    *prometheus.HistogramVec // kind; calls made, not cached verdicts

	// The children every allowed request touches, resolved once: a
	// label lookup hashes its values on every call.
	allowed    prometheus.Counter
	upstreamOK prometheus.Observer
	// injections holds Injections' child per credential name.
	injections sync.Map
	// signals holds DetectorSignals' child per detector and severity: in
	// a storm every request counts a signal.
	signalsMu sync.RWMutex
	signals   map[signalLabels]prometheus.Counter
}

type signalLabels struct{ detector, severity string }

// signal returns the signal counter of detector and severity.
func (m *Metrics) signal(detector, severity string) prometheus.Counter {
	k := signalLabels{detector, severity}
	m.signalsMu.RLock()
	c, ok := m.signals[k]
	m.signalsMu.RUnlock()
	if ok {
		return c
	}
	c = m.DetectorSignals.WithLabelValues(detector, severity)
	m.signalsMu.Lock()
	if m.signals == nil {
		m.signals = map[signalLabels]prometheus.Counter{}
	}
	m.signals[k] = c
	m.signalsMu.Unlock()
	return c
}

// injected returns the injection counter of credential name.
func (m *Metrics) injected(name string) prometheus.Counter {
	if c, ok := m.injections.Load(name); ok {
		return c.(prometheus.Counter)
	}
	c := m.Injections.WithLabelValues(name)
	m.injections.Store(name, c)
	return c
}

// NewMetrics registers every metric on a fresh registry, with the Go
// runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests, Help: "Requests handled, by outcome and reason.",
		}, []string{"outcome", "reason"}),
		Injections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricInjections, Help: "Credentials injected into requests, by credential name.",
		}, []string{"credential"}),
		UpstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricUpstreamDuration, Help: "Time from sending a request upstream to its response headers.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"outcome"}),
		DetectorSignals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricDetectorSignals, Help: "Detector signals, by detector and severity.",
		}, []string{"detector", "severity"}),
		AuditAppend: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: MetricAuditAppend, Help: "Time to append one audit record durably.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}),
		Tunnels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricTunnels, Help: "CONNECT tunnels accepted, by mode (mitm or tunnel).",
		}, []string{"mode"}),
		ActiveConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricActiveConns, Help: "Client connections open on the proxy listener.",
		}),
		Mints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricMints, Help: "Short-lived credentials minted by this sidecar, by kind and outcome (ok or error).",
		}, []string{"kind", "outcome"}),
		MintDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricMintDuration, Help: "Time to mint one short-lived credential, by kind.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"kind"}),
		JudgeCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricJudgeCalls, Help: "Judgements asked of the prompt-injection model judge, by kind and outcome (ok, cached, timeout, error, malformed).",
		}, []string{"kind", "outcome"}),
		JudgeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricJudgeDuration, Help: "Time the prompt-injection model judge took per call made (cached verdicts excluded), by kind.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, .8, 1, 2.5, 5},
		}, []string{"kind"}),
	}
	m.allowed = m.Requests.WithLabelValues("allowed", "")
	m.upstreamOK = m.UpstreamDuration.WithLabelValues("ok")
	m.Registry.MustRegister(m.Requests, m.Injections, m.UpstreamDuration, m.DetectorSignals,
		m.AuditAppend, m.Tunnels, m.ActiveConns, m.Mints, m.MintDuration, m.JudgeCalls, m.JudgeDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveMint counts one mint; it is a mint.CacheOptions.OnMint.
func (m *Metrics) ObserveMint(kind string, took time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.Mints.WithLabelValues(kind, outcome).Inc()
	m.MintDuration.WithLabelValues(kind).Observe(took.Seconds())
}

// ObserveJudge counts one judgement of the prompt-injection model judge;
// took is zero for a verdict from its cache, which made no call.
func (m *Metrics) ObserveJudge(kind, outcome string, took time.Duration) {
	m.JudgeCalls.WithLabelValues(kind, outcome).Inc()
	if took > 0 {
		m.JudgeDuration.WithLabelValues(kind).Observe(took.Seconds())
	}
}

// CountMinted exports how many minted credentials c holds.
func (m *Metrics) CountMinted(c *mint.Cache) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: MetricMinted, Help: "Short-lived credentials this sidecar minted and holds in memory.",
	}, func() float64 { return float64(c.Len()) }))
}

// CountLeases exports how many credential leases s holds.
func (m *Metrics) CountLeases(s *LeaseStore) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: MetricLeases, Help: "Credential leases held in memory from the control plane (0 after a revocation).",
	}, func() float64 { return float64(s.Len()) }))
}
