package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/reason"
)

// A sidecar without a control plane has no handoff desk: the reserved
// host is still its own (no grant names it, nothing is dialled), and
// every request to it is refused with the reason and a record, after the
// passport is checked like any other.
func TestHandoffHostWithoutControlPlane(t *testing.T) {
	hs := newHarness(t, http.NotFoundHandler())
	tok, _ := hs.issue("scraper", stripeScope(), time.Hour)
	for _, u := range []string{"https://" + HandoffHost + HandoffPath, "http://" + HandoffHost + HandoffPath} {
		resp, err := hs.client("scraper", tok).Post(u, "application/json", strings.NewReader(`{"to":"drafter"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(reason.Header) != reason.HandoffUnavailable || !strings.Contains(string(body), "--control") {
			t.Errorf("%s: %s %s %s", u, resp.Status, resp.Header.Get(reason.Header), body)
		}
		if r := hs.lastRecord(audit.ActionRequestDenied); r.Reason != reason.HandoffUnavailable || r.AgentID != "scraper" || r.Host != HandoffHost {
			t.Errorf("%s: record %+v", u, r)
		}
	}
	// Without a passport: the passport's refusal, not the desk's.
	resp, err := hs.client("", "").Get("http://" + HandoffHost + HandoffPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("no passport: %s", resp.Status)
	}
	if len(hs.up.received()) != 0 {
		t.Errorf("requests to the handoff host reached an upstream: %v", hs.up.received())
	}
}

// An agent reads what its passport allows from its sidecar, with or
// without a control plane; the token itself is never shown.
func TestPassportView(t *testing.T) {
	hs := newHarness(t, http.NotFoundHandler())
	tok, claims := hs.issue("scraper", stripeScope(), time.Hour)
	resp, err := hs.client("scraper", tok).Get("https://" + HandoffHost + PassportPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var v PassportView
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil || v.Agent != "scraper" || v.ID != claims.ID || len(v.Scope) != len(claims.Scope) {
		t.Fatalf("%s %s", resp.Status, body)
	}
	if strings.Contains(string(body), tok) || strings.Contains(string(body), strings.Split(tok, ".")[2]) {
		t.Error("the passport view holds the token")
	}
	if r := hs.lastRecord(audit.ActionRequest); r.Path != PassportPath || r.AgentID != "scraper" {
		t.Errorf("record %+v", r)
	}
}
