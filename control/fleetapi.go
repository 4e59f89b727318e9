package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control/fleet"
)

// ReasonAuditIntegrity refuses a shipped audit batch that contradicts the
// chain the control plane holds for that sidecar log.
const ReasonAuditIntegrity = "audit_integrity"

// ActionAuditIntegrity is the control plane's audit record of a finding.
const ActionAuditIntegrity = "audit_integrity"

// maxAuditBatchBody bounds a shipped batch's body: a thousand records of
// the largest kind, base64 in JSON.
const maxAuditBatchBody = 16 << 20

// FleetProver proves what the fleet log holds (fleetlog.Log).
type FleetProver interface {
	Checkpoint(ctx context.Context) ([]byte, error)
	WaitCheckpoint(ctx context.Context, index uint64) ([]byte, error)
	InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error)
	ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error)
	Entries(ctx context.Context, from, n uint64) ([][]byte, error)
}

// CheckpointSize reads the tree size of a fleet log checkpoint.
type CheckpointSize func(checkpoint []byte) (uint64, error)

// FleetKeyResponse is the fleet log's public key.
type FleetKeyResponse struct {
	// Key is the note verifier key ("name+hash+base64") its checkpoints
	// and cosignatures verify with.
	Key string `json:"key"`
	// Origin is the first line of its checkpoints.
	Origin string `json:"origin"`
}

func (s *Server) fleetServed() error {
	if s.opts.Fleet == nil {
		return fail(http.StatusServiceUnavailable, ReasonUnavailable, "this control plane does not serve the fleet audit log (see control.fleet_log)")
	}
	return nil
}

// shipAudit takes a batch of a sidecar's audit records.
func (s *Server) shipAudit(r *http.Request) (any, error) {
	if err := s.fleetServed(); err != nil {
		return nil, err
	}
	var b AuditBatch
	if err := decode(r, &b); err != nil {
		return nil, err
	}
	sc := callerOf(r).sidecar
	resp, err := s.opts.Fleet.Ship(r.Context(), fleet.Shipper{Sidecar: sc.ID, Agent: sc.Agent}, b)
	var ie *fleet.IntegrityError
	switch {
	case errors.As(err, &ie):
		return nil, fail(http.StatusConflict, ReasonAuditIntegrity, ie.Error())
	case errors.Is(err, fleet.ErrBadBatch):
		return nil, badRequest(err.Error())
	case errors.Is(err, fleet.ErrOtherAgent):
		return nil, fail(http.StatusForbidden, ReasonUnauthorized, err.Error())
	case errors.Is(err, fleet.ErrClosed):
		return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, "the fleet audit log is closing")
	case err != nil:
		return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
	}
	s.opts.Metrics.shipped.Add(float64(len(b.Records)))
	s.noteSignals(sc.Agent, b.Records)
	return resp, nil
}

func (s *Server) fleetStreams(r *http.Request) (any, error) {
	if err := s.fleetServed(); err != nil {
		return nil, err
	}
	return s.opts.Fleet.Streams(), nil
}

// fleetKey is public, as the JWKS is: with it anyone checks proofs.
func (s *Server) fleetKey(w http.ResponseWriter, _ *http.Request) {
	if s.opts.FleetKey == "" {
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: "this control plane does not serve the fleet audit log", Reason: ReasonUnavailable})
		return
	}
	writeJSON(w, http.StatusOK, FleetKeyResponse{Key: s.opts.FleetKey, Origin: s.opts.FleetOrigin})
}

func (s *Server) fleetCheckpoint(r *http.Request) (any, error) {
	if err := s.fleetServed(); err != nil {
		return nil, err
	}
	ck, err := s.opts.FleetLog.Checkpoint(r.Context())
	if err != nil {
		return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
	}
	return json.RawMessage(strconv.Quote(string(ck))), nil
}

// fleetProve answers ?event=ID with the record's inclusion proof against
// the newest checkpoint that covers it, waiting briefly for one.
func (s *Server) fleetProve(r *http.Request) (any, error) {
	if err := s.fleetServed(); err != nil {
		return nil, err
	}
	ctx := r.Context()
	id := r.URL.Query().Get("event")
	idx, pos, err := s.opts.Fleet.Locate(id)
	if err != nil {
		return nil, fail(http.StatusNotFound, ReasonNotFound, err.Error())
	}
	ck, size, err := s.checkpointCovering(ctx, idx)
	if err != nil {
		return nil, err
	}
	hashes, err := s.opts.FleetLog.InclusionProof(ctx, idx, size)
	if err != nil {
		return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
	}
	leaf, item, err := s.opts.Fleet.Record(ctx, idx, pos)
	if err != nil {
		return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
	}
	return fleet.Proof{Index: idx, Size: size, Leaf: leaf, Hashes: hashes, Checkpoint: ck, Item: item}, nil
}

// checkpointCovering returns a checkpoint that covers leaf idx: a record
// just accepted waits for the next checkpoint (at most a few seconds).
func (s *Server) checkpointCovering(ctx context.Context, idx uint64) ([]byte, uint64, error) {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ck, err := s.opts.FleetLog.WaitCheckpoint(wctx, idx)
	if err != nil {
		return nil, 0, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
	}
	size, err := s.opts.FleetSize(ck)
	if err != nil {
		return nil, 0, err
	}
	return ck, size, nil
}

