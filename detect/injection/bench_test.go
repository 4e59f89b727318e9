package injection

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"strings"
	"testing"

	"github.com/stackctl/stack/internal/benchkit"
)

// llmRequest4K is a typical request body on its way to a model API: a
// chat completion (JSON, as a Go client marshals it, so markup in strings
// is escaped as \u003c) with a system prompt, tool definitions and a tool
// result carrying a fetched web page, padded to 4 KiB.
func llmRequest4K() []byte {
	type msg struct {
		Role       string `json:"role"`
		Content    string `json:"content"`
		ToolCallID string `json:"tool_call_id,omitempty"`
	}
	page := "<html><head><title>Release notes 4.2</title></head><body>\n" +
		"<h1>Release notes</h1>\n<p>This release improves the scheduler &amp; the cache. " +
		"Upgrade with <code>pip install -U example==4.2</code>. The previous behaviour of the " +
		"<em>--strict</em> flag is kept; see the migration guide for the new configuration keys.</p>\n" +
		"<ul><li>Faster cold start (35% on average)</li><li>Fixed a race in the retry loop</li>" +
		"<li>New: per-tenant quotas, documented in the admin guide</li></ul>\n" +
		"<p>Questions? Write to support@example.com or open an issue.</p></body></html>"
	body := map[string]any{
		"model":       "gpt-4o-mini",
		"temperature": 0.2,
		"messages": []msg{
			{Role: "system", Content: "You are a release assistant. Summarise changes for the user, cite versions, and never run commands without asking. Answer in the user's language."},
			{Role: "user", Content: "What changed in 4.2, and do I need to change my config?\nWe run the --strict flag in CI."},
			{Role: "tool", ToolCallID: "call_0", Content: page},
		},
		"tools": []map[string]any{{
			"type": "function",
			"function": map[string]any{
				"name":        "fetch_url",
				"description": "Fetch a web page and return its HTML.",
				"parameters": map[string]any{
					"type":       "object",
					"properties": map[string]any{"url": map[string]string{"type": "string", "description": "The URL to fetch."}},
					"required":   []string{"url"},
				},
			},
		}},
	}
	out, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	// Pad the user's question with more conversation to 4 KiB.
	s := string(out)
	filler := `{"role":"assistant","content":"Earlier answer: the 4.1 release changed the default timeout to 30s and deprecated the legacy exporter.\nSee the changelog for details."},`
	i := strings.Index(s, `{"role":"user"`)
	for len(s) < 4<<10 {
		s = s[:i] + filler + s[i:]
	}
	return []byte(s[:4<<10])
}

func BenchmarkPromptInjection4KiB(b *testing.B) {
	body := llmRequest4K()
	if r := Scan(body, Options{}); r.Flagged {
		b.Fatalf("benign request flagged: %+v", r)
	}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		Scan(body, Options{})
	}
}

// benignHTML64K is 64 KiB of benign web pages: the benign corpus in
// markup, with entities, comments, links and a hidden navigation menu.
func benignHTML64K(tb testing.TB) []byte {
	var b bytes.Buffer
	b.WriteString("<!DOCTYPE html><html><head><title>Posts</title><style>.nav{display:none}</style></head><body>\n")
	for len(b.Bytes()) < 64<<10 {
		for i, s := range loadCorpus(tb, false) {
			if s.Label != "benign" {
				continue
			}
			fmt.Fprintf(&b, "<div class=\"post\" id=\"p%d\"><h2>Post %d &mdash; %s</h2>\n<p>%s</p>\n", i, i, s.Category, html.EscapeString(s.Text))
			fmt.Fprintf(&b, "<!-- post %d --><nav style=\"display:none\"><a href=\"/posts/%d\">next</a></nav><a href=\"https://example.com/posts?id=%d&amp;ref=list\">Read more &raquo;</a></div>\n", i, i+1, i)
		}
	}
	return b.Bytes()[:64<<10]
}

// calibrationPasses is how many times calibrate reads its body: 16
// passes over 64 KiB cost about as much as the scan's budget.
const calibrationPasses = 16

// calibrate reads body calibrationPasses times, a byte at a time through
// a table, as the simplest scanner would. Its cost follows the machine's
// speed, not the scanner's code, so BenchmarkBudget's cases divided by it
// are a cost the machine's load and model cancel out of.
func calibrate(body []byte) uint32 {
	var tab [256]uint32
	for i := range tab {
		tab[i] = uint32(i)*2654435761 ^ uint32(i>>3)
	}
	h := uint32(2166136261)
	for range calibrationPasses {
		for _, c := range body {
			h = (h ^ tab[c|0x20]) * 16777619
		}
	}
	return h
}

var calibrationSink uint32

// BenchmarkBudget scans 64 KiB bodies of every kind the sidecar passes
// to the scanner: plain text, JSON with escapes, HTML, benign and
// malicious. The budget is the cost of the calibration case (see the
// package doc): CI runs the calibration, text, json and malicious cases
// side by side and fails when a case's best run costs more than the
// calibration's best run. The html case (dense markup, about three times
// the budget) is measured only.
func BenchmarkBudget(b *testing.B) {
	text := benign64K(b)
	b.Run("calibration", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			calibrationSink += calibrate(text)
		}
	})
	bodies := []struct {
		name string
		body []byte
	}{
		{"text", text},
		{"html", benignHTML64K(b)},
		{"malicious", adversarial64K()},
	}
	if u, ok := benignUnique64K(); ok {
		bodies = append(bodies, struct {
			name string
			body []byte
		}{"json", u})
	}
	for _, bc := range bodies {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.body)))
			// CPU per scan as well: on a shared machine it varies less
			// than the time.
			cpu0 := benchkit.ProcessCPU()
			for b.Loop() {
				Scan(bc.body, Options{})
			}
			b.ReportMetric(float64((benchkit.ProcessCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
