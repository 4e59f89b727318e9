package detect

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func req(agent, method, host, path string, at time.Time) *Event {
	return &Event{Time: at, Direction: Request, Agent: agent, Method: method, Host: host, Path: path}
}

// learnProfile teaches d that agent calls GET and POST on api.stripe.com
// (charges and customers by id) for a day and a bit, with 300 requests.
func learnProfile(t *testing.T, d *Drift, agent string) time.Time {
	t.Helper()
	at := t0
	for i := range 300 {
		at = t0.Add(time.Duration(i) * 5 * time.Minute)
		ev := req(agent, "GET", "api.stripe.com", fmt.Sprintf("/v1/customers/cus_%08dAbCd", i), at)
		if i%2 == 1 {
			ev = req(agent, "POST", "api.stripe.com", "/v1/charges", at)
		}
		if s := d.Inspect(ev); len(s) != 0 {
			t.Fatalf("learning request %d fired: %+v", i, s)
		}
	}
	return at.Add(time.Minute)
}

func TestDriftScoring(t *testing.T) {
	cases := []struct {
		name     string
		opts     DriftOptions
		method   string
		host     string
		path     string
		wantRule string // "" for no signal
		score    float64
	}{
		{"known request", DriftOptions{}, "GET", "api.stripe.com", "/v1/customers/cus_99999999ZzZz", "", 0},
		{"new host", DriftOptions{}, "GET", "evil.example.com", "/v1/charges", "new_host", 1.0},
		{"new method on known host", DriftOptions{}, "DELETE", "api.stripe.com", "/v1/charges", "new_method", 0.6},
		{"new path under threshold", DriftOptions{}, "GET", "api.stripe.com", "/v1/payouts", "", 0},
		{"new path with a low threshold", DriftOptions{Threshold: 0.2}, "GET", "api.stripe.com", "/v1/payouts", "new_path", 0.3},
		{"method case does not matter", DriftOptions{}, "post", "api.stripe.com", "/v1/charges", "", 0},
		{"custom host score under threshold", DriftOptions{HostScore: 0.4}, "GET", "evil.example.com", "/", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := mustDrift(t, tc.opts)
			at := learnProfile(t, d, "billing")
			s := d.Inspect(req("billing", tc.method, tc.host, tc.path, at))
			if tc.wantRule == "" {
				if len(s) != 0 {
					t.Fatalf("signals = %+v, want none", s)
				}
				return
			}
			if len(s) != 1 || s[0].Rule != tc.wantRule || s[0].Score != tc.score || s[0].Severity != Warning {
				t.Fatalf("signals = %+v, want one warning %s scored %v", s, tc.wantRule, tc.score)
			}
			// Learned now: the same request does not fire again.
			if s := d.Inspect(req("billing", tc.method, tc.host, tc.path, at.Add(time.Second))); len(s) != 0 {
				t.Fatalf("repeat fired: %+v", s)
			}
		})
	}
}

func TestDriftEvidence(t *testing.T) {
	d := mustDrift(t, DriftOptions{})
	at := learnProfile(t, d, "billing")
	s := d.Inspect(req("billing", "GET", "evil.example.com", "/x", at))
	want := "new host evil.example.com for agent billing (profile: 1 hosts, 300 requests over 24h56m)"
	if len(s) != 1 || s[0].Evidence != want {
		t.Fatalf("evidence = %+v, want %q", s, want)
	}
}

func TestDriftLearningPeriod(t *testing.T) {
	cases := []struct {
		name   string
		events int
		every  time.Duration
		fires  bool
	}{
		{"enough events, too young", 300, time.Second, false},
		{"old enough, too few events", 100, 20 * time.Minute, false},
		{"both", 300, 5 * time.Minute, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := mustDrift(t, DriftOptions{})
			var at time.Time
			for i := range tc.events {
				at = t0.Add(time.Duration(i) * tc.every)
				d.Inspect(req("a", "GET", "api.stripe.com", "/v1/charges", at))
			}
			s := d.Inspect(req("a", "GET", "new.example.com", "/", at.Add(time.Minute)))
			if (len(s) == 1) != tc.fires {
				t.Fatalf("signals = %+v, want fired %v", s, tc.fires)
			}
			if d.Learned("a", at.Add(time.Minute)) != tc.fires {
				t.Fatalf("Learned = %v, want %v", !tc.fires, tc.fires)
			}
		})
	}
}