// fleetConsistency answers ?from=SIZE with the proof that the newest
// checkpoint extends the tree of that size.
func (s *Server) fleetConsistency(r *http.Request) (any, error) {
	if err := s.fleetServed(); err != nil {
		return nil, err
	}
	ctx := r.Context()
	from, err := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
	if err != nil {
		return nil, badRequest("from: want the tree size of the older checkpoint")
	}
	ck, err := s.opts.FleetLog.Checkpoint(ctx)
	if err != nil {
		return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
	}
	to, err := s.opts.FleetSize(ck)
	if err != nil {
		return nil, err
	}
	if from > to {
		return nil, badRequest(fmt.Sprintf("from %d is past the fleet log's size %d", from, to))
	}
	var hashes [][]byte
	if from > 0 && from < to {
		if hashes, err = s.opts.FleetLog.ConsistencyProof(ctx, from, to); err != nil {
			return nil, fail(http.StatusServiceUnavailable, ReasonUnavailable, err.Error())
		}
	}
	return fleet.Consistency{From: from, To: to, Hashes: hashes, Checkpoint: ck}, nil
}

// fleetExport streams the selected records as JSON lines, ordered by
// time: ?agent=&since=&until= (RFC 3339) &limit=.
func (s *Server) fleetExport(r *http.Request) (any, error) {
	if err := s.fleetServed(); err != nil {
		return nil, err
	}
	q := fleet.Query{Agent: r.URL.Query().Get("agent")}
	for name, t := range map[string]*time.Time{"since": &q.Since, "until": &q.Until} {
		if v := r.URL.Query().Get(name); v != "" {
			var err error
			if *t, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return nil, badRequest(name + ": want an RFC 3339 time")
			}
		}
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, badRequest("limit: want a number")
		}
		q.Limit = n
	}
	w := r.Context().Value(writerKey{}).(http.ResponseWriter)
	w.Header().Set("Content-Type", "application/jsonl")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	err := s.opts.Fleet.Export(r.Context(), q, func(it fleet.Item) error { return enc.Encode(it) })
	if err != nil {
		// The status is sent: end the stream with a line saying why, so
		// that a reader does not take a cut answer for a whole one.
		enc.Encode(Error{Error: err.Error(), Reason: ReasonInternal})
		s.log.Warn("fleet export failed", zap.Error(err))
	}
	return streamed, nil
}

// AuditIntegrity raises the audit_integrity signal for a finding (the
// witness's OnFinding): an error log line, the metric, a record in the
// control plane's own audit log and, when the policy says so, the agent
// disabled and its passports revoked.
func (s *Server) AuditIntegrity(st fleet.Stream, f fleet.Finding) {
	ctx := context.Background()
	s.log.Error("audit_integrity: a sidecar shipped audit records that contradict the chain the control plane holds",
		zap.String("agent", st.Agent), zap.String("sidecar", st.Sidecar), zap.String("log", st.Log),
		zap.String("kind", f.Kind), zap.Uint64("seq", f.Seq), zap.String("detail", f.Detail), zap.String("evidence", f.Evidence))
	s.opts.Metrics.integrity.WithLabelValues(f.Kind).Inc()
	s.audit(ctx, audit.Record{Action: ActionAuditIntegrity, AgentID: st.Agent, Reason: ReasonAuditIntegrity,
		Detector: ReasonAuditIntegrity, Severity: "critical",
		Detail: fmt.Sprintf("log %s: %s at seq %d", st.Log, f.Kind, f.Seq)})
	if !s.opts.RevokeOnIntegrity || st.Agent == "" {
		return
	}
	why := fmt.Sprintf("audit_integrity: %s at seq %d of log %s", f.Kind, f.Seq, st.Log)
	if _, err := s.setDisabled(ctx, st.Agent, true, why); err != nil {
		s.log.Error("audit_integrity: disabling the agent failed", zap.String("agent", st.Agent), zap.Error(err))
		return
	}
	if _, err := s.revokeAgent(ctx, st.Agent, why, "audit_integrity"); err != nil {
		s.log.Error("audit_integrity: revoking the agent failed", zap.String("agent", st.Agent), zap.Error(err))
	}
}

var (
	lagRecordsDesc = prometheus.NewDesc("stack_control_audit_lag_records",
		"Records a sidecar's audit log holds that the fleet log does not, as of its last batch.", []string{"agent", "sidecar", "log"}, nil)
	lagSecondsDesc = prometheus.NewDesc("stack_control_audit_lag_seconds",
		"Seconds since a sidecar log's last accepted batch while that batch left records behind; 0 when it brought the fleet log up to the sidecar's head.", []string{"agent", "sidecar", "log"}, nil)
)

// fleetLag reports each stream's lag from what its last batch said.
type fleetLag struct {
	w   *fleet.Witness
	now func() time.Time
}

func (fleetLag) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagRecordsDesc
	ch <- lagSecondsDesc
}

func (l fleetLag) Collect(ch chan<- prometheus.Metric) {
	now := l.now()
	for _, st := range l.w.Streams() {
		if st.Shipped.IsZero() {
			continue // not heard from since this control plane started
		}
		var behind uint64
		if st.SidecarHead+1 > st.Next {
			behind = st.SidecarHead + 1 - st.Next
		}
		ch <- prometheus.MustNewConstMetric(lagRecordsDesc, prometheus.GaugeValue, float64(behind), st.Agent, st.Sidecar, st.Log)
		age := 0.0
		if behind > 0 {
			age = now.Sub(st.Shipped).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(lagSecondsDesc, prometheus.GaugeValue, age, st.Agent, st.Sidecar, st.Log)
	}
}
