package otlp

import (
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

const (
	// maxResponse bounds how much of a response is read: enough for any
	// status message worth showing.
	maxResponse = 64 << 10
	// maxMessage bounds a receiver's message as it appears in an error.
	maxMessage = 512
	// maxRetryAfter bounds the wait a receiver can ask for, so a garbled
	// header cannot park the exporter for days.
	maxRetryAfter = time.Hour
)

// outcome is what a receiver's answer means for one request.
type outcome struct {
	// rejected and message come from a success's partial_success.
	rejected int64
	message  string
	// undecodable is why a success's body could not be read; the records
	// were still accepted.
	undecodable error
}

// readResponse interprets a receiver's answer as the OTLP/HTTP
// specification describes it. now serves Retry-After dates.
func readResponse(code int, h http.Header, body []byte, now time.Time) (outcome, error) {
	if code >= 200 && code < 300 {
		var out outcome
		if len(body) == 0 {
			return out, nil
		}
		var resp collogspb.ExportLogsServiceResponse
		if err := unmarshal(h, body, &resp); err != nil {
			out.undecodable = err
			return out, nil
		}
		ps := resp.GetPartialSuccess()
		out.rejected, out.message = ps.GetRejectedLogRecords(), cleanMessage(ps.GetErrorMessage())
		return out, nil
	}
	e := &HTTPError{StatusCode: code, Message: statusMessage(h, body)}
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		e.Retryable = true
		e.RetryAfter = retryAfter(h.Get("Retry-After"), now)
	}
	if code >= 300 && code < 400 {
		// Redirects are not followed: a receiver that moved should be
		// configured where it is now, and API key headers should not
		// follow a redirect to another host.
		if loc := h.Get("Location"); loc != "" {
			e.Message = cleanMessage("redirected to " + loc + "; set the endpoint there")
		}
	}
	return outcome{}, e
}

// unmarshal decodes body as the Content-Type says: protobuf (what the
// request was, so what the specification requires) or JSON (what some
// proxies in front of receivers answer with).
func unmarshal(h http.Header, body []byte, m proto.Message) error {
	switch mediaType(h) {
	case "application/x-protobuf", "application/protobuf", "application/octet-stream", "":
		return proto.Unmarshal(body, m)
	case "application/json":
		return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, m)
	default:
		return fmt.Errorf("content type %q is not protobuf or JSON", mediaType(h))
	}
}

func mediaType(h http.Header) string {
	ct := h.Get("Content-Type")
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(ct))
	}
	return mt
}

// statusMessage is what a failure's body says: the google.rpc.Status
// message the specification asks receivers for, else the text a proxy or
// load balancer answered with.
func statusMessage(h http.Header, body []byte) string {
	if len(body) == 0 {
		return ""
	}
	var st spb.Status
	if err := unmarshal(h, body, &st); err == nil && st.GetMessage() != "" {
		return cleanMessage(st.GetMessage())
	}
	switch mt := mediaType(h); {
	case strings.HasPrefix(mt, "text/"), mt == "application/json", mt == "":
		if utf8.Valid(body) {
			return cleanMessage(string(body))
		}
	}
	return cleanMessage(fmt.Sprintf("(%d bytes of %s)", len(body), h.Get("Content-Type")))
}

// cleanMessage makes text from a receiver fit to log: valid UTF-8, one
// line, no control characters, at most maxMessage bytes.
func cleanMessage(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Join(strings.Fields(s), " ")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r) {
			return -1
		}
		return r
	}, s)
	return clip(s, maxMessage)
}

// retryAfter parses a Retry-After value: delay-seconds or an HTTP-date.
// It returns 0 for anything else, or for a time already past, and never
// more than maxRetryAfter.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		if n > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
