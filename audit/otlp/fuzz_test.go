package otlp

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
)

// A receiver's answer is input from the network: whatever it holds,
// reading it does not panic, and what reaches an error or the log is
// bounded, one line and printable.
func FuzzReadResponse(f *testing.F) {
	st, _ := proto.Marshal(&spb.Status{Code: 3, Message: "bad\nrecord"})
	ps, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{
		PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 3, ErrorMessage: "too old"},
	})
	f.Add(400, "application/x-protobuf", "", st)
	f.Add(200, "application/x-protobuf", "", ps)
	f.Add(200, "application/json", "", []byte(`{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"x"}}`))
	f.Add(503, "text/plain; charset=utf-8", "120", []byte("overloaded"))
	f.Add(429, "", "Wed, 21 Oct 2015 07:28:00 GMT", []byte{0xff, 0xfe})
	f.Add(307, "", "", []byte(nil))
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, code int, contentType, retryAfterValue string, body []byte) {
		if code < 100 || code > 999 {
			return
		}
		h := http.Header{}
		h.Set("Content-Type", contentType)
		h.Set("Retry-After", retryAfterValue)
		h.Set("Location", contentType+retryAfterValue)
		out, err := readResponse(code, h, body, now)
		checkText(t, "partial success message", out.message)
		if code >= 200 && code < 300 {
			if err != nil {
				t.Fatalf("a %d answer is an error: %v", code, err)
			}
			if out.rejected < 0 {
				t.Fatalf("rejected %d", out.rejected)
			}
			return
		}
		var he *HTTPError
		if !errors.As(err, &he) || he.StatusCode != code {
			t.Fatalf("a %d answer gave %v", code, err)
		}
		checkText(t, "status message", he.Message)
		if he.RetryAfter < 0 || he.RetryAfter > maxRetryAfter {
			t.Fatalf("RetryAfter %s", he.RetryAfter)
		}
		if he.Retryable == errors.Is(err, ErrPermanent) {
			t.Fatalf("%d: retryable %v and permanent %v", code, he.Retryable, errors.Is(err, ErrPermanent))
		}
	})
}

func checkText(t *testing.T, what, s string) {
	t.Helper()
	if len(s) > maxMessage+len("…") || !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		t.Fatalf("%s %q is not bounded, printable UTF-8", what, s)
	}
}

// Whatever the endpoint, an accepted one becomes an http(s) URL ending
// in /v1/logs with nothing secret in it, and a refused one's error does
// not repeat its user information or query.
func FuzzLogsURL(f *testing.F) {
	for _, s := range []string{
		"http://collector:4318", "https://siem.example.com/otlp/", "http://[::1]:4318/v1/logs",
		"https://u:secret@h", "http://h/?k=secret", "collector:4318", "HTTP://H/%2F", "http://h#f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, endpoint string) {
		got, err := logsURL(endpoint)
		if err != nil {
			u, perr := url.Parse(endpoint)
			if perr != nil {
				return
			}
			// Where the error quotes the endpoint, it quotes it without
			// its user information, query and fragment: nothing else.
			if rest, ok := strings.CutPrefix(err.Error(), "endpoint "); ok {
				if q, qerr := strconv.QuotedPrefix(rest); qerr == nil {
					said, _ := strconv.Unquote(q)
					bare := *u
					bare.User, bare.RawQuery, bare.ForceQuery, bare.Fragment, bare.RawFragment = nil, "", false, "", ""
					if said != bare.String() {
						t.Fatalf("error %q quotes %q, want %q", err, said, bare.String())
					}
				}
			}
			return
		}
		u, perr := url.Parse(got)
		if perr != nil {
			t.Fatalf("%q became %q, which does not parse: %v", endpoint, got, perr)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("%q became %q", endpoint, got)
		}
		if !strings.HasSuffix(u.EscapedPath(), "/v1/logs") {
			t.Fatalf("%q became %q, not ending in /v1/logs", endpoint, got)
		}
		// Already a logs URL: used as it is.
		if again, err := logsURL(got); err != nil || again != got {
			t.Fatalf("%q is not kept as it is: %q, %v", got, again, err)
		}
	})
}
