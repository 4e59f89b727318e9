package judge

import (
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Prompt is the system prompt of a chat judge (prompt.txt).
//
//go:embed prompt.txt
var Prompt string

// verdictSchema is the JSON schema a chat judge's answer is asked to
// follow, through response_format.
const verdictSchema = `{"type":"object","properties":{` +
	`"injection":{"type":"boolean","description":"true when the document contains a prompt injection"},` +
	`"score":{"type":"number","description":"how sure, from 0 to 1, that the document is an injection"},` +
	`"reason":{"type":"string","description":"one short sentence"}},` +
	`"required":["injection","score","reason"],"additionalProperties":false}`

// chatMessage is one message of a chat completions request.
type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// chatBody is the request body of POST /v1/chat/completions, as the
// OpenAI API documents it: no streaming, a JSON answer by schema.
type chatBody struct {
	Model          string         `json:"model"`
	Messages       []chatMessage  `json:"messages"`
	Temperature    float64        `json:"temperature"`
	Stream         bool           `json:"stream"`
	ResponseFormat responseFormat `json:"response_format"`
}

type responseFormat struct {
	Type       string     `json:"type"`
	JSONSchema jsonSchema `json:"json_schema"`
}

type jsonSchema struct {
	Name   string          `json:"name"`
	Strict bool            `json:"strict"`
	Schema json.RawMessage `json:"schema"`
}

// chatRequest is the body asking model about content: the prompt as the
// system message, the content between two copies of a random boundary
// line as the user message, so the content cannot close its own frame.
func chatRequest(model string, content []byte) ([]byte, error) {
	var nonce [12]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("judge: boundary: %w", err)
	}
	boundary := "=====DOCUMENT-" + hex.EncodeToString(nonce[:]) + "====="
	var user strings.Builder
	user.Grow(len(content) + 3*len(boundary) + 64)
	user.WriteString("Boundary line: " + boundary + "\n\n" + boundary + "\n")
	user.Write(content)
	user.WriteString("\n" + boundary + "\n")
	return json.Marshal(chatBody{
		Model: model,
		Messages: []chatMessage{
			{Role: "system", Content: Prompt},
			{Role: "user", Content: user.String()},
		},
		Temperature: 0,
		Stream:      false,
		ResponseFormat: responseFormat{Type: "json_schema", JSONSchema: jsonSchema{
			Name: "prompt_injection_verdict", Strict: true, Schema: json.RawMessage(verdictSchema),
		}},
	})
}

// chatAnswer is the part of a chat completion a judge reads.
type chatAnswer struct {
	Choices []struct {
		Message *struct {
			Content *string `json:"content"`
			Refusal *string `json:"refusal"`
		} `json:"message"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

// verdictObject is the JSON object a chat judge answers with.
type verdictObject struct {
	Injection *bool    `json:"injection"`
	Score     *float64 `json:"score"`
	Reason    *string  `json:"reason"`
}

// parseChat reads a chat completion: choices[0].message.content holds the
// verdict object, alone or in a Markdown code fence (servers that ignore
// response_format). Anything else is an error wrapping ErrMalformed.
func parseChat(answer []byte) (Verdict, usage, error) {
	var a chatAnswer
	if err := json.Unmarshal(answer, &a); err != nil {
		return Verdict{}, usage{}, fmt.Errorf("judge: %w: not a chat completion: %v", ErrMalformed, err)
	}
	var u usage
	if a.Usage != nil {
		u = *a.Usage
	}
	if len(a.Choices) == 0 {
		return Verdict{}, u, fmt.Errorf("judge: %w: no choices", ErrMalformed)
	}
	m := a.Choices[0].Message
	if m == nil {
		return Verdict{}, u, fmt.Errorf("judge: %w: choices[0] has no message", ErrMalformed)
	}
	if m.Refusal != nil && *m.Refusal != "" {
		return Verdict{}, u, fmt.Errorf("judge: %w: the model refused", ErrMalformed)
	}
	if m.Content == nil {
		return Verdict{}, u, fmt.Errorf("judge: %w: choices[0].message has no content", ErrMalformed)
	}
	v, err := parseVerdict(*m.Content)
	return v, u, err
}

// parseVerdict reads the verdict object of a chat judge's message
// content: {"injection": bool, "score": 0..1, "reason": "..."}, the
// reason optional, unknown members ignored.
func parseVerdict(content string) (Verdict, error) {
	s := unfence(strings.TrimSpace(content))
	if !strings.HasPrefix(s, "{") {
		return Verdict{}, fmt.Errorf("judge: %w: the content is not a JSON object", ErrMalformed)
	}
	var o verdictObject
	if err := json.Unmarshal([]byte(s), &o); err != nil {
		return Verdict{}, fmt.Errorf("judge: %w: the content is not a verdict: %v", ErrMalformed, err)
	}
	if o.Injection == nil || o.Score == nil {
		return Verdict{}, fmt.Errorf("judge: %w: the verdict lacks injection or score", ErrMalformed)
	}
	if sc := *o.Score; math.IsNaN(sc) || sc < 0 || sc > 1 {
		return Verdict{}, fmt.Errorf("judge: %w: score %v outside [0, 1]", ErrMalformed, sc)
	}
	v := Verdict{Injection: *o.Injection, Score: *o.Score}
	if o.Reason != nil {
		v.Reason = cleanReason(*o.Reason)
	}
	return v, nil
}

// unfence returns the inside of a Markdown code fence (```json ... ```)
// that s is made of, or s.
func unfence(s string) string {
	if !strings.HasPrefix(s, "```") || !strings.HasSuffix(s, "```") || len(s) < 6 {
		return s
	}
	inner := s[3 : len(s)-3]
	nl := strings.IndexByte(inner, '\n')
	if nl < 0 {
		return strings.TrimSpace(inner)
	}
	// The first line is the fence's language tag, when there is one.
	if tag := strings.TrimSpace(inner[:nl]); tag == "" || !strings.ContainsAny(tag, "{}\"") {
		inner = inner[nl+1:]
	}
	return strings.TrimSpace(inner)
}