func TestDriftScopeDenied(t *testing.T) {
	d := mustDrift(t, DriftOptions{})
	ev := req("fresh-agent", "POST", "api.stripe.com", "/v1/transfers/tr_1MiN3gLkdIwHu7ixNCZvFdgA", t0)
	ev.ScopeDenied, ev.ScopeReason = true, "method POST not granted for api.stripe.com"
	s := d.Inspect(ev)
	want := "out-of-scope attempt: POST api.stripe.com/v1/transfers/{id} (method POST not granted for api.stripe.com)"
	if len(s) != 1 || s[0].Severity != Critical || s[0].Rule != "out_of_scope" || s[0].Evidence != want {
		t.Fatalf("signals = %+v, want critical out_of_scope with evidence %q", s, want)
	}
	// Refused requests are not learned.
	if p, ok := d.agents.get("fresh-agent"); ok && p.events != 0 {
		t.Fatalf("a refused request was learned: %+v", p)
	}
	resp := req("fresh-agent", "GET", "x.example.com", "/", t0)
	resp.Direction, resp.ScopeDenied = Response, true
	if s := d.Inspect(resp); len(s) != 0 {
		t.Fatalf("a response fired: %+v", s)
	}
}

func TestDriftBounds(t *testing.T) {
	d := mustDrift(t, DriftOptions{MaxAgents: 5, MaxHosts: 3, MaxTemplates: 4, MinEvents: 1, MinAge: time.Nanosecond})
	for i := range 10 {
		d.Inspect(req(fmt.Sprintf("agent-%d", i), "GET", "h.example.com", "/", t0))
	}
	if n := d.agents.len(); n != 5 {
		t.Fatalf("agents = %d, want 5", n)
	}
	for i := range 10 {
		d.Inspect(req("big", "GET", fmt.Sprintf("h%d.example.com", i), fmt.Sprintf("/route%d", i), t0.Add(time.Duration(i)*time.Second)))
		d.Inspect(req("big", "GET", "h0.example.com", fmt.Sprintf("/other%d", i), t0.Add(time.Duration(i)*time.Second)))
	}
	p, _ := d.agents.get("big")
	if len(p.hosts) != 3 || p.templates != 4 {
		t.Fatalf("profile has %d hosts and %d templates, want 3 and 4", len(p.hosts), p.templates)
	}
	// Past the bound, a new host keeps being reported as new.
	for range 2 {
		if s := d.Inspect(req("big", "GET", "h99.example.com", "/", t0.Add(time.Hour))); len(s) != 1 {
			t.Fatalf("new host past the bound: %+v", s)
		}
	}
}

func TestPathTemplate(t *testing.T) {
	cases := map[string]string{
		"":                                 "/",
		"/":                                "/",
		"/v1/charges":                      "/v1/charges",
		"/v1/charges/":                     "/v1/charges",
		"/v1/charges?limit=3":              "/v1/charges",
		"/v1/customers/cus_9s6XKzkNRiz8i3": "/v1/customers/{id}",
		"/v1/payment_intents/pi_3MtwBwLkdIwHu7ix28a3tqPa/confirm": "/v1/payment_intents/{id}/confirm",
		"/repos/stackctl/stack/issues/1234":                       "/repos/stackctl/stack/issues/{id}",
		"/objects/123e4567-e89b-12d3-a456-426614174000":           "/objects/{id}",
		"/commits/9fceb02d0ae598e95dc970b74767f19372d61af8":       "/commits/{id}",
		"/files/deadbeef01":                                       "/files/{id}",
		"/files/facade":                                           "/files/facade",        // hex letters only: a word
		"/v2/models":                                              "/v2/models",           // short token with a digit
		"/api/payment_methods":                                    "/api/payment_methods", // underscore words
		"/t/eyJhbGciOiJFZERTQSJ9abc123":                           "/t/{id}",
		"/v1/chat/completions":                                    "/v1/chat/completions",
	}
	for in, want := range cases {
		if got := PathTemplate(in); got != want {
			t.Errorf("PathTemplate(%q) = %q, want %q", in, got, want)
		}
	}
	long := strings.Repeat("/a", 40)
	if got := PathTemplate(long); got != strings.Repeat("/a", 32)+"/{rest}" {
		t.Errorf("PathTemplate(40 segments) = %q", got)
	}
}

func FuzzPathTemplate(f *testing.F) {
	for _, s := range []string{"/v1/customers/cus_9s6XKzkNRiz8i3", "//a//b", "/%2F/…/é", "?x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		got := PathTemplate(path)
		if !strings.HasPrefix(got, "/") {
			t.Fatalf("PathTemplate(%q) = %q, want a leading slash", path, got)
		}
		if again := PathTemplate(got); again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", path, got, again)
		}
	})
}

// A handoff through the sidecar's own endpoint is governed by its grant:
// after the profile is learnt it is neither scored as a new host nor
// learnt, so a later real request to that host still is.
func TestDriftLeavesHandoffsAlone(t *testing.T) {
	d := mustDrift(t, DriftOptions{})
	at := learnProfile(t, d, "billing")
	ev := req("billing", "POST", "handoff.stack.internal", "/v1/handoffs", at)
	ev.Handoff = true
	if s := d.Inspect(ev); len(s) != 0 {
		t.Fatalf("a handoff scored as drift: %+v", s)
	}
	if s := d.Inspect(req("billing", "POST", "handoff.stack.internal", "/v1/handoffs", at.Add(time.Second))); len(s) != 1 || s[0].Rule != "new_host" {
		t.Fatalf("the handoff was learnt: %+v", s)
	}
}
