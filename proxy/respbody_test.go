package proxy

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// An answer of known length keeps its Content-Length through the proxy,
// redacted or not; one too long to redact in memory streams chunked. Both
// reach the agent without the secret.
func TestResponseFraming(t *testing.T) {
	const bigSize = 3 * DefaultScanWindow
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := "auth=" + r.Header.Get("Authorization")
		if r.URL.Path == "/v1/charges/big" {
			body += strings.Repeat("x", bigSize) + body
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write([]byte(body))
	})
	hs := newHarness(t, echo)
	tok, _ := hs.issue("billing-bot", stripeScope(), 0)
	c := hs.client("billing-bot", tok)
	cases := []struct {
		name, url   string
		placeholder bool
		wantBody    string
		wantLength  bool
	}{
		{"small redacted", hs.url(stripeHost, "/v1/charges/ch_1"), true, "auth=Bearer stk_ph_stripe", true},
		{"small, no credential", hs.url(otherHost, "/anything"), false, "auth=", true},
		{"large redacted", hs.url(stripeHost, "/v1/charges/big"), true,
			"auth=Bearer stk_ph_stripe" + strings.Repeat("x", bigSize) + "auth=Bearer stk_ph_stripe", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", tc.url, nil)
			if tc.placeholder {
				req.Header.Set("Authorization", "Bearer stk_ph_stripe")
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if strings.Contains(body, stripeToken) {
				t.Fatal("the secret reached the agent")
			}
			if body != tc.wantBody {
				t.Fatalf("body = %.80q..., want %.80q...", body, tc.wantBody)
			}
			chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
			if tc.wantLength && (resp.ContentLength != int64(len(body)) || chunked) {
				t.Errorf("Content-Length %d, transfer encoding %v; want length %d, not chunked", resp.ContentLength, resp.TransferEncoding, len(body))
			}
			if !tc.wantLength && !chunked {
				t.Errorf("transfer encoding %v, Content-Length %d: a body redacted as it streams must be chunked", resp.TransferEncoding, resp.ContentLength)
			}
		})
	}
}

func TestReadSmall(t *testing.T) {
	b := []byte("hello")
	mb := newMemBody(b)
	got, err := readSmall(mb, 5)
	if err != nil || &got[0] != &b[0] {
		t.Errorf("an unread memBody: %q %v, want its own bytes without a copy", got, err)
	}
	io.ReadAll(mb)
	if got, err := readSmall(mb, 5); err != nil || len(got) != 0 {
		t.Errorf("a drained memBody: %q %v, want what is left (nothing)", got, err)
	}
	if got, err := readSmall(io.NopCloser(strings.NewReader("0123456789")), 4); err != nil || string(got) != "01234" {
		t.Errorf("a body longer than declared: %q %v, want n+1 bytes", got, err)
	}
	broken := io.NopCloser(io.MultiReader(strings.NewReader("012"), iotest.ErrReader(io.ErrUnexpectedEOF)))
	if got, err := readSmall(broken, 10); !errors.Is(err, io.ErrUnexpectedEOF) || string(got) != "012" {
		t.Errorf("a body cut short: %q %v, want what arrived and the error", got, err)
	}
}

func TestStreamingType(t *testing.T) {
	for ct, want := range map[string]bool{
		"text/event-stream":                         true,
		"Text/Event-Stream; charset=utf-8":          true,
		" text/event-stream ;;":                     true,
		"multipart/x-mixed-replace; boundary=frame": true,
		"MULTIPART/byteranges":                      true,
		"application/json":                          false,
		"text/event-streamer":                       false,
		"multipart":                                 false,
		"":                                          false,
		"text/plain; note=text/event-stream":        false,
	} {
		if got := streamingType(ct); got != want {
			t.Errorf("streamingType(%q) = %v, want %v", ct, got, want)
		}
	}
}
