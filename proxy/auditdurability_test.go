package proxy

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/reason"
)

// An allowed request's records are written before the agent has its whole
// answer: once a client has read a response, the log's head already counts
// the request's credential access and its closing record, so a sidecar
// killed at that moment has written both.
func TestRequestRecordsWrittenBeforeTheAnswerEnds(t *testing.T) {
	hs := newHarness(t, echoAuth)
	tok, _ := hs.issue("billing-bot", stripeScope(), 0)
	c := hs.client("billing-bot", tok)
	for i := 1; i <= 50; i++ {
		path := fmt.Sprintf("/v1/charges/ch_%d", i)
		req, _ := http.NewRequest("GET", hs.url(stripeHost, path), nil)
		req.Header.Set("Authorization", "Bearer stk_ph_stripe")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if seq, _ := hs.audit.Head(); seq != uint64(2*i) {
			t.Fatalf("request %d answered with %d records written, want %d", i, seq, 2*i)
		}
	}
	rs := hs.records()
	if n := len(rs); n != 100 || rs[99].Action != audit.ActionRequest || rs[98].Action != audit.ActionCredentialAccess {
		t.Fatalf("%d records, last %+v", n, rs[n-1])
	}
}

// An audit log that cannot record a credential access refuses the request
// (fail closed): nothing reaches the upstream.
func TestAuditFailureRefusesCredentialRequests(t *testing.T) {
	hs := newHarness(t, echoAuth)
	tok, _ := hs.issue("billing-bot", stripeScope(), 0)
	c := hs.client("billing-bot", tok)
	if err := hs.audit.Close(); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", hs.url(stripeHost, "/v1/charges"), nil)
	req.Header.Set("Authorization", "Bearer stk_ph_stripe")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(reason.Header) != reason.AuditUnavailable {
		t.Fatalf("status %d reason %q, want 503 %s", resp.StatusCode, resp.Header.Get(reason.Header), reason.AuditUnavailable)
	}
	if got := hs.up.received(); len(got) != 0 {
		t.Fatalf("the upstream received %d requests with the audit log down", len(got))
	}
}
