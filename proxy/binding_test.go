package proxy

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// The injector and the exfiltration detector read a binding alike: a
// credential bound to *.example.test is not bound to a.b.example.test, so
// its placeholder sent there is refused by the injector and also raises
// the exfiltration signal, which the policy can then act on.
func TestWildcardBindingRefusedAndReported(t *testing.T) {
	var hits atomic.Int32
	hs := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	putBearer(t, hs.vault, "wild", "wild-secret-0123456789", "*.example.test")
	if err := hs.store.Reload(); err != nil {
		t.Fatal(err)
	}
	ex, err := detect.NewExfiltration(detect.ExfiltrationOptions{Bound: hs.store.Bound})
	if err != nil {
		t.Fatal(err)
	}
	withGrid(t, []detect.Detector{ex}, detect.Policy{Modes: map[string]detect.Mode{detect.ExfiltrationName: detect.ModeAlert}})(&hs.proxy.opts)
	// The passport grants the host and the credential: only the binding
	// stands between the placeholder and a.b.example.test.
	tok, claims := hs.issue("bot", passport.Scope{
		{Hosts: []string{"*.example.test", "*.b.example.test"}, Credentials: []string{"wild"}},
	}, 0)
	c := hs.client("bot", tok)

	req, _ := http.NewRequest("GET", hs.url("a.b.example.test", "/v1/x"), nil)
	req.Header.Set("Authorization", "Bearer stk_ph_wild")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get(reason.Header) != "placeholder_unbound" {
		t.Fatalf("%d %q, want 403 placeholder_unbound", resp.StatusCode, resp.Header.Get(reason.Header))
	}
	if hits.Load() != 0 {
		t.Fatal("the request reached the upstream")
	}
	fired := hs.lastRecord(audit.ActionDetectorFired)
	if fired.Detector != detect.ExfiltrationName || fired.PassportJTI != claims.ID || fired.Host != "a.b.example.test" ||
		fired.Severity != "critical" || !strings.Contains(fired.Detail, "*.example.test") {
		t.Errorf("detector_fired record %+v, want credential_exfiltration on a.b.example.test", fired)
	}
}
