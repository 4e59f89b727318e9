// Package otlp exports audit records as OpenTelemetry logs over OTLP/HTTP.
//
// # Basics
//
// The control plane reads accepted records from the fleet log, hands them
// to Export, and advances its cursor when Export returns nil (or a
// *PartialError, see below):
//
//	exp, err := otlp.New(otlp.Options{
//		Endpoint: "https://siem.example.com:4318",
//		Headers:  map[string]string{"X-API-Key": key},
//		Gzip:     true,
//		Log:      log,
//	})
//	if err != nil { ... }
//	defer exp.Close()
//	err = exp.Export(ctx, entries)
//
// Export is synchronous. It sends protobuf ExportLogsServiceRequests by
// POST to <Endpoint>/v1/logs, at most Options.MaxRecords records and
// Options.MaxBytes bytes each, one after another, and retries each as the
// OTLP/HTTP specification says: 429, 502, 503 and 504 and connection
// errors are retried after the wait the receiver gives in Retry-After, or
// with exponential backoff and jitter, until ctx is done; any other status
// fails at once with an *HTTPError carrying the receiver's google.rpc.Status
// message, and wraps ErrPermanent. Redirects are not followed.
//
// Delivery is at least once. A failed Export may have delivered some of
// its requests, and the caller sends them all again; a record then
// arrives twice, with the same stack.event_id. A receiver's partial
// success that rejects records is returned as a *PartialError once every
// request was answered: those records would be rejected again, so the
// caller logs it and moves on.
//
// # Mapping
//
// Each Entry becomes one LogRecord:
//
//   - time_unix_nano from Record.TimestampMS, observed_time_unix_nano the
//     time Export was called;
//   - severity_number from Record.Severity: info INFO, low and warning
//     WARN, medium WARN3, high ERROR, critical FATAL; severity_text is the
//     record's own word. A record without a known severity is WARN when
//     its action says something was stopped or flagged (request_denied,
//     detector_fired, passport_revoked, and any action ending in _denied,
//     _revoked, _blocked, _rejected or _fired), INFO otherwise;
//   - the body, one line for people: "request_denied GET
//     api.example.com/v1/x → 403 (scope_denied)". Rules should match on
//     attributes instead;
//   - event_name, and the event.name attribute for receivers that predate
//     the field, "stack.audit." followed by the action;
//   - attributes stack.event_id, stack.seq, stack.action, stack.agent_id,
//     stack.passport_jti, stack.credential_id, stack.credential_fingerprint,
//     stack.reason, stack.detector, stack.severity, stack.detail,
//     stack.bytes_in, stack.bytes_out, stack.duration_ms, stack.hash and
//     stack.prev_hash (lowercase hex), stack.fleet_index and
//     stack.fleet_position, each present when the field is not empty or
//     zero (stack.seq and the two fleet ones are always present); the
//     request itself under the semantic-convention
//     names http.request.method, server.address, url.path and
//     http.response.status_code.
//
// Records are grouped by who shipped them: one ResourceLogs per (agent,
// sidecar, log) in order of first appearance, with the resource
// attributes service.name="stack-control", Options.Resource, and
// stack.agent, stack.sidecar and stack.log as the control plane
// authenticated the shipper. They sit on the resource rather than on each
// record because they describe where a whole hash chain comes from: a
// SIEM can check a chain's stack.prev_hash links within one resource,
// while stack.agent_id beside them says what the record itself claims.
// Each ResourceLogs holds one ScopeLogs, scope
// "github.com/stackctl/stack/audit". The names are constants of this
// package; dashboards depend on them.
//
// # Why not the OpenTelemetry SDK's exporter
//
// The package builds requests from the OTLP protobuf types
// (go.opentelemetry.io/proto/otlp) and sends them itself, because the
// SDK's otlploghttp exporter (v0.23.0) fits a synchronous, cursor-driven
// caller worse: it exports sdk/log.Records, which only a LoggerProvider
// makes, with one resource per provider, so grouping by shipper would
// take a provider per sidecar log; even with retries on, it returns a
// refused connection at once; it reports a partial success as a joined
// error of an internal type that errors.As cannot pick out; it puts a
// failing receiver's raw protobuf bytes in its error rather than the
// google.rpc.Status message; and it fails a request over its size limit
// rather than split it.
//
// # Caveats
//
// Options.Headers often hold an API key: they are never logged, and the
// endpoint may not carry user information or a query for the same reason.
// The client New builds uses no proxy unless Options.Proxy names one, and
// trusts Options.RootCAs, or the system roots when nil. Close releases its
// idle connections.
package otlp
