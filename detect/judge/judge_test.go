package judge

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// endpoint is a loopback HTTPS server standing in for a model endpoint.
// It counts the calls it answers and keeps the last request's body and
// Authorization header.
type endpoint struct {
	srv    *httptest.Server
	caFile string
	calls  atomic.Int32
	mu     sync.Mutex
	body   []byte
	auth   string
}

// newEndpoint starts a TLS server on loopback answering with h, writes
// its certificate to a CA file, and closes it when the test ends.
func newEndpoint(t testing.TB, h http.HandlerFunc) *endpoint {
	t.Helper()
	e := &endpoint{}
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.body, e.auth = b, r.Header.Get("Authorization")
		e.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		h(w, r)
	}))
	e.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	e.caFile = filepath.Join(t.TempDir(), "ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw})
	if err := os.WriteFile(e.caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *endpoint) last() (body []byte, auth string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.body, e.auth
}

// mustJudge returns a judge of e with opts (URL and CA file filled in),
// closed when the test ends.
func mustJudge(t testing.TB, e *endpoint, path string, opts Options) *Judge {
	t.Helper()
	opts.URL = e.srv.URL + path
	opts.CAFile = e.caFile
	if opts.Model == "" {
		opts.Model = "judge-1"
	}
	j, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(j.Close)
	return j
}

// completion is a chat completion as the OpenAI API documents it, its
// message content given.
func completion(content string) string {
	c, _ := json.Marshal(content)
	return `{"id":"chatcmpl-1","object":"chat.completion","created":1767225600,"model":"judge-1",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":` + string(c) + `,"refusal":null},"logprobs":null,"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":412,"completion_tokens":23,"total_tokens":435}}`
}

// openAI answers POST /v1/chat/completions like the OpenAI API, after
// checking the request is one: model, a system and a user message, a
// json_schema response format, no streaming. answer gives the status and
// body for the request's user message.
func openAI(t *testing.T, answer func(user string) (int, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("request %s %s (%s)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		var req struct {
			Model    string `json:"model"`
			Messages []struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"messages"`
			Temperature    *float64 `json:"temperature"`
			Stream         *bool    `json:"stream"`
			ResponseFormat struct {
				Type       string `json:"type"`
				JSONSchema struct {
					Name   string `json:"name"`
					Strict bool   `json:"strict"`
					Schema struct {
						Type       string         `json:"type"`
						Required   []string       `json:"required"`
						Props      map[string]any `json:"properties"`
						Additional *bool          `json:"additionalProperties"`
					} `json:"schema"`
				} `json:"json_schema"`
			} `json:"response_format"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			t.Errorf("request body: %v", err)
		}
		rf := req.ResponseFormat
		if req.Model != "judge-1" || len(req.Messages) != 2 || req.Messages[0].Role != "system" || req.Messages[0].Content != Prompt ||
			req.Messages[1].Role != "user" || req.Stream == nil || *req.Stream || req.Temperature == nil || *req.Temperature != 0 ||
			rf.Type != "json_schema" || rf.JSONSchema.Name == "" || !rf.JSONSchema.Strict || rf.JSONSchema.Schema.Type != "object" ||
			strings.Join(rf.JSONSchema.Schema.Required, ",") != "injection,score,reason" || len(rf.JSONSchema.Schema.Props) != 3 ||
			rf.JSONSchema.Schema.Additional == nil || *rf.JSONSchema.Schema.Additional {
			t.Errorf("request = %+v", req)
		}
		user := ""
		if len(req.Messages) == 2 {
			user = req.Messages[1].Content
		}
		status, body := answer(user)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func TestChatVerdicts(t *testing.T) {
	cases := []struct {
		name    string
		content string // the message content answered
		want    Verdict
	}{
		{"injection", `{"injection":true,"score":0.93,"reason":"asks the assistant to forward the user's e-mails"}`,
			Verdict{Injection: true, Score: 0.93, Reason: "asks the assistant to forward the user's e-mails"}},
		{"benign", `{"injection":false,"score":0.04,"reason":"a recipe for human readers"}`,
			Verdict{Score: 0.04, Reason: "a recipe for human readers"}},
		{"plain object in a code fence", "```json\n{\"injection\": true, \"score\": 1, \"reason\": \"override\"}\n```",
			Verdict{Injection: true, Score: 1, Reason: "override"}},
		{"no reason, unknown member", `{"injection":false,"score":0,"extra":[1,2]}`, Verdict{}},
		{"reason cleaned", "{\"injection\":true,\"score\":0.7,\"reason\":\"line one\\n\\tline\\u0000 two\"}",
			Verdict{Injection: true, Score: 0.7, Reason: "line one line two"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t, openAI(t, func(string) (int, string) { return 200, completion(tc.content) }))
			var got []Call
			j := mustJudge(t, e, "/v1/chat/completions", Options{OnCall: func(c Call) { got = append(got, c) }})
			v, err := j.Judge(context.Background(), Args{Content: []byte("some document")})
			if err != nil {
				t.Fatal(err)
			}
			v.Took = 0
			if v != tc.want {
				t.Errorf("verdict = %+v, want %+v", v, tc.want)
			}
			if len(got) != 1 || got[0].Outcome != OutcomeOK || got[0].PromptTokens != 412 || got[0].CompletionTokens != 23 || got[0].Bytes != len("some document") || got[0].Injection != tc.want.Injection {
				t.Errorf("calls = %+v", got)
			}
		})
	}
}

// The content goes in the user message between two copies of a boundary
// line the content does not choose.
func TestChatFramesContent(t *testing.T) {
	var users []string
	var mu sync.Mutex
	e := newEndpoint(t, openAI(t, func(user string) (int, string) {
		mu.Lock()
		users = append(users, user)
		mu.Unlock()
		return 200, completion(`{"injection":false,"score":0,"reason":""}`)
	}))
	j := mustJudge(t, e, "/v1/chat/completions", Options{CacheSize: -1})
	doc := "line one\n=====DOCUMENT-000000000000000000000000=====\nline three"
	for range 2 {
		if _, err := j.Judge(context.Background(), Args{Content: []byte(doc)}); err != nil {
			t.Fatal(err)
		}
	}
	if len(users) != 2 || users[0] == users[1] {
		t.Fatalf("user messages = %q; want two, with different boundaries", users)
	}
	for _, u := range users {
		first, rest, _ := strings.Cut(u, "\n\n")
		boundary := strings.TrimPrefix(first, "Boundary line: ")
		if want := boundary + "\n" + doc + "\n" + boundary + "\n"; rest != want || strings.Contains(doc, boundary) {
			t.Errorf("user message = %q", u)
		}
	}
}

func TestChatFailures(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		body    string
		want    error
		status2 int // the StatusError's status, 0 for none
	}{
		{"answer not JSON", 200, "<html>bad gateway</html>", ErrMalformed, 0},
		{"answer of another shape", 200, `{"choices":"none"}`, ErrMalformed, 0},
		{"answer a JSON array", 200, `[1,2,3]`, ErrMalformed, 0},
		{"empty choices", 200, `{"id":"x","object":"chat.completion","choices":[]}`, ErrMalformed, 0},
		{"no choices member", 200, `{"id":"x"}`, ErrMalformed, 0},
		{"choice without message", 200, `{"choices":[{"index":0}]}`, ErrMalformed, 0},
		{"null content", 200, `{"choices":[{"message":{"role":"assistant","content":null}}]}`, ErrMalformed, 0},
		{"refusal", 200, `{"choices":[{"message":{"role":"assistant","content":null,"refusal":"I can't help with that."}}]}`, ErrMalformed, 0},
		{"content not JSON", 200, completion("This document looks benign to me."), ErrMalformed, 0},
		{"content a JSON array", 200, completion(`[{"injection":true,"score":1}]`), ErrMalformed, 0},
		{"content lacks score", 200, completion(`{"injection":true,"reason":"x"}`), ErrMalformed, 0},
		{"content lacks injection", 200, completion(`{"score":0.9}`), ErrMalformed, 0},
		{"injection a string", 200, completion(`{"injection":"yes","score":0.9}`), ErrMalformed, 0},
		{"score above 1", 200, completion(`{"injection":true,"score":93}`), ErrMalformed, 0},
		{"score negative", 200, completion(`{"injection":false,"score":-0.1}`), ErrMalformed, 0},
		{"trailing text", 200, completion(`{"injection":false,"score":0} and more`), ErrMalformed, 0},
		{"HTTP 500", 500, `{"error":{"message":"internal error","type":"server_error"}}`, ErrUnavailable, 500},
		{"HTTP 429", 429, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`, ErrUnavailable, 429},
		{"HTTP 401", 401, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}`, ErrUnavailable, 401},
		{"redirect not followed", 302, ``, ErrUnavailable, 302},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t, openAI(t, func(string) (int, string) { return tc.status, tc.body }))
			var outcome Outcome
			j := mustJudge(t, e, "/v1/chat/completions", Options{OnCall: func(c Call) { outcome = c.Outcome }})
			var err error
			for i := range 2 {
				var v Verdict
				v, err = j.Judge(context.Background(), Args{Content: []byte("doc")})
				if !errors.Is(err, tc.want) || v.Injection {
					t.Fatalf("call %d: verdict %+v, err = %v, want %v", i, v, err, tc.want)
				}
			}
			// A failure is not cached: the second judgement called again.
			if n := e.calls.Load(); n != 2 {
				t.Errorf("calls = %d, want 2", n)
			}
			var se *StatusError
			if got := errors.As(err, &se); got != (tc.status2 != 0) || got && se.Status != tc.status2 {
				t.Errorf("err = %v, want a status error of %d", err, tc.status2)
			}
			want := map[error]Outcome{ErrMalformed: OutcomeMalformed, ErrUnavailable: OutcomeError}[tc.want]
			if outcome != want {
				t.Errorf("outcome = %q, want %q", outcome, want)
			}
		})
	}
}

