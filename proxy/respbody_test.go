package proxy

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
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
