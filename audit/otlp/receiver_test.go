package otlp_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/audit/otlp"
	"github.com/stackctl/stack/internal/otlptest"
)

// startCollector starts the Collector's own OTLP receiver (otlptest).
func startCollector(t testing.TB, next consumer.Logs) string { return otlptest.Start(t, next) }

// The Collector's receiver gets every field of every record, grouped by
// shipper, with gzip and without.
func TestCollectorReceivesRecords(t *testing.T) {
	observed := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	entries := []otlp.Entry{{
		Record: audit.Record{
			Seq: 7, EventID: "ev-7", TimestampMS: 1_767_225_600_123, AgentID: "billing-agent", PassportJTI: "jti-9",
			Action: audit.ActionRequestDenied, CredentialID: "stripe", CredentialFingerprint: "fp:aa11",
			Host: "api.stripe.com", Method: "POST", Path: "/v1/refunds", Status: 403, Reason: "scope_denied",
			Detail: "POST /v1/refunds is outside the passport", BytesIn: 10, BytesOut: 20, DurationMS: 3,
			PrevHash: audit.GenesisHash, Hash: audit.Hash{0xab, 0xcd},
		},
		Agent: "billing-agent", Sidecar: "sc-1", Log: "log-1", FleetIndex: 41, FleetPosition: 2,
	}, {
		Record: audit.Record{
			Seq: 3, EventID: "ev-3", TimestampMS: 1_767_225_600_456, AgentID: "support-agent",
			Action: audit.ActionDetectorFired, Detector: "prompt_injection", Severity: "critical",
			Host: "api.openai.com", Method: "POST", Path: "/v1/responses",
		},
		Agent: "support-agent", Sidecar: "sc-2", Log: "log-2", FleetIndex: 0,
	}, {
		Record: audit.Record{Seq: 8, EventID: "ev-8", Action: audit.ActionPassportRevoked, AgentID: "billing-agent", Reason: "revoked_by_detector"},
		Agent:  "billing-agent", Sidecar: "sc-1", Log: "log-1", FleetIndex: 42,
	}}

	for _, gz := range []bool{false, true} {
		name := "plain"
		if gz {
			name = "gzip"
		}
		t.Run(name, func(t *testing.T) {
			sink := new(consumertest.LogsSink)
			endpoint := startCollector(t, sink)
			e, _ := newExporter(t, otlp.Options{
				Endpoint: endpoint, Gzip: gz, Now: func() time.Time { return observed },
				Resource: map[string]string{"service.instance.id": "control-0", "deployment.environment.name": "prod"},
			})
			if err := e.Export(testCtx(t), entries); err != nil {
				t.Fatalf("Export: %v", err)
			}
			all := sink.AllLogs()
			if len(all) != 1 {
				t.Fatalf("receiver got %d requests, want 1", len(all))
			}
			ld := all[0]
			if ld.ResourceLogs().Len() != 2 {
				t.Fatalf("%d resources, want one per shipper (2)", ld.ResourceLogs().Len())
			}

			// Resources, in order of first appearance.
			for i, want := range []map[string]any{
				{"service.name": "stack-control", "service.instance.id": "control-0", "deployment.environment.name": "prod",
					"stack.agent": "billing-agent", "stack.sidecar": "sc-1", "stack.log": "log-1"},
				{"service.name": "stack-control", "service.instance.id": "control-0", "deployment.environment.name": "prod",
					"stack.agent": "support-agent", "stack.sidecar": "sc-2", "stack.log": "log-2"},
			} {
				rl := ld.ResourceLogs().At(i)
				checkAttrs(t, "resource "+want["stack.sidecar"].(string), rl.Resource().Attributes(), want)
				if rl.ScopeLogs().Len() != 1 || rl.ScopeLogs().At(0).Scope().Name() != "github.com/stackctl/stack/audit" {
					t.Errorf("resource %d: want one ScopeLogs of scope github.com/stackctl/stack/audit", i)
				}
			}
			sc1 := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
			sc2 := ld.ResourceLogs().At(1).ScopeLogs().At(0).LogRecords()
			if sc1.Len() != 2 || sc2.Len() != 1 {
				t.Fatalf("sc-1 has %d records, sc-2 %d; want 2 and 1", sc1.Len(), sc2.Len())
			}

			denied := sc1.At(0)
			checkRecord(t, denied, wantRecord{
				time: time.UnixMilli(1_767_225_600_123), observed: observed,
				severity: plog.SeverityNumberWarn, severityText: "WARN",
				body:      "request_denied POST api.stripe.com/v1/refunds → 403 (scope_denied)",
				eventName: "stack.audit.request_denied",
				attrs: map[string]any{
					"event.name": "stack.audit.request_denied", "stack.event_id": "ev-7", "stack.seq": int64(7),
					"stack.action": "request_denied", "stack.agent_id": "billing-agent", "stack.passport_jti": "jti-9",
					"stack.credential_id": "stripe", "stack.credential_fingerprint": "fp:aa11",
					"http.request.method": "POST", "server.address": "api.stripe.com", "url.path": "/v1/refunds",
					"http.response.status_code": int64(403), "stack.reason": "scope_denied",
					"stack.detail": "POST /v1/refunds is outside the passport", "stack.bytes_in": int64(10),
					"stack.bytes_out": int64(20), "stack.duration_ms": int64(3),
					"stack.hash":      "abcd" + strings.Repeat("0", 60),
					"stack.prev_hash": audit.GenesisHash.String(), "stack.fleet_index": int64(41), "stack.fleet_position": int64(2),
				},
			})
			checkRecord(t, sc1.At(1), wantRecord{
				time: time.Time{}, observed: observed,
				severity: plog.SeverityNumberWarn, severityText: "WARN",
				body:      "passport_revoked agent billing-agent (revoked_by_detector)",
				eventName: "stack.audit.passport_revoked",
				attrs: map[string]any{
					"event.name": "stack.audit.passport_revoked", "stack.event_id": "ev-8", "stack.seq": int64(8),
					"stack.action": "passport_revoked", "stack.agent_id": "billing-agent",
					"stack.reason": "revoked_by_detector", "stack.fleet_index": int64(42), "stack.fleet_position": int64(0),
				},
			})
			checkRecord(t, sc2.At(0), wantRecord{
				time: time.UnixMilli(1_767_225_600_456), observed: observed,
				severity: plog.SeverityNumberFatal, severityText: "critical",
				body:      "detector_fired POST api.openai.com/v1/responses (prompt_injection)",
				eventName: "stack.audit.detector_fired",
				attrs: map[string]any{
					"event.name": "stack.audit.detector_fired", "stack.event_id": "ev-3", "stack.seq": int64(3),
					"stack.action": "detector_fired", "stack.agent_id": "support-agent",
					"http.request.method": "POST", "server.address": "api.openai.com", "url.path": "/v1/responses",
					"stack.detector": "prompt_injection", "stack.severity": "critical", "stack.fleet_index": int64(0), "stack.fleet_position": int64(0),
				},
			})
		})
	}
}

