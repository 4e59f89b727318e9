package otlp

import (
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stackctl/stack/audit"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Names that SIEM rules and dashboards are written against: change one
// only with a deprecation path.
const (
	// ServiceName is the service.name of every exported resource.
	ServiceName = "stack-control"
	// ScopeName is the instrumentation scope of every exported record.
	ScopeName = "github.com/stackctl/stack/audit"
	// EventNamePrefix starts every record's event name; the action follows.
	EventNamePrefix = "stack.audit."

	// Resource attributes: who shipped the records, as the control plane
	// knows it.
	AttrAgent   = "stack.agent"
	AttrSidecar = "stack.sidecar"
	AttrLog     = "stack.log"

	// Log record attributes: what the record itself says.
	AttrEventID               = "stack.event_id"
	AttrSeq                   = "stack.seq"
	AttrAction                = "stack.action"
	AttrAgentID               = "stack.agent_id"
	AttrPassportJTI           = "stack.passport_jti"
	AttrCredentialID          = "stack.credential_id"
	AttrCredentialFingerprint = "stack.credential_fingerprint"
	AttrReason                = "stack.reason"
	AttrDetector              = "stack.detector"
	AttrSeverity              = "stack.severity"
	AttrDetail                = "stack.detail"
	AttrBytesIn               = "stack.bytes_in"
	AttrBytesOut              = "stack.bytes_out"
	AttrDurationMS            = "stack.duration_ms"
	AttrHash                  = "stack.hash"
	AttrPrevHash              = "stack.prev_hash"
	AttrFleetIndex            = "stack.fleet_index"
	AttrFleetPosition         = "stack.fleet_position"

	// Semantic-convention names, used instead of stack.host, stack.method,
	// stack.path and stack.status.
	AttrEventName      = "event.name"
	AttrHTTPMethod     = "http.request.method"
	AttrServerAddress  = "server.address"
	AttrURLPath        = "url.path"
	AttrHTTPStatusCode = "http.response.status_code"

	attrServiceName = "service.name"
)

// reservedResource are the resource attributes this package sets itself.
var reservedResource = []string{attrServiceName, AttrAgent, AttrSidecar, AttrLog}

// bodyPathMax bounds the host and path in a record's body; the full path
// is in url.path.
const bodyPathMax = 200

// source is who shipped a record: the key records are grouped by.
type source struct{ agent, sidecar, log string }

// request groups records, made from entries by logRecord, into one
// request: one ResourceLogs per source in order of first appearance,
// records in their given order.
func (e *Exporter) request(entries []Entry, records []*logspb.LogRecord) *collogspb.ExportLogsServiceRequest {
	req := &collogspb.ExportLogsServiceRequest{}
	groups := map[source]*logspb.ScopeLogs{}
	for i := range entries {
		k := source{entries[i].Agent, entries[i].Sidecar, entries[i].Log}
		sl := groups[k]
		if sl == nil {
			sl = &logspb.ScopeLogs{Scope: &commonpb.InstrumentationScope{Name: ScopeName}}
			groups[k] = sl
			req.ResourceLogs = append(req.ResourceLogs, &logspb.ResourceLogs{
				Resource:  e.resource(k),
				ScopeLogs: []*logspb.ScopeLogs{sl},
			})
		}
		sl.LogRecords = append(sl.LogRecords, records[i])
	}
	return req
}

// resource describes src: the exporter's fixed attributes first, then
// the shipper's.
func (e *Exporter) resource(src source) *resourcepb.Resource {
	attrs := make([]*commonpb.KeyValue, 0, len(e.resourceAttrs)+3)
	attrs = append(attrs, e.resourceAttrs...)
	attrs = appendString(attrs, AttrAgent, src.agent)
	attrs = appendString(attrs, AttrSidecar, src.sidecar)
	attrs = appendString(attrs, AttrLog, src.log)
	return &resourcepb.Resource{Attributes: attrs}
}

// logRecord maps one entry. The attribute order is fixed so that equal
// entries encode to equal bytes.
func logRecord(en *Entry, observed uint64) *logspb.LogRecord {
	r := &en.Record
	sev, sevText := severity(r)
	lr := &logspb.LogRecord{
		ObservedTimeUnixNano: observed,
		SeverityNumber:       sev,
		SeverityText:         sevText,
		Body:                 stringValue(summary(r)),
		EventName:            EventNamePrefix + validUTF8(r.Action),
	}
	if r.TimestampMS > 0 && r.TimestampMS <= math.MaxInt64/int64(time.Millisecond) {
		lr.TimeUnixNano = uint64(r.TimestampMS) * uint64(time.Millisecond)
	}
	a := make([]*commonpb.KeyValue, 0, 24)
	// event.name as an attribute too: receivers older than the LogRecord
	// field, and SIEMs that index attributes only, still see it.
	a = appendString(a, AttrEventName, lr.EventName)
	a = appendString(a, AttrEventID, r.EventID)
	a = appendInt(a, AttrSeq, int64(min(r.Seq, math.MaxInt64)))
	a = appendString(a, AttrAction, r.Action)
	a = appendString(a, AttrAgentID, r.AgentID)
	a = appendString(a, AttrPassportJTI, r.PassportJTI)
	a = appendString(a, AttrCredentialID, r.CredentialID)
	a = appendString(a, AttrCredentialFingerprint, r.CredentialFingerprint)
	a = appendString(a, AttrHTTPMethod, r.Method)
	a = appendString(a, AttrServerAddress, r.Host)
	a = appendString(a, AttrURLPath, r.Path)
	if r.Status != 0 {
		a = appendInt(a, AttrHTTPStatusCode, int64(r.Status))
	}
	a = appendString(a, AttrReason, r.Reason)
	a = appendString(a, AttrDetector, r.Detector)
	a = appendString(a, AttrSeverity, r.Severity)
	a = appendString(a, AttrDetail, r.Detail)
	if r.BytesIn != 0 {
		a = appendInt(a, AttrBytesIn, r.BytesIn)
	}
	if r.BytesOut != 0 {
		a = appendInt(a, AttrBytesOut, r.BytesOut)
	}
	if r.DurationMS != 0 {
		a = appendInt(a, AttrDurationMS, r.DurationMS)
	}
	if r.Hash != (audit.Hash{}) {
		a = appendString(a, AttrHash, hex.EncodeToString(r.Hash[:]))
	}
	if r.PrevHash != (audit.Hash{}) {
		a = appendString(a, AttrPrevHash, hex.EncodeToString(r.PrevHash[:]))
	}
	// Leaf 0 and position 0 are places like any other, so both are
	// always there.
	a = appendInt(a, AttrFleetIndex, int64(min(en.FleetIndex, math.MaxInt64)))
	a = appendInt(a, AttrFleetPosition, int64(en.FleetPosition))
	lr.Attributes = a
	return lr
}

// severity maps a record's severity, or failing that its action, to an
// OpenTelemetry severity. severity_text keeps the record's own word.
func severity(r *audit.Record) (logspb.SeverityNumber, string) {
	switch strings.ToLower(r.Severity) {
	case "info":
		return logspb.SeverityNumber_SEVERITY_NUMBER_INFO, r.Severity
	case "low", "warning", "warn":
		return logspb.SeverityNumber_SEVERITY_NUMBER_WARN, r.Severity
	case "medium":
		return logspb.SeverityNumber_SEVERITY_NUMBER_WARN3, r.Severity
	case "high":
		return logspb.SeverityNumber_SEVERITY_NUMBER_ERROR, r.Severity
	case "critical":
		return logspb.SeverityNumber_SEVERITY_NUMBER_FATAL, r.Severity
	}
	text := validUTF8(r.Severity)
	if deniesOrAlerts(r.Action) {
		if text == "" {
			text = "WARN"
		}
		return logspb.SeverityNumber_SEVERITY_NUMBER_WARN, text
	}
	if text == "" {
		text = "INFO"
	}
	return logspb.SeverityNumber_SEVERITY_NUMBER_INFO, text
}

// deniesOrAlerts reports whether action records something stopped or
// flagged. Action is an open set, so later actions named in the same way
// are caught too.
func deniesOrAlerts(action string) bool {
	switch action {
	case audit.ActionRequestDenied, audit.ActionDetectorFired, audit.ActionPassportRevoked:
		return true
	}
	for _, s := range []string{"_denied", "_revoked", "_blocked", "_rejected", "_fired"} {
		if strings.HasSuffix(action, s) {
			return true
		}
	}
	return false
}

// summary is the record's body: one line for people reading a SIEM's
// event list ("request_denied GET api.example.com/v1/x → 403
// (scope_denied)"). Rules should use the attributes, which carry the same
// facts unclipped.
func summary(r *audit.Record) string {
	var b strings.Builder
	b.WriteString(r.Action)
	if r.Method != "" {
		b.WriteByte(' ')
		b.WriteString(r.Method)
	}
	if target := r.Host + r.Path; target != "" {
		b.WriteByte(' ')
		b.WriteString(clip(target, bodyPathMax))
	} else if r.AgentID != "" {
		b.WriteString(" agent ")
		b.WriteString(r.AgentID)
	}
	if r.Status != 0 {
		b.WriteString(" → ")
		b.WriteString(strconv.Itoa(r.Status))
	}
	switch {
	case r.Reason != "":
		b.WriteString(" (")
		b.WriteString(r.Reason)
		b.WriteByte(')')
	case r.Detector != "":
		b.WriteString(" (")
		b.WriteString(r.Detector)
		b.WriteByte(')')
	}
	return validUTF8(b.String())
}

// clip shortens s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// validUTF8 replaces what is not UTF-8, which protobuf refuses to encode
// in a string field. Records are checked by audit.Log.Append, but the
// shipper names in an Entry come from elsewhere.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func stringValue(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

// appendString appends key=v unless v is empty.
func appendString(kvs []*commonpb.KeyValue, key, v string) []*commonpb.KeyValue {
	if v == "" {
		return kvs
	}
	return append(kvs, &commonpb.KeyValue{Key: key, Value: stringValue(validUTF8(v))})
}

func appendInt(kvs []*commonpb.KeyValue, key string, v int64) []*commonpb.KeyValue {
	return append(kvs, &commonpb.KeyValue{Key: key, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}})
}

