package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/admission"
	"github.com/stackctl/stack/control/client"
	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/proxy"
)

// joinStartTimeout bounds how long a sidecar waits for its control plane
// at start before it gives up (it has no passport to serve with yet).
const joinStartTimeout = 2 * time.Minute

// joinControl joins the control plane, obtains the agent's passport,
// revocations, leases and detector modes, and keeps them current while
// ctx lasts.
func (a *app) joinControl(ctx context.Context, verifier *passport.Verifier, revs *passport.RevocationStore, leases *proxy.LeaseStore, grid *detect.Grid, m *proxy.Metrics) (*client.Client, error) {
	cfg := a.cfg.Control
	roots, err := a.controlRoots()
	if err != nil {
		return nil, err
	}
	joinToken := cfg.JoinToken
	if cfg.JoinTokenFile != "" {
		b, err := os.ReadFile(cfg.JoinTokenFile)
		if err != nil {
			return nil, fmt.Errorf("control.join_token_file: %w", err)
		}
		joinToken = strings.TrimSpace(string(b))
	}
	name, _ := os.Hostname()
	if pod := os.Getenv("POD_NAME"); pod != "" {
		name = pod
	}
	link, err := client.New(client.Options{
		URLs: cfg.URLs, RootCAs: roots, JoinToken: joinToken, OIDCTokenFile: cfg.OIDCTokenFile,
		Name: name, StatePath: filepath.Join(a.home(), controlStateFile),
		Revocations: revs, OnKeys: verifier.UpdateJWKS, OnLeases: leases.Set,
		MaxStaleness: cfg.MaxStaleness, Heartbeat: cfg.Heartbeat, StartTimeout: joinStartTimeout,
		Log: a.log.Named("control"), OnDetectorModes: agentDetectorModes(grid, a.log.Named("control")),
	})
	if err != nil {
		return nil, usageError(err)
	}
	ctx, stop := context.WithCancel(ctx)
	// Its loops write the revocation store and the state file: they end
	// before either closes.
	a.onClose(func() error { stop(); link.Wait(); return nil })
	if err := link.Start(ctx); err != nil {
		return nil, fmt.Errorf("joining the control plane at %s: %w", strings.Join(cfg.URLs, ", "), err)
	}
	h := link.Health()
	if cfg.Agent != "" && h.Agent != cfg.Agent {
		stop()
		return nil, fmt.Errorf("joined the control plane as agent %q, but control.agent (the pod's %s label) says %q: its rules map this workload to another agent", h.Agent, admission.LabelAgent, cfg.Agent)
	}
	a.log.Info("joined the control plane", zap.String("url", h.URL), zap.String("agent", h.Agent), zap.String("sidecar", h.SidecarID))
	reg := m.Registry
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stack_control_connected",
		Help: "1 while the revocation feed from the control plane is connected."}, func() float64 {
		if link.Health().Connected {
			return 1
		}
		return 0
	}))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stack_control_replica_moves_total",
		Help: "Moves to another control plane replica after the one in use failed."}, func() float64 {
		return float64(link.Health().Moves)
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stack_control_last_contact_seconds",
		Help: "Seconds since the last answer from the control plane."}, func() float64 {
		return time.Since(link.Health().LastContact).Seconds()
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stack_control_revision",
		Help: "The revision of the control plane's feed this sidecar has applied."}, func() float64 {
		return float64(link.Health().Rev)
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stack_passport_expiry_timestamp_seconds",
		Help: "When the agent's current passport expires (Unix time)."}, func() float64 {
		return float64(link.Health().PassportExpiry.Unix())
	}))
	return link, nil
}