// Severities map to OpenTelemetry's scale; without one, the action
// decides.
func TestCollectorSeverities(t *testing.T) {
	cases := []struct {
		name, severity, action string
		want                   plog.SeverityNumber
		wantText               string
	}{
		{"info", "info", audit.ActionDetectorFired, plog.SeverityNumberInfo, "info"},
		{"low", "low", audit.ActionDetectorFired, plog.SeverityNumberWarn, "low"},
		{"warning", "warning", audit.ActionDetectorFired, plog.SeverityNumberWarn, "warning"},
		{"medium", "medium", audit.ActionDetectorFired, plog.SeverityNumberWarn3, "medium"},
		{"high", "high", audit.ActionDetectorFired, plog.SeverityNumberError, "high"},
		{"critical", "critical", audit.ActionDetectorFired, plog.SeverityNumberFatal, "critical"},
		{"case ignored", "HIGH", audit.ActionDetectorFired, plog.SeverityNumberError, "HIGH"},
		{"denial", "", audit.ActionRequestDenied, plog.SeverityNumberWarn, "WARN"},
		{"revocation", "", audit.ActionPassportRevoked, plog.SeverityNumberWarn, "WARN"},
		{"detector without severity", "", audit.ActionDetectorFired, plog.SeverityNumberWarn, "WARN"},
		{"later denial kind", "", "handoff_rejected", plog.SeverityNumberWarn, "WARN"},
		{"credential access", "", audit.ActionCredentialAccess, plog.SeverityNumberInfo, "INFO"},
		{"request", "", audit.ActionRequest, plog.SeverityNumberInfo, "INFO"},
		{"checkpoint", "", audit.ActionCheckpoint, plog.SeverityNumberInfo, "INFO"},
		{"unknown word on a denial", "elevated", audit.ActionRequestDenied, plog.SeverityNumberWarn, "elevated"},
		{"unknown word", "elevated", audit.ActionRequest, plog.SeverityNumberInfo, "elevated"},
	}
	entries := make([]otlp.Entry, len(cases))
	for i, c := range cases {
		entries[i] = otlp.Entry{Record: audit.Record{Seq: uint64(i), EventID: c.name, Action: c.action, Severity: c.severity}}
	}
	sink := new(consumertest.LogsSink)
	e, _ := newExporter(t, otlp.Options{Endpoint: startCollector(t, sink)})
	if err := e.Export(testCtx(t), entries); err != nil {
		t.Fatalf("Export: %v", err)
	}
	recs := sink.AllLogs()[0].ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := recs.At(i)
			if r.SeverityNumber() != c.want || r.SeverityText() != c.wantText {
				t.Errorf("severity %v %q, want %v %q", r.SeverityNumber(), r.SeverityText(), c.want, c.wantText)
			}
		})
	}
}