// encodedSize is the number of bytes a message of size n adds to its
// parent as a length-delimited field with a one-byte tag.
func encodedSize(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

// splitSize returns how many of the first records fit in one request of
// at most maxBytes bytes, at least one. sizes holds each record's
// proto.Size.
func (e *Exporter) splitSize(entries []Entry, sizes []int, maxRecords, maxBytes int) int {
	total := 0
	// Per group: the ResourceLogs and ScopeLogs around its records, whose
	// length prefixes grow with their content; counted at their largest.
	seen := map[source]bool{}
	for i := range entries {
		if i == maxRecords {
			return i
		}
		add := encodedSize(sizes[i])
		k := source{entries[i].Agent, entries[i].Sidecar, entries[i].Log}
		if !seen[k] {
			seen[k] = true
			add += e.groupOverhead(k)
		}
		if i > 0 && total+add > maxBytes {
			return i
		}
		total += add
	}
	return len(entries)
}

// groupOverhead bounds the bytes a group adds besides its records: the
// resource, the scope, and three length prefixes of at most five bytes
// each with their tags.
func (e *Exporter) groupOverhead(k source) int {
	scope := &commonpb.InstrumentationScope{Name: ScopeName}
	return 3*6 + encodedSize(proto.Size(e.resource(k))) + encodedSize(proto.Size(scope))
}