// agentDetectorModes applies the detector modes the control plane sets
// for the agent to the grid, in place of the configured ones. Modes this
// sidecar cannot apply (a detector or mode it does not know, from a newer
// control plane) are refused whole: the modes in force stay, never a
// weaker default.
func agentDetectorModes(grid *detect.Grid, log *zap.Logger) func(agent string, modes map[string]string) {
	return func(agent string, modes map[string]string) {
		parsed := make(map[string]detect.Mode, len(modes))
		var bad error
		for name, m := range modes {
			if m == control.ModeDefault {
				continue
			}
			pm, err := detect.ParseMode(m)
			if m == "" || err != nil {
				bad = fmt.Errorf("detector %s: mode %q", name, m)
				break
			}
			parsed[name] = pm
		}
		if bad == nil {
			if maps.Equal(parsed, grid.AgentModes(agent)) {
				return // a resync handing over what is in force
			}
			bad = grid.SetAgentModes(agent, parsed)
		}
		if bad != nil {
			log.Error("refused the detector modes the control plane set for the agent; the modes in force stay",
				zap.String("agent", agent), zap.Any("modes", modes), zap.Any("in_force", grid.AgentModes(agent)), zap.Error(bad))
			return
		}
		log.Info("detector modes set by the control plane for the agent", zap.String("agent", agent), zap.Any("modes", modes))
	}
}

// linkReady: a joined sidecar is ready while it may serve its agent: its
// passport is valid and not revoked, and the control plane has not been
// away past max_staleness.
func linkReady(h client.Health) bool {
	return !h.Stale && h.Revoked == "" && time.Now().Before(h.PassportExpiry)
}

// linkDetail is the /readyz line about the control plane.
func linkDetail(h client.Health) string {
	var b strings.Builder
	fmt.Fprintf(&b, "control: agent %s, sidecar %s, revision %d, ", h.Agent, h.SidecarID, h.Rev)
	if h.Connected {
		b.WriteString("connected to " + h.URL)
	} else {
		fmt.Fprintf(&b, "disconnected from %s (last contact %s ago; serving with what it has)", h.URL, time.Since(h.LastContact).Round(time.Second))
	}
	if h.Stale {
		b.WriteString(", stale: refusing requests (control.max_staleness)")
	}
	fmt.Fprintf(&b, ", passport expires %s", h.PassportExpiry.UTC().Format(time.RFC3339))
	if h.Revoked != "" {
		b.WriteString(", revoked: " + h.Revoked)
	}
	return b.String()
}

// shipAudit ships the audit log to the control plane while the sidecar
// runs; it stops before the log is closed.
func (a *app) shipAudit(ctx context.Context, p *sidecarParts) error {
	ctx, cancel := context.WithCancel(ctx)
	sh, err := p.link.ShipAudit(ctx, client.ShipOptions{
		Log: p.audit, Key: p.auditKey, Batch: a.cfg.Audit.ShipBatch, Interval: a.cfg.Audit.ShipInterval,
	})
	if err != nil {
		cancel()
		return err
	}
	a.onClose(func() error { cancel(); <-sh.Done(); return nil })
	reg := p.metrics.Registry
	reg.MustRegister(shipLag{sh})
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stack_audit_shipped_records_total",
		Help: "Audit records shipped to the control plane and acknowledged, re-sent ones included."}, func() float64 {
		return float64(sh.Status().Records)
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stack_audit_ship_refused",
		Help: "1 while the control plane refuses this sidecar's audit log as contradicting what it holds (audit_integrity)."}, func() float64 {
		if sh.Status().Refused != "" {
			return 1
		}
		return 0
	}))
	return nil
}

var (
	shipLagRecords = prometheus.NewDesc("stack_audit_ship_lag_records",
		"Audit records the control plane has not acknowledged yet.", nil, nil)
	shipLagSeconds = prometheus.NewDesc("stack_audit_ship_lag_seconds",
		"Age of the oldest audit record the control plane has not acknowledged (0 when it holds them all).", nil, nil)
)

// shipLag reports both lag figures from one read of the log per scrape.
type shipLag struct{ sh *client.Shipper }

func (shipLag) Describe(ch chan<- *prometheus.Desc) {
	ch <- shipLagRecords
	ch <- shipLagSeconds
}

func (l shipLag) Collect(ch chan<- prometheus.Metric) {
	n, age := l.sh.Lag()
	ch <- prometheus.MustNewConstMetric(shipLagRecords, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(shipLagSeconds, prometheus.GaugeValue, age.Seconds())
}
