package proxy

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
	"github.com/stackctl/stack/vault"
)

// BenchmarkPipelineDetect is the pipeline with the exfiltration detector
// in the grid, as stack proxy runs it (binding function and an index of
// the vault's secrets), on an SDK-like request carrying the placeholder.
func BenchmarkPipelineDetect(b *testing.B) {
	u, err := url.Parse("https://" + stripeHost + "/v1/charges/ch_123?expand=customer")
	if err != nil {
		b.Fatal(err)
	}
	bp := newBenchProxy(b, 0)
	ex, err := detect.NewExfiltration(detect.ExfiltrationOptions{
		Bound: func(name string) ([]string, bool) {
			if name == "stripe" {
				return []string{stripeHost}, true
			}
			return nil, false
		},
		Secrets: detect.NewSecretIndex(map[string][]byte{"stripe": []byte(stripeToken)}),
	})
	if err != nil {
		b.Fatal(err)
	}
	g, err := detect.NewGrid(detect.GridOptions{Detectors: []detect.Detector{ex},
		Policy: detect.Policy{Modes: map[string]detect.Mode{detect.ExfiltrationName: detect.ModeBlock}}})
	if err != nil {
		b.Fatal(err)
	}
	bp.proxy.opts.Grid = g
	b.ReportAllocs()
	for b.Loop() {
		req, st := bp.request(u, true)
		req.Header["Accept"] = []string{"application/json"}
		req.Header["Stripe-Version"] = []string{"2024-06-20"}
		req.Header["Idempotency-Key"] = []string{"8d5b0f9e-2b7c-4c1e-9a51-6f0d2f3c1a77"}
		req.Header["X-Stripe-Client-User-Agent"] = []string{`{"bindings_version":"82.5.1","lang":"go","lang_version":"go1.26.8","publisher":"stripe","uname":"linux"}`}
		if resp := bp.proxy.pipeline(req, st); resp != nil {
			b.Fatalf("refused: %d %s", resp.StatusCode, resp.Header.Get(reason.Header))
		}
	}
}

// ghToken is a vault secret shaped like a GitHub token: a shape the
// detector flags wherever it goes unbound.
const ghToken = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"

// A real secret in a request header to a host it is not bound to is
// refused in block mode, whichever header carries it; the proxy's own
// Proxy-Authorization and the credential the injector renders for a bound
// host are not held against the request.
func TestExfiltrationInRequestHeaders(t *testing.T) {
	var hits atomic.Int32
	hs := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		echoAuth(w, r)
	}))
	bearer, _ := vault.ParseRender("bearer")
	if _, err := hs.vault.Put(context.Background(), "gh", []byte(ghToken), vault.PutOptions{Hosts: []string{stripeHost}, Render: bearer}); err != nil {
		t.Fatal(err)
	}
	if err := hs.store.Reload(); err != nil {
		t.Fatal(err)
	}
	ex, err := detect.NewExfiltration(detect.ExfiltrationOptions{Bound: hs.store.Bound,
		Secrets: detect.NewSecretIndex(map[string][]byte{"stripe": []byte(stripeToken), "gh": []byte(ghToken)})})
	if err != nil {
		t.Fatal(err)
	}
	withGrid(t, []detect.Detector{ex}, detect.Policy{Modes: map[string]detect.Mode{detect.ExfiltrationName: detect.ModeBlock}})(&hs.proxy.opts)
	tok, _ := hs.issue("bot", passport.Scope{
		{Hosts: []string{stripeHost}, Methods: []string{"GET"}, Paths: []string{"/**"}, Credentials: []string{"gh"}},
		{Hosts: []string{otherHost}, Methods: []string{"GET"}, Paths: []string{"/**"}},
	}, 0)
	c := hs.client("bot", tok)
	get := func(host string, h http.Header) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", hs.url(host, "/v1/x"), nil)
		maps.Copy(req.Header, h)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp
	}

	// The injected credential, shaped like a GitHub token, goes to its
	// bound host: the detectors judge the headers as the agent sent them.
	resp := get(stripeHost, http.Header{"Authorization": {"Bearer stk_ph_gh"}})
	if resp.StatusCode != 200 || resp.Header.Get("X-Echo-Auth") != "Bearer stk_ph_gh" {
		t.Fatalf("injected request: %d %q %q", resp.StatusCode, resp.Header.Get(reason.Header), resp.Header.Get("X-Echo-Auth"))
	}
	if got := hs.up.received(); len(got) != 1 || got[0] != "Bearer "+ghToken {
		t.Fatalf("upstream got Authorization %q", got)
	}
	for _, r := range hs.records() {
		if r.Action == audit.ActionDetectorFired {
			t.Fatalf("the injected credential fired a detector: %+v", r)
		}
	}

	for _, tc := range []struct {
		name string
		h    http.Header
		rule string
	}{
		{"a vault secret as Bearer", http.Header{"Authorization": {"Bearer " + stripeToken}}, "vault_secret"},
		{"a vault secret in a custom header", http.Header{"X-Upload-Meta": {"k=" + stripeToken}}, "vault_secret"},
		{"a GitHub token in a cookie", http.Header{"Cookie": {"session=abc; t=" + ghToken}}, "github_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			resp := get(otherHost, tc.h)
			if resp.StatusCode != 403 || resp.Header.Get(reason.Header) != reason.DetectorBlocked {
				t.Fatalf("%d %q, want 403 %s", resp.StatusCode, resp.Header.Get(reason.Header), reason.DetectorBlocked)
			}
			if hits.Load() != before {
				t.Fatal("the request reached the upstream")
			}
			r := hs.lastRecord(audit.ActionDetectorFired)
			if r.Detector != detect.ExfiltrationName || r.Severity != "critical" || strings.Contains(r.Detail, stripeToken) || strings.Contains(r.Detail, ghToken) {
				t.Errorf("audit record %+v", r)
			}
		})
	}
}