// Large exports are split into several requests, in order, each within
// the limits, and every record arrives once.
func TestCollectorSplitsLargeExports(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     otlp.Options
		n        int
		requests int
	}{
		{"by count", otlp.Options{}, 2500, 3},
		{"by size", otlp.Options{MaxBytes: 16 << 10}, 200, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := new(consumertest.LogsSink)
			tc.opts.Endpoint = startCollector(t, sink)
			tc.opts.Gzip = true
			e, _ := newExporter(t, tc.opts)
			entries := sampleEntries(tc.n)
			if err := e.Export(testCtx(t), entries); err != nil {
				t.Fatalf("Export: %v", err)
			}
			all := sink.AllLogs()
			if tc.requests > 0 && len(all) != tc.requests {
				t.Errorf("%d requests, want %d", len(all), tc.requests)
			}
			if tc.requests < 0 && len(all) < 2 {
				t.Errorf("%d requests, want a split", len(all))
			}
			var seen []int64
			for _, ld := range all {
				if tc.opts.MaxBytes > 0 {
					b, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
					if err != nil {
						t.Fatal(err)
					}
					if len(b) > tc.opts.MaxBytes {
						t.Errorf("a request of %d bytes, over MaxBytes %d", len(b), tc.opts.MaxBytes)
					}
				}
				if ld.LogRecordCount() > otlp.DefaultMaxRecords {
					t.Errorf("a request of %d records", ld.LogRecordCount())
				}
				var reqSeen []int64
				for i := 0; i < ld.ResourceLogs().Len(); i++ {
					recs := ld.ResourceLogs().At(i).ScopeLogs().At(0).LogRecords()
					for j := 0; j < recs.Len(); j++ {
						v, _ := recs.At(j).Attributes().Get("stack.fleet_index")
						reqSeen = append(reqSeen, v.Int())
					}
				}
				// Within a request records are grouped by shipper;
				// across requests they keep the caller's order.
				if len(seen) > 0 && minOf(reqSeen) <= maxOf(seen) {
					t.Errorf("a request starts at fleet index %d, after %d was sent", minOf(reqSeen), maxOf(seen))
				}
				seen = append(seen, reqSeen...)
			}
			if len(seen) != tc.n {
				t.Fatalf("receiver got %d records, want %d", len(seen), tc.n)
			}
		})
	}
}

func minOf(s []int64) int64 {
	m := s[0]
	for _, v := range s {
		m = min(m, v)
	}
	return m
}

