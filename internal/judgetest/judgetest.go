// Package judgetest serves, for tests, a loopback HTTPS endpoint that
// answers /v1/chat/completions as the OpenAI API documents it, with the
// structured verdict prompt_injection's model judge asks for.
package judgetest

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Reason is the reason the server gives for a verdict of injection.
const Reason = "asks the assistant to unlock a door"

// Options say what the server wants and answers.
type Options struct {
	// Key is the API key the server wants as a bearer token; other
	// calls get 401 with OpenAI's error body.
	Key string
	// Model is the model a call must name (400 otherwise).
	Model string
	// Injection judges the document, the last message's content; nil
	// finds an injection in every document.
	Injection func(doc string) bool
}

// Server is a running endpoint.
type Server struct {
	// URL is the endpoint itself; CAFile holds its certificate (PEM).
	URL, CAFile string
	// Calls counts the calls received, refused ones included.
	Calls atomic.Int32
	delay atomic.Int64
}

// SetDelay makes every answer wait d (0: none) or until the caller goes.
func (s *Server) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

// Start starts a server, stopped at the end of the test.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+o.Key {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}`)
			return
		}
		var req struct {
			Model    string `json:"model"`
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model != o.Model || len(req.Messages) == 0 || r.URL.Path != "/v1/chat/completions" {
			http.Error(w, `{"error":{"message":"bad request"}}`, http.StatusBadRequest)
			return
		}
		if d := time.Duration(s.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		doc := req.Messages[len(req.Messages)-1].Content
		verdict := `{"injection":false,"score":0.02,"reason":"ordinary data"}`
		if o.Injection == nil || o.Injection(doc) {
			verdict = `{"injection":true,"score":0.93,"reason":"` + Reason + `"}`
		}
		content, _ := json.Marshal(verdict)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1767225600,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":%s,"refusal":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":300,"completion_tokens":20,"total_tokens":320}}`, o.Model, content)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.URL = srv.URL + "/v1/chat/completions"
	s.CAFile = filepath.Join(t.TempDir(), "judge-ca.pem")
	if err := os.WriteFile(s.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// Contains is an Injection that finds one in documents holding word.
func Contains(word string) func(string) bool {
	return func(doc string) bool { return strings.Contains(doc, word) }
}