// The budget is enforced by the context: a server that sleeps 5 s
// against a 100 ms budget costs a timeout, and the call is abandoned.
func TestChatTimeout(t *testing.T) {
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
			io.WriteString(w, completion(`{"injection":false,"score":0,"reason":""}`))
		}
	})
	var outcome Outcome
	j := mustJudge(t, e, "/v1/chat/completions", Options{Timeout: 100 * time.Millisecond, OnCall: func(c Call) { outcome = c.Outcome }})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := j.Judge(ctx, Args{Content: []byte("doc")})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the call outlived the test's own deadline: the budget was not enforced")
	}
	if outcome != OutcomeTimeout {
		t.Errorf("outcome = %q", outcome)
	}
}

// A verdict is cached by the content's SHA-256: the same content again
// makes no call, other content does; the least recently used goes first.
func TestCache(t *testing.T) {
	e := newEndpoint(t, openAI(t, func(user string) (int, string) {
		return 200, completion(fmt.Sprintf(`{"injection":%v,"score":0.9,"reason":"r"}`, strings.Contains(user, "evil")))
	}))
	var outcomes []Outcome
	j := mustJudge(t, e, "/v1/chat/completions", Options{CacheSize: 2, OnCall: func(c Call) { outcomes = append(outcomes, c.Outcome) }})
	judge := func(s string) Verdict {
		t.Helper()
		v, err := j.Judge(context.Background(), Args{Content: []byte(s)})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := judge("an evil document"); !v.Injection || v.Cached {
		t.Fatalf("first: %+v", v)
	}
	if v := judge("an evil document"); !v.Injection || !v.Cached || v.Took != 0 {
		t.Fatalf("second: %+v", v)
	}
	if n := e.calls.Load(); n != 1 {
		t.Fatalf("calls after the same content twice = %d, want 1", n)
	}
	judge("a kind document")  // 2 calls; cache: kind, evil
	judge("an evil document") // cached; cache: evil, kind
	judge("a third document") // 3 calls; evicts kind
	judge("an evil document") // still cached
	judge("a kind document")  // 4 calls
	if n := e.calls.Load(); n != 4 {
		t.Errorf("calls = %d, want 4", n)
	}
	want := []Outcome{OutcomeOK, OutcomeCached, OutcomeOK, OutcomeCached, OutcomeOK, OutcomeCached, OutcomeOK}
	if fmt.Sprint(outcomes) != fmt.Sprint(want) {
		t.Errorf("outcomes = %v, want %v", outcomes, want)
	}

	off := mustJudge(t, e, "/v1/chat/completions", Options{CacheSize: -1})
	for range 2 {
		if _, err := off.Judge(context.Background(), Args{Content: []byte("an evil document")}); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.calls.Load(); n != 6 {
		t.Errorf("calls with the cache off = %d, want 6", n)
	}
}

func TestAPIKey(t *testing.T) {
	e := newEndpoint(t, openAI(t, func(string) (int, string) { return 200, completion(`{"injection":false,"score":0,"reason":""}`) }))
	for _, key := range []string{"", "sk-test-0123456789"} {
		j := mustJudge(t, e, "/v1/chat/completions", Options{APIKey: key})
		if _, err := j.Judge(context.Background(), Args{Content: []byte(key + "doc")}); err != nil {
			t.Fatal(err)
		}
		_, auth := e.last()
		want := ""
		if key != "" {
			want = "Bearer " + key
		}
		if auth != want {
			t.Errorf("key %q: Authorization = %q, want %q", key, auth, want)
		}
	}
}

// The endpoint's certificate is checked against the CA file, and only
// the system's roots without one: a self-signed endpoint is refused.
func TestCertificateChecked(t *testing.T) {
	e := newEndpoint(t, openAI(t, func(string) (int, string) { return 200, completion(`{"injection":false,"score":0,"reason":""}`) }))
	j, err := New(Options{URL: e.srv.URL + "/v1/chat/completions", Model: "judge-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.Judge(context.Background(), Args{Content: []byte("doc")}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if n := e.calls.Load(); n != 0 {
		t.Errorf("the server answered %d calls over an unverified connection", n)
	}
}

func TestClassifier(t *testing.T) {
	cases := []struct {
		name   string
		answer string
		want   Verdict
		err    error
	}{
		{"injection", `[{"label":"INJECTION","score":0.91},{"label":"JAILBREAK","score":0.05},{"label":"BENIGN","score":0.04}]`,
			Verdict{Injection: true, Score: 0.96, Reason: "top label INJECTION 0.91"}, nil},
		{"attack labels add up", `[[{"label":"JAILBREAK","score":0.3},{"label":"INJECTION","score":0.3},{"label":"BENIGN","score":0.4}]]`,
			Verdict{Injection: true, Score: 0.6, Reason: "top label BENIGN 0.40"}, nil},
		{"benign", `[{"label":"benign","score":0.98},{"label":"malicious","score":0.02}]`,
			Verdict{Score: 0.02, Reason: "top label benign 0.98"}, nil},
		{"top label only", `[{"label":"LABEL_0","score":0.97}]`, Verdict{Score: 1 - 0.97, Reason: "top label LABEL_0 0.97"}, nil},
		{"empty list", `[]`, Verdict{}, ErrMalformed},
		{"object", `{"label":"INJECTION","score":0.9}`, Verdict{}, ErrMalformed},
		{"two lists", `[[{"label":"BENIGN","score":1}],[{"label":"BENIGN","score":1}]]`, Verdict{}, ErrMalformed},
		{"no score", `[{"label":"INJECTION"}]`, Verdict{}, ErrMalformed},
		{"score out of range", `[{"label":"INJECTION","score":1.5}]`, Verdict{}, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
				var req map[string]any
				if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.URL.Path != "/classify" || req["inputs"] != "a document" || req["model"] != "prompt-guard" || len(req) != 2 {
					t.Errorf("request %s %v (%v)", r.URL.Path, req, err)
				}
				io.WriteString(w, tc.answer)
			})
			j := mustJudge(t, e, "/classify", Options{Kind: KindClassifier, Model: "prompt-guard"})
			v, err := j.Judge(context.Background(), Args{Content: []byte("a document")})
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			v.Took = 0
			if v.Score-tc.want.Score > 1e-9 || tc.want.Score-v.Score > 1e-9 {
				t.Errorf("score = %v, want %v", v.Score, tc.want.Score)
			}
			v.Score = tc.want.Score
			if v != tc.want {
				t.Errorf("verdict = %+v, want %+v", v, tc.want)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	ok := Options{URL: "https://llm.internal/v1/chat/completions", Model: "m"}
	bad := map[string]Options{
		"no url":                {Model: "m"},
		"http to another host":  {URL: "http://llm.internal/v1/chat/completions", Model: "m"},
		"user and password":     {URL: "https://u:p@llm.internal/v1/chat/completions", Model: "m"},
		"other scheme":          {URL: "ftp://llm.internal/x", Model: "m"},
		"no host":               {URL: "https:///v1/chat/completions", Model: "m"},
		"chat without model":    {URL: ok.URL},
		"unknown kind":          {URL: ok.URL, Model: "m", Kind: "llama"},
		"negative timeout":      {URL: ok.URL, Model: "m", Timeout: -time.Second},
		"threshold above 1":     {URL: ok.URL, Model: "m", Threshold: 2},
		"key with a line break": {URL: ok.URL, Model: "m", APIKey: "k\r\nX-Evil: 1"},
		"CA file missing":       {URL: ok.URL, Model: "m", CAFile: filepath.Join(t.TempDir(), "none.pem")},
	}
	for name, o := range bad {
		if _, err := New(o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	for _, o := range []Options{ok, {URL: "http://127.0.0.1:8000/v1/chat/completions", Model: "m"}, {URL: "http://localhost:8000/classify", Kind: KindClassifier},
		{URL: "http://[::1]:8000/classify", Kind: KindClassifier}} {
		j, err := New(o)
		if err != nil {
			t.Errorf("%+v: %v", o, err)
			continue
		}
		j.Close()
		j.Close() // idempotent
	}
}

// After BreakAfter failed calls in a row the judge answers ErrSuspended
// without a call for BreakFor, then lets one call through: a success ends
// the suspension, a failure renews it. Calls the caller gave up on do not
// count.
func TestBreaker(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	e := newEndpoint(t, openAI(t, func(string) (int, string) {
		if failing.Load() {
			return http.StatusInternalServerError, `{"error":{"message":"overloaded"}}`
		}
		return 200, completion(`{"injection":false,"score":0.1,"reason":"r"}`)
	}))
	var mu sync.Mutex
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	var outcomes []Outcome
	j := mustJudge(t, e, "/v1/chat/completions", Options{CacheSize: -1, BreakAfter: 3, BreakFor: 10 * time.Second, Now: clock,
		OnCall: func(c Call) { outcomes = append(outcomes, c.Outcome) }})
	ask := func() error {
		_, err := j.Judge(context.Background(), Args{Content: []byte("a document")})
		return err
	}
	// A call the caller cancels says nothing of the endpoint.
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := j.Judge(canceled, Args{Content: []byte("a document")}); err == nil {
		t.Fatal("a canceled call succeeded")
	}
	for i := range 3 {
		if err := ask(); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	calls := e.calls.Load()
	for range 5 {
		if err := ask(); !errors.Is(err, ErrSuspended) {
			t.Fatalf("while suspended: %v", err)
		}
	}
	if n := e.calls.Load(); n != calls {
		t.Fatalf("%d calls made while suspended", n-calls)
	}
	// The trial call after the rest fails: suspended again.
	advance(10 * time.Second)
	if err := ask(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("trial call: %v", err)
	}
	if err := ask(); !errors.Is(err, ErrSuspended) {
		t.Fatalf("after a failed trial: %v", err)
	}
	// The endpoint recovers: the next trial ends the suspension.
	failing.Store(false)
	advance(10 * time.Second)
	for i := range 4 {
		if err := ask(); err != nil {
			t.Fatalf("call %d after recovery: %v", i, err)
		}
	}
	want := []Outcome{OutcomeError, OutcomeError, OutcomeError, OutcomeError, OutcomeSuspended, OutcomeSuspended,
		OutcomeSuspended, OutcomeSuspended, OutcomeSuspended, OutcomeError, OutcomeSuspended, OutcomeOK, OutcomeOK, OutcomeOK, OutcomeOK}
	if fmt.Sprint(outcomes) != fmt.Sprint(want) {
		t.Errorf("outcomes\n%v, want\n%v", outcomes, want)
	}

	// A negative BreakAfter never suspends.
	failing.Store(true)
	never := mustJudge(t, e, "/v1/chat/completions", Options{CacheSize: -1, BreakAfter: -1})
	for range 8 {
		if _, err := never.Judge(context.Background(), Args{Content: []byte("x")}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("never suspended: %v", err)
		}
	}
}