func maxOf(s []int64) int64 {
	m := s[0]
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

// The Collector's own failure answers: a consumer's InvalidArgument is a
// 400 whose message is surfaced; a plain consumer error is a 503 that is
// retried.
func TestCollectorFailures(t *testing.T) {
	t.Run("permanent", func(t *testing.T) {
		var calls atomic.Int32
		next, err := consumer.NewLogs(func(context.Context, plog.Logs) error {
			calls.Add(1)
			return status.Error(codes.InvalidArgument, "records older than 7 days are refused")
		})
		if err != nil {
			t.Fatal(err)
		}
		e, _ := newExporter(t, otlp.Options{Endpoint: startCollector(t, next)})
		err = e.Export(testCtx(t), sampleEntries(2))
		var he *otlp.HTTPError
		if !errors.As(err, &he) || he.StatusCode != 400 || he.Message != "records older than 7 days are refused" {
			t.Fatalf("got %v, want a 400 with the receiver's message", err)
		}
		if calls.Load() != 1 {
			t.Errorf("consumer called %d times, want 1", calls.Load())
		}
	})
	t.Run("transient", func(t *testing.T) {
		sink := new(consumertest.LogsSink)
		var calls atomic.Int32
		next, err := consumer.NewLogs(func(ctx context.Context, ld plog.Logs) error {
			if calls.Add(1) == 1 {
				return errors.New("exporter queue is full")
			}
			return sink.ConsumeLogs(ctx, ld)
		})
		if err != nil {
			t.Fatal(err)
		}
		e, logs := newExporter(t, otlp.Options{Endpoint: startCollector(t, next)})
		if err := e.Export(testCtx(t), sampleEntries(2)); err != nil {
			t.Fatalf("Export: %v", err)
		}
		if sink.LogRecordCount() != 2 || calls.Load() != 2 {
			t.Errorf("sink has %d records after %d calls, want 2 after 2", sink.LogRecordCount(), calls.Load())
		}
		r := logs.FilterMessage("OTLP export failed; retrying").All()
		if len(r) != 1 || !strings.Contains(r[0].ContextMap()["error"].(string), "503") {
			t.Errorf("want one retry after a 503, logged %v", r)
		}
	})
}

type wantRecord struct {
	time, observed  time.Time
	severity        plog.SeverityNumber
	severityText    string
	body, eventName string
	attrs           map[string]any
}

func checkRecord(t *testing.T, r plog.LogRecord, w wantRecord) {
	t.Helper()
	name := w.eventName
	wantTime := pcommon.Timestamp(0)
	if !w.time.IsZero() {
		wantTime = pcommon.NewTimestampFromTime(w.time)
	}
	if r.Timestamp() != wantTime {
		t.Errorf("%s: time %v, want %v", name, r.Timestamp(), wantTime)
	}
	if r.ObservedTimestamp() != pcommon.NewTimestampFromTime(w.observed) {
		t.Errorf("%s: observed time %v, want %v", name, r.ObservedTimestamp(), w.observed)
	}
	if r.SeverityNumber() != w.severity || r.SeverityText() != w.severityText {
		t.Errorf("%s: severity %v %q, want %v %q", name, r.SeverityNumber(), r.SeverityText(), w.severity, w.severityText)
	}
	if r.Body().Type() != pcommon.ValueTypeStr || r.Body().Str() != w.body {
		t.Errorf("%s: body %q, want %q", name, r.Body().AsString(), w.body)
	}
	if r.EventName() != w.eventName {
		t.Errorf("%s: event name %q, want %q", name, r.EventName(), w.eventName)
	}
	checkAttrs(t, name, r.Attributes(), w.attrs)
}

// checkAttrs compares attributes exactly: names, types and values, none
// missing and none extra.
func checkAttrs(t *testing.T, what string, got pcommon.Map, want map[string]any) {
	t.Helper()
	for k, v := range want {
		g, ok := got.Get(k)
		if !ok {
			t.Errorf("%s: attribute %s missing", what, k)
			continue
		}
		switch v := v.(type) {
		case string:
			if g.Type() != pcommon.ValueTypeStr || g.Str() != v {
				t.Errorf("%s: %s = %v (%v), want string %q", what, k, g.AsRaw(), g.Type(), v)
			}
		case int64:
			if g.Type() != pcommon.ValueTypeInt || g.Int() != v {
				t.Errorf("%s: %s = %v (%v), want int %d", what, k, g.AsRaw(), g.Type(), v)
			}
		}
	}
	for k, v := range got.All() {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected attribute %s = %v", what, k, v.AsRaw())
		}
	}
}
