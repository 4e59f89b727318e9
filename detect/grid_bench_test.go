package detect

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/benchkit"
)

// benchGrid builds the grid as the sidecar does (cmd/stack): every
// built-in detector in alert mode, the exfiltration detector with a
// binding function and an index of vault secrets. The burst cap is raised
// as the load harness raises it, so steady traffic is normal behaviour.
func benchGrid(tb testing.TB) *Grid {
	tb.Helper()
	burst := mustBurst(tb, BurstOptions{AbsoluteCap: 1 << 30})
	drift := mustDrift(tb, DriftOptions{})
	pi, err := NewPromptInjection(PromptInjectionOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	benchHosts := []string{"api.bench.test"}
	bound := func(name string) ([]string, bool) {
		if name == "bench" {
			return benchHosts, true
		}
		return nil, false
	}
	secrets := NewSecretIndex(map[string][]byte{
		"bench":  []byte("sk_test_4eC39HqLyjWDarjtT1zdp7dc"),
		"github": []byte("ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
	})
	exfil, err := NewExfiltration(ExfiltrationOptions{Bound: bound, Secrets: secrets})
	if err != nil {
		tb.Fatal(err)
	}
	return mustGrid(tb, GridOptions{
		Detectors: []Detector{burst, drift, pi, exfil},
		Policy: Policy{Modes: map[string]Mode{
			BurstName: ModeAlert, DriftName: ModeAlert, InjectionName: ModeAlert, ExfiltrationName: ModeAlert,
		}},
	})
}

// benchRequest is the event the proxy builds for the harness's request:
// a GET without body carrying the bench placeholder, which gets the bench
// credential.
func benchRequest(at time.Time) *Event {
	return &Event{
		Time: at, Direction: Request, Agent: "bench-agent", PassportJTI: "jti-1", Mode: "enforce",
		Host: "api.bench.test", Method: "GET", Path: "/v1/balance", Query: url.Values{},
		Credentials: []string{"bench"}, Placeholders: []string{"bench"},
	}
}

// benchResponse is the event the proxy builds for an upstream's answer.
func benchResponse(at time.Time, body []byte) *Event {
	return &Event{
		Time: at, Direction: Response, Agent: "bench-agent", PassportJTI: "jti-1", Mode: "enforce",
		Host: "api.bench.test", Method: "GET", Path: "/v1/balance", ContentType: "application/json",
		Status: 200, Credentials: []string{"bench"}, Body: body,
	}
}

// apiListJSON is a benign API answer of about 4 KiB: a page of support
// tickets with varied English text in string fields, as a Go server
// marshals it.
func apiListJSON() []byte {
	type ticket struct {
		ID        string   `json:"id"`
		Object    string   `json:"object"`
		Created   int64    `json:"created"`
		Status    string   `json:"status"`
		Priority  string   `json:"priority"`
		Subject   string   `json:"subject"`
		Body      string   `json:"body"`
		Tags      []string `json:"tags"`
		Assignee  string   `json:"assignee"`
		Customer  string   `json:"customer"`
		URL       string   `json:"url"`
		Responses int      `json:"responses"`
	}
	subjects := []string{
		"Invoice total does not match the order summary",
		"Cannot reset my password from the mobile app",
		"Shipping estimate changed after checkout",
		"Request to add a second billing contact",
		"Export to CSV leaves out the notes column",
		"Webhook deliveries are delayed by several minutes",
		"Question about the annual plan discount",
		"Dashboard charts are blank in Safari",
	}
	bodies := []string{
		"Hello, the invoice we received this morning lists three seats, but our order summary shows two. Could you check which one is right and send a corrected copy? Thanks for your help.",
		"When I tap the reset link on my phone, the page opens and then closes again. It works on my laptop. I am using the latest version of the app on Android 14.",
		"At checkout the estimate said Tuesday; the confirmation email now says Friday. We need the parts before the weekend, so please let us know if faster delivery is possible.",
		"Our finance team would like to receive copies of every receipt. Can we add accounts@example.org as a second billing contact without giving them access to the workspace?",
		"The exported file has all columns except the notes, which are empty in every row. The notes are visible in the web view. This started after last week's update.",
		"Since yesterday afternoon our endpoint receives events five to ten minutes late. Our server answers within 200 ms and the delivery log shows no retries.",
		"We are a team of twelve and are thinking about switching to yearly billing. Is the discount applied to seats added later in the year as well?",
		"The charts on the overview page stay blank in Safari 17 on macOS, while the tables below them load fine. Chrome and Firefox show everything as expected.",
	}
	tags := [][]string{{"billing", "invoice"}, {"account", "mobile"}, {"shipping"}, {"billing", "contacts"}, {"export", "bug"}, {"webhooks", "latency"}, {"sales", "pricing"}, {"dashboard", "browser"}}
	people := []string{"maria.lopez", "kenji.watanabe", "amara.okafor", "lukas.schmidt"}
	page := struct {
		Object  string   `json:"object"`
		URL     string   `json:"url"`
		HasMore bool     `json:"has_more"`
		Data    []ticket `json:"data"`
	}{Object: "list", URL: "/v2/tickets", HasMore: true}
	for i := 0; ; i++ {
		k := i % len(subjects)
		page.Data = append(page.Data, ticket{
			ID: fmt.Sprintf("tkt_%08d", 4200+i), Object: "ticket", Created: 1764000000 + int64(i)*3607,
			Status: []string{"open", "pending", "solved"}[i%3], Priority: []string{"normal", "high", "low"}[i%3],
			Subject: subjects[k], Body: bodies[k], Tags: tags[k], Assignee: people[i%len(people)],
			Customer: fmt.Sprintf("cus_%08d", 91000+i*13), URL: fmt.Sprintf("/v2/tickets/tkt_%08d", 4200+i), Responses: i % 4,
		})
		b, err := json.Marshal(page)
		if err != nil {
			panic(err)
		}
		if len(b) >= 4<<10 {
			return b
		}
	}
}

// benchEvaluate runs the grid on ev b.N times, as the proxy does per
// request: a fresh time each event, so the rate detectors see a steady
// stream. tune, if any, changes the grid first.
func benchEvaluate(b *testing.B, mk func(time.Time) *Event, tune ...func(*Grid)) {
	g := benchGrid(b)
	for _, f := range tune {
		f(g)
	}
	at := t0
	ev := mk(at)
	if d := g.Evaluate(ev); len(d.Signals) != 0 || d.Action != ActionNone {
		b.Fatalf("benign event flagged: %+v", d)
	}
	if len(ev.Body) > 0 {
		b.SetBytes(int64(len(ev.Body)))
	}
	b.ReportAllocs()
	for b.Loop() {
		at = at.Add(300 * time.Microsecond)
		ev.Time = at
		g.Evaluate(ev)
	}
}

func BenchmarkGridRequest(b *testing.B) {
	benchEvaluate(b, benchRequest)
}

func BenchmarkGridResponseJSON512(b *testing.B) {
	body := benchkit.BalanceJSON(512) // the harness's answer
	benchEvaluate(b, func(at time.Time) *Event { return benchResponse(at, body) })
}

func BenchmarkGridResponseJSON4KiB(b *testing.B) {
	body := apiListJSON()
	benchEvaluate(b, func(at time.Time) *Event { return benchResponse(at, body) })
}

func TestBenchBodies(t *testing.T) {
	if b := apiListJSON(); len(b) < 4<<10 || len(b) > 5<<10 || !json.Valid(b) {
		t.Fatalf("list body: %d bytes, valid %v", len(b), json.Valid(b))
	}
}

// BenchmarkGridRequestAgentModes is BenchmarkGridRequest with a control
// plane's per-agent modes in force for the event's agent and for others.
func BenchmarkGridRequestAgentModes(b *testing.B) {
	benchEvaluate(b, benchRequest, func(g *Grid) {
		for _, agent := range []string{"bench-agent", "other-agent"} {
			if err := g.SetAgentModes(agent, map[string]Mode{BurstName: ModeAlert, DriftName: ModeAlert}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
